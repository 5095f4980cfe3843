"""The seccomp layer: each system call it refuses, called directly from inside a job
(seccomp_probe.py), fails with EPERM (clone3 with ENOSYS, so that libc falls back to clone);
the same probe without the layer shows the calls reaching the kernel; a 32-bit system call
from x86_64 kills the process; ordinary programs do not notice; and the filter is there
without root, with and without user namespaces."""
import errno
import json
import os
import platform
import textwrap
from pathlib import Path

import pytest

from prmfast.sandbox import Job, Sandbox, StdioTests, available_layers
from tests.sandbox.test_without_root import run_unprivileged

pytestmark = pytest.mark.skipif("seccomp" not in available_layers(),
                                reason="no seccomp filter for this machine")

PROBE = (Path(__file__).parent / "seccomp_probe.py").read_text()
SIGSYS = "signal 31"
X86 = platform.machine() == "x86_64"
# The table (#21) and its families: each must be refused.
REQUIRED = {"io_uring_setup", "io_uring_enter", "io_uring_register", "add_key", "keyctl",
            "request_key", "unshare", "setns", "bpf", "perf_event_open", "userfaultfd", "ptrace",
            "mount", "umount2", "pivot_root", "chroot", "kexec_load", "kexec_file_load",
            "init_module", "finit_module", "delete_module", "reboot", "swapon", "swapoff", "acct",
            "clock_settime", "settimeofday", "clock_adjtime", "adjtimex", "personality",
            "open_by_handle_at", "name_to_handle_at", "lookup_dcookie", "quotactl", "vhangup",
            "nfsservctl", "clone3", "get_mempolicy", "set_mempolicy", "mbind", "move_pages",
            "socket_vsock",
            *(f"clone_new{ns}" for ns in ("ns", "cgroup", "uts", "ipc", "user", "pid", "net"))}
# Without the filter the kernel itself refuses these to a process without capabilities
# (EPERM), or does not have them (ENOSYS); every other probe reaches its argument checks.
KERNEL_REFUSES = {"clone_newns", "clone_newcgroup", "clone_newuts", "clone_newipc",
                  "clone_newpid", "clone_newnet", "pivot_root", "move_mount", "fsopen", "fsmount",
                  "fspick", "init_module", "finit_module", "delete_module", "kexec_load",
                  "kexec_file_load", "reboot", "swapon", "swapoff", "acct", "syslog",
                  "sethostname", "setdomainname", "fanotify_init", "vhangup"}


def probe(sb: Sandbox) -> dict:
    r = sb.run([Job(PROBE, StdioTests([("", "done")]))])[0]
    assert r.passed, r
    return json.loads(r.stderr.strip().splitlines()[-1])


def without(layer: str) -> tuple[str, ...]:
    return tuple(x for x in available_layers() if x != layer)


@pytest.fixture(scope="module")
def reports(contained):
    """The probe's report with every available layer ("on") and with all but seccomp ("off")."""
    out = {}
    for name, layers in (("on", available_layers()), ("off", without("seccomp"))):
        with Sandbox(workers=1, timeout_s=20.0, isolation=layers) as sb:
            out[name] = probe(sb)
    return out


def assert_refused(report: dict) -> None:
    assert report["seccomp"] == "2", report
    assert REQUIRED <= set(report["calls"]), REQUIRED - set(report["calls"])
    wrong = {name: got for name, got in report["calls"].items()
             if got != (errno.ENOSYS if name == "clone3" else errno.EPERM)}
    assert not wrong, wrong
    if X86:
        assert report["abi"] == {"int80": SIGSYS, "x32": SIGSYS}, report["abi"]


def test_every_denied_call_is_refused(reports):
    assert_refused(reports["on"])


def test_what_ordinary_programs_need_is_allowed(reports):
    # plain clone and fork, threads, sockets, mmap, signals, personality queries: with and
    # without the layer
    for name in ("on", "off"):
        assert set(reports[name]["allowed"].values()) == {0}, (name, reports[name]["allowed"])


def test_without_the_layer_the_calls_reach_the_kernel(reports):
    """The control: EPERM above comes from the filter, not from the kernel's own checks."""
    off = reports["off"]
    assert off["seccomp"] == "0"
    kernel_eperm = {name for name, got in off["calls"].items() if got == errno.EPERM}
    assert kernel_eperm <= KERNEL_REFUSES, kernel_eperm - KERNEL_REFUSES
    # the findings: these succeed or fail on their arguments, not on a permission
    calls = off["calls"]
    assert calls["unshare"] == calls["clone_newuser"] == calls["ptrace"] == 0, calls
    assert calls["personality"] == calls["socket_vsock"] == 0, calls
    assert calls["clone3"] == errno.EINVAL, calls
    if X86:
        # a 64-bit process can make 32-bit system calls here: the filter must see them
        assert off["abi"]["int80"] == 0, off["abi"]


LEGITIMATE = {  # name: (program, its expected stdout)
    "threads": ("""
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(4) as pool:
            print(sum(pool.map(abs, range(-50, 50))))
        """, "2500"),
    "multiprocessing": ("""
        import multiprocessing as mp
        from multiprocessing import shared_memory
        def square(x):
            return x * x
        if __name__ == '__main__':
            with mp.Pool(2) as pool:
                total = sum(pool.map(square, range(10)))
            shm = shared_memory.SharedMemory(create=True, size=16)
            shm.buf[0] = 7
            queue = mp.Queue()
            p = mp.Process(target=queue.put, args=(shm.buf[0],))
            p.start()
            print(total, queue.get())
            p.join()
            shm.close()
            shm.unlink()
        """, "285 7"),
    "process_pool": ("""
        from concurrent.futures import ProcessPoolExecutor
        with ProcessPoolExecutor(2) as pool:
            print(list(pool.map(abs, [-1, -2])))
        """, "[1, 2]"),
    "subprocess": ("""
        import subprocess, sys
        print(subprocess.check_output([sys.executable, '-c', 'print(6 * 7)'], text=True).strip())
        print(subprocess.check_output('echo hi | tr a-z A-Z', shell=True, text=True).strip())
        """, "42\nHI"),
    "asyncio": ("""
        import asyncio, sys
        async def later(x):
            await asyncio.sleep(0.01)
            return x
        async def main():
            got = await asyncio.gather(*(later(i) for i in range(5)))
            proc = await asyncio.create_subprocess_exec(sys.executable, '-c', 'print(1)',
                                                        stdout=asyncio.subprocess.PIPE)
            out, _ = await proc.communicate()
            total = await asyncio.get_running_loop().run_in_executor(None, sum, got)
            print(total, out.decode().strip())
        asyncio.run(main())
        """, "10 1"),
    "numpy": ("""
        import numpy as np
        a = np.random.default_rng(0).random((300, 300)) + 300 * np.eye(300)
        print(bool(np.allclose(np.linalg.solve(a, a @ np.ones(300)), 1)))
        """, "True"),
    "tempfile": ("""
        import os, tempfile
        with tempfile.TemporaryDirectory() as folder:
            with tempfile.NamedTemporaryFile('w', dir=folder, delete=False) as f:
                f.write('x')
            fd, path = tempfile.mkstemp()
            os.close(fd)
            os.unlink(path)
            print(open(f.name).read())
        """, "x"),
    "signals": ("""
        import os, signal, threading, time
        got = []
        signal.signal(signal.SIGALRM, lambda *a: got.append('alarm'))
        signal.signal(signal.SIGUSR1, lambda *a: got.append('usr1'))
        signal.setitimer(signal.ITIMER_REAL, 0.01)
        time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGUSR1)
        signal.pthread_kill(threading.main_thread().ident, signal.SIGUSR1)
        print(got)
        """, "['alarm', 'usr1', 'usr1']"),
}


def test_ordinary_programs_do_not_notice(contained):
    names = sorted(LEGITIMATE)
    jobs = [Job(textwrap.dedent(LEGITIMATE[n][0]), StdioTests([("", LEGITIMATE[n][1])]))
            for n in names]
    with Sandbox(workers=2, timeout_s=30.0) as sb:
        assert "seccomp" in sb.isolation
        results = sb.run(jobs)
    failed = {n: (r.status, r.stderr[-500:]) for n, r in zip(names, results) if not r.passed}
    assert not failed, failed


def test_the_layer_alone_and_switched_off():
    """seccomp is a layer like the others: on by default, alone, or left out."""
    assert "seccomp" in available_layers()
    with Sandbox(workers=1, timeout_s=20.0, isolation=("rlimits", "seccomp")) as sb:
        assert_refused(probe(sb))


UNPRIVILEGED_CALLER = """
import json
from prmfast.sandbox import Job, Sandbox, StdioTests, available_layers
out = {"layers": list(available_layers())}
alone = tuple(x for x in available_layers() if x in ("landlock", "rlimits", "seccomp"))
for name, layers in (("default", None), ("without_userns", alone)):
    with Sandbox(workers=1, timeout_s=20.0, isolation=layers) as sb:
        r = sb.run([Job(PROBE, StdioTests([("", "done")]))])[0]
        out[name] = {"passed": r.passed, "isolation": list(sb.isolation), "stderr": r.stderr}
print(json.dumps(out))
"""


def test_without_root_with_and_without_user_namespaces():
    if os.geteuid() != 0:
        pytest.skip("needs root to start the unprivileged caller")
    out = run_unprivileged(f"PROBE = {PROBE!r}\n" + UNPRIVILEGED_CALLER)
    assert "seccomp" in out["layers"], out["layers"]
    for name in ("default", "without_userns"):
        assert out[name]["passed"], out[name]
        assert "seccomp" in out[name]["isolation"]
        assert_refused(json.loads(out[name]["stderr"].strip().splitlines()[-1]))
    assert "userns" not in out["without_userns"]["isolation"]
