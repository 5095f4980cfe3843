// Confinement primitives. They run in a freshly forked, single-threaded child, so they
// may change process-wide state freely; every failure is reported, because running
// untrusted code half-confined would be worse than not running it.
#include "confine.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/landlock.h>
#include <linux/capability.h>
#include <linux/securebits.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

// The system's linux/landlock.h predates ABI 4-6; these values are fixed by the kernel ABI.
#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14)
#endif
constexpr uint64_t kNetBindTcp = 1ULL << 0;       // LANDLOCK_ACCESS_NET_BIND_TCP
constexpr uint64_t kNetConnectTcp = 1ULL << 1;    // LANDLOCK_ACCESS_NET_CONNECT_TCP
constexpr uint64_t kScopeAbstractUnix = 1ULL << 0;  // LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET
constexpr uint64_t kScopeSignal = 1ULL << 1;        // LANDLOCK_SCOPE_SIGNAL

// struct landlock_ruleset_attr as of ABI 6; shorter prefixes are passed to older kernels.
struct RulesetAttr {
  uint64_t handled_access_fs;
  uint64_t handled_access_net;
  uint64_t scoped;
};

namespace prmfast {
namespace {

int failed(const char* step, const char** what) {
  *what = step;
  return -1;
}

int set_limit(int resource, rlim_t soft, rlim_t hard, const char* step, const char** what) {
  struct rlimit rl = {soft, hard};
  return setrlimit(resource, &rl) == 0 ? 0 : failed(step, what);
}

constexpr uint64_t kReadRights =
    LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR | LANDLOCK_ACCESS_FS_EXECUTE;
constexpr uint64_t kFileRights = LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_READ_FILE |
                                 LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_TRUNCATE;

// Landlock access rights that modify the file system.
uint64_t write_rights(int abi) {
  uint64_t rights = LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_REMOVE_DIR |
                    LANDLOCK_ACCESS_FS_REMOVE_FILE | LANDLOCK_ACCESS_FS_MAKE_CHAR |
                    LANDLOCK_ACCESS_FS_MAKE_DIR | LANDLOCK_ACCESS_FS_MAKE_REG |
                    LANDLOCK_ACCESS_FS_MAKE_SOCK | LANDLOCK_ACCESS_FS_MAKE_FIFO |
                    LANDLOCK_ACCESS_FS_MAKE_BLOCK | LANDLOCK_ACCESS_FS_MAKE_SYM;
  if (abi >= 2) rights |= LANDLOCK_ACCESS_FS_REFER;
  if (abi >= 3) rights |= LANDLOCK_ACCESS_FS_TRUNCATE;
  return rights;
}

}  // namespace

int apply_limits(const Limits& l, const char** what) {
  if (set_limit(RLIMIT_CORE, 0, 0, "setrlimit(RLIMIT_CORE)", what)) return -1;
  if (l.address_space_mb > 0) {
    rlim_t bytes = static_cast<rlim_t>(l.address_space_mb) << 20;
    if (set_limit(RLIMIT_AS, bytes, bytes, "setrlimit(RLIMIT_AS)", what)) return -1;
  }
  // The soft CPU limit sends SIGXCPU; the hard one, a second later, SIGKILL for code that
  // handles or ignores SIGXCPU.
  if (l.cpu_s > 0 && set_limit(RLIMIT_CPU, l.cpu_s, l.cpu_s + 1, "setrlimit(RLIMIT_CPU)", what))
    return -1;
  if (l.file_size_mb > 0) {
    rlim_t bytes = static_cast<rlim_t>(l.file_size_mb) << 20;
    if (set_limit(RLIMIT_FSIZE, bytes, bytes, "setrlimit(RLIMIT_FSIZE)", what)) return -1;
  }
  if (l.open_files > 0 &&
      set_limit(RLIMIT_NOFILE, l.open_files, l.open_files, "setrlimit(RLIMIT_NOFILE)", what))
    return -1;
  if (l.processes > 0 &&
      set_limit(RLIMIT_NPROC, l.processes, l.processes, "setrlimit(RLIMIT_NPROC)", what))
    return -1;
  return 0;
}

int drop_privileges(unsigned uid, unsigned gid, const char** what) {
  if (setgroups(0, nullptr) != 0) return failed("setgroups", what);
  if (setresgid(gid, gid, gid) != 0) return failed("setresgid", what);
  if (setresuid(uid, uid, uid) != 0) return failed("setresuid", what);
  // Regaining privileges through setuid binaries is then impossible; Landlock needs it too.
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return failed("prctl(PR_SET_NO_NEW_PRIVS)", what);
  return 0;
}

int write_text(const std::string& path, const std::string& text) {
  int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = write(fd, text.data(), text.size());
  int err = errno;
  close(fd);
  errno = err;
  return n == static_cast<ssize_t>(text.size()) ? 0 : -1;
}

int enter_user_namespace(unsigned outside_uid, unsigned outside_gid, const char** what) {
  if (unshare(CLONE_NEWUSER) != 0) return failed("unshare(CLONE_NEWUSER)", what);
  if (write_text("/proc/self/setgroups", "deny") != 0) return failed("setgroups deny", what);
  if (write_text("/proc/self/uid_map", "0 " + std::to_string(outside_uid) + " 1") != 0)
    return failed("uid_map", what);
  if (write_text("/proc/self/gid_map", "0 " + std::to_string(outside_gid) + " 1") != 0)
    return failed("gid_map", what);
  return 0;
}

int drop_capabilities(const char** what) {
  for (int cap = 0; prctl(PR_CAPBSET_READ, cap, 0, 0, 0) >= 0; ++cap)
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) return failed("prctl(PR_CAPBSET_DROP)", what);
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0)
    return failed("prctl(PR_CAP_AMBIENT_CLEAR_ALL)", what);
  const unsigned long bits = SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP |
                             SECBIT_NO_SETUID_FIXUP_LOCKED | SECBIT_KEEP_CAPS_LOCKED;
  if (prctl(PR_SET_SECUREBITS, bits, 0, 0, 0) != 0) return failed("prctl(PR_SET_SECUREBITS)", what);
  struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[2] = {};
  if (syscall(SYS_capset, &header, data) != 0) return failed("capset", what);
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return failed("prctl(PR_SET_NO_NEW_PRIVS)", what);
  return 0;
}

namespace {

unsigned uid_outside = 0, gid_outside = 0;  // the caller's ids, for probe_server

// Runs step() in a forked process; whether it exited with status 0. No Python runs there.
bool in_child(bool (*step)()) {
  pid_t pid = fork();
  if (pid < 0) return false;
  if (pid == 0) _exit(step() ? 0 : 1);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

// The probe mirrors the sandbox: the server's user, mount and network namespaces; a judge,
// PID 1 of a PID namespace; in it a slot's nested user namespace, whose PID 1 (the zygote)
// mounts a /proc in a mount namespace of its own and makes an IPC namespace.
bool probe_zygote() {
  return unshare(CLONE_NEWNS) == 0 &&
         mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) == 0 &&
         mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) == 0 &&
         unshare(CLONE_NEWIPC) == 0;
}

bool probe_judge() {
  const char* what = "";
  return enter_user_namespace(0, 0, &what) == 0 && unshare(CLONE_NEWPID) == 0 &&
         in_child(probe_zygote);
}

bool probe_server() {
  const char* what = "";
  return enter_user_namespace(uid_outside, gid_outside, &what) == 0 &&
         unshare(CLONE_NEWNS | CLONE_NEWNET) == 0 &&
         mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) == 0 &&
         unshare(CLONE_NEWPID) == 0 && in_child(probe_judge);
}

}  // namespace

bool user_namespaces_work() {
  uid_outside = getuid();
  gid_outside = getgid();
  return in_child(probe_server);
}

int landlock_abi() {
  long abi = syscall(SYS_landlock_create_ruleset, nullptr, 0, LANDLOCK_CREATE_RULESET_VERSION);
  return abi < 0 ? 0 : static_cast<int>(abi);
}

// Adds a rule: `allowed` rights beneath `path` (file rights only for a non-directory).
int add_path_rule(int ruleset, const std::string& path, uint64_t allowed, const char** what) {
  struct landlock_path_beneath_attr rule = {};
  rule.allowed_access = allowed;
  rule.parent_fd = open(path.c_str(), O_PATH | O_CLOEXEC);
  if (rule.parent_fd < 0) return failed("open (landlock rule)", what);
  struct stat st;
  if (fstat(rule.parent_fd, &st) == 0 && !S_ISDIR(st.st_mode)) rule.allowed_access &= kFileRights;
  long rc = syscall(SYS_landlock_add_rule, ruleset, LANDLOCK_RULE_PATH_BENEATH, &rule, 0);
  int err = errno;
  close(rule.parent_fd);
  errno = err;
  return rc == 0 ? 0 : failed("landlock_add_rule", what);
}

int landlock_restrict(const std::vector<std::string>& writable,
                      const std::vector<std::string>& readable, const char** what) {
  int abi = landlock_abi();
  if (abi < 1) {
    errno = EOPNOTSUPP;
    return failed("landlock", what);
  }
  // Fields beyond what the running ABI knows must stay zero, so size the attribute to it.
  // Handling the TCP rights with no rule allowing them denies every bind and connect.
  RulesetAttr attr = {};
  attr.handled_access_fs = write_rights(abi) | (readable.empty() ? 0 : kReadRights);
  size_t attr_size = offsetof(RulesetAttr, handled_access_net);
  if (abi >= 4) {
    attr.handled_access_net = kNetBindTcp | kNetConnectTcp;
    attr_size = offsetof(RulesetAttr, scoped);
  }
  if (abi >= 6) {
    attr.scoped = kScopeAbstractUnix | kScopeSignal;
    attr_size = sizeof(attr);
  }
  int ruleset = static_cast<int>(syscall(SYS_landlock_create_ruleset, &attr, attr_size, 0));
  if (ruleset < 0) return failed("landlock_create_ruleset", what);
  int rc = 0;
  for (const auto& path : writable)
    if (rc == 0) rc = add_path_rule(ruleset, path, attr.handled_access_fs, what);
  for (const auto& path : readable)
    if (rc == 0) rc = add_path_rule(ruleset, path, kReadRights, what);
  if (rc != 0) {
    int err = errno;
    close(ruleset);
    errno = err;
    return -1;
  }
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    int err = errno;
    close(ruleset);
    errno = err;
    return failed("prctl(PR_SET_NO_NEW_PRIVS)", what);
  }
  long done = syscall(SYS_landlock_restrict_self, ruleset, 0);
  int err = errno;
  close(ruleset);
  errno = err;
  return done == 0 ? 0 : failed("landlock_restrict_self", what);
}

}  // namespace prmfast
