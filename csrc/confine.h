// Child-side confinement primitives, called from the sandbox's own Python processes
// (fork server, judge, untrusted child) before untrusted code runs.
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

// unshare(2) with the given CLONE_* flags; raises OSError on failure.
void unshare_ns(int flags);
// mount(2); raises OSError on failure.
void mount_fs(const std::string& source, const std::string& target, const std::string& fstype,
              unsigned long flags, const std::string& data);
// Kill this process with `sig` when its parent dies (PR_SET_PDEATHSIG).
void set_parent_death_signal(int sig);
// Applies rlimits (core dumps always off).
void apply_limits(const Limits& limits);
// setgroups([]), setresgid, setresuid to an unprivileged id, then no_new_privs.
void drop_privileges(unsigned uid, unsigned gid);
// Landlock ABI version of the running kernel (0 when unsupported).
int landlock_abi();
// Restricts this process: file writes only beneath `writable` paths, no TCP bind/connect
// (ABI >= 4), no signals / abstract unix sockets outside the domain (ABI >= 6).
// Returns the ABI version used.
int landlock_restrict(const std::vector<std::string>& writable);

}  // namespace prmfast
