// The seccomp layer: a classic-BPF filter that refuses the system calls which widen the
// kernel's attack surface or act on the machine rather than the job. Each slot's zygote
// installs it once its own setup is done (forkserver.cpp), so every untrusted process is born
// under it and passes it on to all it starts. A deny list: everything else is allowed, so
// ordinary programs (threads, fork, exec, shared memory, sockets, event loops) see no change.
//
//   foreign ABI (i386 int 0x80 on x86_64, x32, arm32 on aarch64)   kill the process
//   kDenied, unshare, clone with a namespace flag                  EPERM
//   personality other than a query or the harmless personas       EPERM
//   socket(AF_VSOCK): no network namespace separates a VM's host  EPERM
//   clone3 (its flags sit in memory a filter cannot read)          ENOSYS: libc falls back
//                                                                   to clone, whose flags it can
//
// On Linux >= 5.11 an allowed call does not run the filter: the kernel caches, per system call
// number, that the filter allows it without looking at the arguments.
#include "confine.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <array>
#include <vector>

#if defined(__x86_64__) || defined(__aarch64__)

// System calls from 425 on have one number on every architecture; older system headers may
// lack the newest ones.
#ifndef __NR_open_tree_attr
#define __NR_open_tree_attr 467
#endif

namespace prmfast {
namespace {

#if defined(__x86_64__)
constexpr uint32_t kAuditArch = AUDIT_ARCH_X86_64;
#else
constexpr uint32_t kAuditArch = AUDIT_ARCH_AARCH64;
#endif

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the filter reads the low word first");
// clone's flags, a persona, a socket's family
constexpr uint32_t kArg0Low = offsetof(struct seccomp_data, args[0]);

constexpr uint32_t kNamespaceFlags = CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC |
                                     CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET;
constexpr uint32_t kPersonaQuery = 0xffffffff;              // personality(0xffffffff) reads it
constexpr uint32_t kHarmlessPersona = PER_LINUX32 | UNAME26;  // uname's answers only

// Refused with EPERM, by family.
constexpr int kDenied[] = {
    // io_uring: a second way into most of the kernel, behind many privilege escalations
    __NR_io_uring_setup, __NR_io_uring_enter, __NR_io_uring_register,
    // kernel keyrings, which no namespace separates
    __NR_add_key, __NR_request_key, __NR_keyctl,
    // new namespaces (a user namespace's root holds capabilities there) or other processes'
    // (clone's namespace flags are checked below, clone3 refused)
    __NR_unshare, __NR_setns,
    // BPF programs, performance counters, userfaultfd (stalls the kernel's page faults at
    // will: a tool for winning kernel races)
    __NR_bpf, __NR_perf_event_open, __NR_userfaultfd,
    // tracing other processes or reading their memory and files
    __NR_ptrace, __NR_process_vm_readv, __NR_process_vm_writev, __NR_kcmp, __NR_pidfd_getfd,
    // mounts and root changes, through the old and the new mount API
    __NR_mount, __NR_umount2, __NR_pivot_root, __NR_chroot, __NR_open_tree, __NR_open_tree_attr,
    __NR_move_mount, __NR_fsopen, __NR_fsconfig, __NR_fsmount, __NR_fspick, __NR_mount_setattr,
    // the machine's kernel: modules, kexec, reboot, swap, process accounting, its log
    __NR_init_module, __NR_finit_module, __NR_delete_module, __NR_kexec_load,
    __NR_kexec_file_load, __NR_reboot, __NR_swapon, __NR_swapoff, __NR_acct, __NR_syslog,
    // the machine's clocks and names, which no namespace of ours separates
    __NR_clock_settime, __NR_settimeofday, __NR_clock_adjtime, __NR_adjtimex, __NR_sethostname,
    __NR_setdomainname,
    // file handles (opening by handle skips path checks), quotas, file system notification
    // of the whole machine, hanging up the terminal, obsolete services
    __NR_open_by_handle_at, __NR_name_to_handle_at, __NR_quotactl, __NR_quotactl_fd,
    __NR_fanotify_init, __NR_vhangup, __NR_lookup_dcookie, __NR_nfsservctl,
    // the NUMA memory policy of the machine's nodes
    __NR_get_mempolicy, __NR_set_mempolicy, __NR_set_mempolicy_home_node, __NR_mbind,
    __NR_move_pages, __NR_migrate_pages,
#if defined(__x86_64__)
    // x86 only: port I/O, the local descriptor table, obsolete calls
    __NR_ioperm, __NR_iopl, __NR_modify_ldt, __NR_uselib, __NR_ustat, __NR_sysfs, __NR__sysctl,
    __NR_create_module, __NR_get_kernel_syms, __NR_query_module,
#endif
};

// Where a jump goes: the next instruction (kNext) or a labelled one further on.
enum Label { kNext = -1, kClone, kPersonality, kSocket, kAllow, kDeny, kNoSys, kKill, kLabels };

// Classic BPF with forward jumps to labels, resolved by link().
class Assembler {
 public:
  void load(uint32_t offset) { emit(BPF_LD | BPF_W | BPF_ABS, offset); }
  void mask(uint32_t k) { emit(BPF_ALU | BPF_AND | BPF_K, k); }
  void jump(uint16_t test, uint32_t k, Label yes, Label no) {
    emit(BPF_JMP | test | BPF_K, k, yes, no);
  }
  void ret(uint32_t action) { emit(BPF_RET | BPF_K, action); }
  void mark(Label label) { at_[label] = static_cast<int>(code_.size()); }

  // The program, or nothing if a jump goes to an unmarked label, backwards or too far.
  std::vector<sock_filter> link() const {
    std::vector<sock_filter> out;
    for (const Insn& insn : code_) {
      sock_filter f = insn.f;
      int here = static_cast<int>(out.size());
      if (!offset(insn.yes, here, &f.jt) || !offset(insn.no, here, &f.jf)) return {};
      out.push_back(f);
    }
    return out;
  }

 private:
  struct Insn {
    sock_filter f;
    Label yes, no;
  };

  void emit(uint16_t code, uint32_t k, Label yes = kNext, Label no = kNext) {
    code_.push_back({BPF_STMT(code, k), yes, no});
  }

  static std::array<int, kLabels> make_unmarked() {
    std::array<int, kLabels> at;
    at.fill(-1);
    return at;
  }

  bool offset(Label to, int here, uint8_t* out) const {
    int distance = to == kNext ? 0 : at_[to] - here - 1;
    if (to != kNext && (at_[to] < 0 || distance < 0 || distance > 255)) return false;
    *out = static_cast<uint8_t>(distance);
    return true;
  }

  std::vector<Insn> code_;
  std::array<int, kLabels> at_ = make_unmarked();
};

std::vector<sock_filter> build_filter() {
  Assembler a;
  a.load(offsetof(struct seccomp_data, arch));
  a.jump(BPF_JEQ, kAuditArch, kNext, kKill);
  a.load(offsetof(struct seccomp_data, nr));
#if defined(__x86_64__)
  a.jump(BPF_JSET, __X32_SYSCALL_BIT, kKill, kNext);
#endif
  for (int nr : kDenied) a.jump(BPF_JEQ, nr, kDeny, kNext);
  a.jump(BPF_JEQ, __NR_clone, kClone, kNext);
  a.jump(BPF_JEQ, __NR_clone3, kNoSys, kNext);
  a.jump(BPF_JEQ, __NR_personality, kPersonality, kNext);
  a.jump(BPF_JEQ, __NR_socket, kSocket, kNext);
  a.ret(SECCOMP_RET_ALLOW);
  a.mark(kClone);
  a.load(kArg0Low);  // the kernel reads clone's flags as 32 bits
  a.jump(BPF_JSET, kNamespaceFlags, kDeny, kAllow);
  a.mark(kPersonality);
  a.load(kArg0Low);  // a persona is an unsigned int
  a.jump(BPF_JEQ, kPersonaQuery, kAllow, kNext);
  a.mask(~kHarmlessPersona);
  a.jump(BPF_JEQ, PER_LINUX, kAllow, kDeny);
  a.mark(kSocket);
  a.load(kArg0Low);  // the family is an int
  a.jump(BPF_JEQ, AF_VSOCK, kDeny, kAllow);
  a.mark(kAllow);
  a.ret(SECCOMP_RET_ALLOW);
  a.mark(kDeny);
  a.ret(SECCOMP_RET_ERRNO | EPERM);
  a.mark(kNoSys);
  a.ret(SECCOMP_RET_ERRNO | ENOSYS);
  a.mark(kKill);
  a.ret(SECCOMP_RET_KILL_PROCESS);
  return a.link();
}

// Built when the module loads, in the fork server before any fork: zygotes only read it.
const std::vector<sock_filter> kFilter = build_filter();

}  // namespace

bool seccomp_available() {
  uint32_t action = SECCOMP_RET_KILL_PROCESS;
  return !kFilter.empty() && syscall(SYS_seccomp, SECCOMP_GET_ACTION_AVAIL, 0, &action) == 0;
}

int seccomp_restrict(const char** what) {
  if (kFilter.empty()) {  // a jump out of reach: a bug in build_filter
    errno = EINVAL;
    *what = "seccomp filter";
    return -1;
  }
  // Unprivileged processes may install a filter only once they cannot gain privileges.
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    *what = "prctl(PR_SET_NO_NEW_PRIVS)";
    return -1;
  }
  struct sock_fprog prog = {static_cast<unsigned short>(kFilter.size()),
                            const_cast<sock_filter*>(kFilter.data())};
  if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0) {
    *what = "seccomp(SECCOMP_SET_MODE_FILTER)";
    return -1;
  }
  return 0;
}

}  // namespace prmfast

#else  // no filter written for this architecture

namespace prmfast {

bool seccomp_available() { return false; }

int seccomp_restrict(const char** what) {
  errno = ENOSYS;
  *what = "seccomp (no filter for this architecture)";
  return -1;
}

}  // namespace prmfast

#endif
