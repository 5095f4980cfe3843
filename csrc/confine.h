// Confinement primitives. The fork server applies them in C++ to each freshly forked
// untrusted child before any Python runs there (see forkserver.cpp); module.cpp exposes
// them to Python too (raising OSError), for the server's own setup.
#pragma once
#include <string>
#include <vector>

namespace prmfast {

struct Limits {
  long address_space_mb = 0;  // RLIMIT_AS; 0 = leave as is
  long cpu_s = 0;             // RLIMIT_CPU soft limit; the hard limit is one second above
  long file_size_mb = 0;      // RLIMIT_FSIZE
  long open_files = 0;        // RLIMIT_NOFILE
  long processes = 0;         // RLIMIT_NPROC (counts threads, per uid)
};

// Each returns 0, or -1 with errno set and *what naming the failed step; none touches
// Python, so they are safe in a forked child that has not re-entered the interpreter.
// Applies rlimits (core dumps always off).
int apply_limits(const Limits& limits, const char** what);
// setgroups([]), setresgid, setresuid to an unprivileged id, then no_new_privs.
int drop_privileges(unsigned uid, unsigned gid, const char** what);
// Writes `text` to the existing file `path` (a /proc or cgroup file) in one write.
int write_text(const std::string& path, const std::string& text);
// Moves this process into a new user namespace whose uid and gid 0 are `outside_uid` and
// `outside_gid` of the current one (setgroups denied): root there, with every capability
// over what that namespace owns, and no privilege outside it.
int enter_user_namespace(unsigned outside_uid, unsigned outside_gid, const char** what);
// Drops every capability for good: bounding, ambient, effective, permitted and inheritable
// sets, with securebits that keep uid 0 from regaining them; then no_new_privs.
int drop_capabilities(const char** what);
// Whether unprivileged user namespaces work here with the PID, IPC, network and mount
// namespaces the sandbox makes in them (a /proc mounted, one user namespace nested); tried
// in a forked process.
bool user_namespaces_work();
// Landlock ABI version of the running kernel (0 when unsupported).
int landlock_abi();
// Restricts this process: file writes only beneath `writable` paths, reads and execution
// only beneath those and `readable` ones (when `readable` is not empty), no TCP bind/connect
// (ABI >= 4), no signals / abstract unix sockets outside the domain (ABI >= 6).
int landlock_restrict(const std::vector<std::string>& writable,
                      const std::vector<std::string>& readable, const char** what);
// Whether the seccomp filter can be installed here: an x86_64 or aarch64 build, and a kernel
// with seccomp filters that knows SECCOMP_RET_KILL_PROCESS (Linux 4.14). See seccomp.cpp.
bool seccomp_available();
// Sets no_new_privs and installs the seccomp filter on this single-threaded process;
// everything it starts inherits it.
int seccomp_restrict(const char** what);

}  // namespace prmfast
