"""A program for the sandbox (tests/sandbox/test_seccomp.py runs its text as a job): calls each
system call the seccomp layer refuses, directly, with arguments the kernel would reject
harmlessly (a NULL pointer, a bad fd or flag) or that succeed without harm in a throwaway
process, and a few it must allow. Prints one JSON line to stderr, then "done":
  calls:   name -> errno of the call (0 when it succeeded), each in a forked process
  allowed: name -> 0 when the operation worked, else an errno or what went wrong
  abi:     (x86_64) a 32-bit (int 0x80) and an x32 system call, each in a forked process:
           "exit N" or "signal N"
  seccomp: the Seccomp field of /proc/self/status (2: a filter is installed)
"""
import ctypes
import json
import mmap
import os
import platform
import signal
import socket
import sys
import threading

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
X86 = platform.machine() == "x86_64"

SIGCHLD = 17
NS_FLAGS = {"newns": 0x20000, "newcgroup": 0x02000000, "newuts": 0x04000000,
            "newipc": 0x08000000, "newuser": 0x10000000, "newpid": 0x20000000,
            "newnet": 0x40000000}
NO_PID = 0x3FFFFFF0  # no such process
# name: (x86_64 number, aarch64 number or None where the call is x86 only, arguments)
CALLS = {
    "io_uring_setup": (425, 425, (1, 0)),
    "io_uring_enter": (426, 426, (-1, 0, 0, 0, 0, 0)),
    "io_uring_register": (427, 427, (-1, 0, 0, 0)),
    "add_key": (248, 217, (0, 0, 0, 0, -2)),
    "request_key": (249, 218, (0, 0, 0, 0)),
    "keyctl": (250, 219, (-1, 0, 0, 0, 0)),
    "unshare": (272, 97, (NS_FLAGS["newuser"],)),
    "setns": (308, 268, (-1, 0)),
    **{f"clone_{ns}": (56, 220, (flag | SIGCHLD, 0, 0, 0, 0)) for ns, flag in NS_FLAGS.items()},
    "clone3": (435, 435, (0, 0)),
    "bpf": (321, 280, (-1, 0, 0)),
    "perf_event_open": (298, 241, (0, 0, -1, -1, 0)),
    "userfaultfd": (323, 282, (1 | 2,)),  # user-mode only, plus a flag that does not exist
    "ptrace": (101, 117, (0, 0, 0, 0)),   # PTRACE_TRACEME
    "process_vm_readv": (310, 270, (NO_PID, 0, 1, 0, 1, 0)),
    "process_vm_writev": (311, 271, (NO_PID, 0, 1, 0, 1, 0)),
    "kcmp": (312, 272, (NO_PID, NO_PID, 0, 0, 0)),
    "pidfd_getfd": (438, 438, (-1, 0, 0)),
    "mount": (165, 40, (0, 0, 0, 0, 0)),
    "umount2": (166, 39, (0, 0x100)),
    "pivot_root": (155, 41, (0, 0)),
    "chroot": (161, 51, (0,)),
    "open_tree": (428, 428, (-1, 0, 0)),
    "open_tree_attr": (467, 467, (-1, 0, 0, 0, 0)),
    "move_mount": (429, 429, (-1, 0, -1, 0, 0)),
    "fsopen": (430, 430, (0, 0)),
    "fsconfig": (431, 431, (-1, 0, 0, 0, 0)),
    "fsmount": (432, 432, (-1, 0, 0)),
    "fspick": (433, 433, (-1, 0, 0)),
    "mount_setattr": (442, 442, (-1, 0, 0, 0, 0)),
    "init_module": (175, 105, (0, 0, 0)),
    "finit_module": (313, 273, (-1, 0, 0)),
    "delete_module": (176, 106, (0, 0)),
    "kexec_load": (246, 104, (0, 0, 0, 0)),
    "kexec_file_load": (320, 294, (-1, -1, 0, 0, 0)),
    "reboot": (169, 142, (0, 0, 0, 0)),       # no magic numbers: EINVAL even if allowed
    "swapon": (167, 224, (0, 0)),
    "swapoff": (168, 225, (0,)),
    "acct": (163, 89, (1,)),
    "syslog": (103, 116, (10, 0, 0)),         # SYSLOG_ACTION_SIZE_BUFFER
    "clock_settime": (227, 112, (0, 0)),
    "settimeofday": (164, 170, (1, 0)),
    "clock_adjtime": (305, 266, (0, 0)),
    "adjtimex": (159, 171, (0,)),
    "sethostname": (170, 161, (0, -1)),
    "setdomainname": (171, 162, (0, -1)),
    "open_by_handle_at": (304, 265, (-1, 0, 0)),
    "name_to_handle_at": (303, 264, (-100, 0, 0, 0, 0)),
    "quotactl": (179, 60, (0, 0, 0, 0)),
    "quotactl_fd": (443, 443, (-1, 0, 0, 0)),
    "fanotify_init": (300, 262, (0, 0)),
    "vhangup": (153, 58, ()),
    "lookup_dcookie": (212, 18, (0, 0, 0)),
    "nfsservctl": (180, 42, ()),
    "get_mempolicy": (239, 236, (0, 0, 0, 0, 0)),
    "set_mempolicy": (238, 237, (-1, 0, 0)),
    "set_mempolicy_home_node": (450, 450, (0, 0, 0, 1)),
    "mbind": (237, 235, (0, 0, -1, 0, 0, 0)),
    "move_pages": (279, 239, (NO_PID, 0, 0, 0, 0, 0)),
    "migrate_pages": (256, 238, (NO_PID, 0, 0, 0)),
    "personality": (135, 92, (0x0040000,)),   # ADDR_NO_RANDOMIZE
    "socket_vsock": (41, 198, (40, 1, 0)),    # AF_VSOCK, SOCK_STREAM: made, never connected
    "ioperm": (173, None, (0, 0, 0)),
    "iopl": (172, None, (4,)),
    "modify_ldt": (154, None, (0xFF, 0, 0)),
    "uselib": (134, None, (0,)),
    "ustat": (136, None, (0, 0)),
    "sysfs": (139, None, (0,)),
    "_sysctl": (156, None, (0,)),
    "create_module": (174, None, ()),
    "get_kernel_syms": (177, None, ()),
    "query_module": (178, None, ()),
}


def syscall(nr, *args):
    """errno of the call, 0 if it succeeded; a process it made (clone) exits at once."""
    me = os.getpid()
    r = libc.syscall(ctypes.c_long(nr), *(ctypes.c_long(a) for a in args))
    if r == 0 and os.getpid() != me:
        os._exit(0)
    if r > 0 and nr in (56, 220):
        os.waitpid(r, 0)
    return 0 if r >= 0 else ctypes.get_errno()


def in_child(fn):
    """fn()'s result (an int) from a forked process, or 'signal N' if it was killed."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        os.write(w, str(fn()).encode())
        os._exit(0)
    os.close(w)
    out = os.read(r, 64)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return f"signal {os.WTERMSIG(status)}"
    return int(out) if out else f"exit {os.WEXITSTATUS(status)}"


def int80_getpid():
    """getpid through the i386 system call entry (int 0x80) from this 64-bit process."""
    code = bytes([0xB8, 20, 0, 0, 0, 0xCD, 0x80, 0xC3])  # mov eax, 20; int 0x80; ret
    page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    page.write(code)
    address = ctypes.addressof(ctypes.c_char.from_buffer(page))
    return ctypes.CFUNCTYPE(ctypes.c_int)(address)()


def allowed():
    """The operations ordinary programs need, each 0 when it worked."""
    out = {}
    out["clone"] = syscall(56 if X86 else 220, SIGCHLD, 0, 0, 0, 0)
    out["personality_query"] = syscall(135 if X86 else 92, 0xFFFFFFFF)
    out["personality_linux"] = syscall(135 if X86 else 92, 0)
    pid = os.fork()
    if pid == 0:
        os._exit(7)
    out["fork"] = 0 if os.waitpid(pid, 0)[1] == 7 << 8 else "fork"
    seen = []
    thread = threading.Thread(target=seen.append, args=(1,))
    thread.start()
    thread.join()
    out["thread"] = 0 if seen == [1] else "thread"
    a, b = socket.socketpair()
    a.sendall(b"x")
    out["socketpair"] = 0 if b.recv(1) == b"x" else "socketpair"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        out["socket_inet"] = 0 if udp.fileno() >= 0 else "socket"
    block = mmap.mmap(-1, 1 << 20)
    block[-1:] = b"x"
    out["mmap"] = 0 if block[-1:] == b"x" else "mmap"
    got = []
    signal.signal(signal.SIGUSR1, lambda *_: got.append(1))
    os.kill(os.getpid(), signal.SIGUSR1)
    out["signal"] = 0 if got == [1] else "signal"
    return out


def status_field(name):
    with open("/proc/self/status") as f:
        return next((line.split()[1] for line in f if line.startswith(name + ":")), None)


report = {"seccomp": status_field("Seccomp"), "allowed": allowed(), "calls": {}}
for name, (x86_64, aarch64, args) in CALLS.items():
    nr = x86_64 if X86 else aarch64
    if nr is not None:
        report["calls"][name] = in_child(lambda: syscall(nr, *args))
if X86:
    report["abi"] = {"int80": in_child(lambda: int80_getpid() and 0),
                     "x32": in_child(lambda: syscall(0x40000000 | 39))}
sys.stderr.write(json.dumps(report, separators=(",", ":")) + "\n")
print("done")
