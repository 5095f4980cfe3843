// The fork server's event loop, in C++ so that the warm interpreter's heap stays untouched
// between forks (see forkserver.cpp).
#pragma once
#include <Python.h>

#include <cstdint>
#include <string>
#include <vector>

namespace prmfast {

struct ServerConfig {
  bool userns = false, pidns = false, ipcns = false, setuid = false, landlock = false,
       rlimits = false, seccomp = false;  // layers
  unsigned uid_base = 0;  // untrusted code of slot k runs as uid/gid uid_base + k
  std::string base;       // job folders are <base>/<job>
  std::vector<std::string> readable;  // Landlock: what a program may read besides its folder
  std::string cgroup;     // memory cgroup folder holding slot<k>/ per slot ("" = none)
  // Called (GIL held) in each forked process, and never expected to return:
  PyObject* judge_entry = nullptr;  // judge_entry(slot, server_sock=3, zygote_sock=4)
  PyObject* child_entry = nullptr;  // child_entry(mode, workdir), already confined
};

// Serves the dispatcher on `sock` until it hangs up, then kills every process it started,
// removes their job folders and exits the process. Each forked judge calls judge_entry,
// and each untrusted child (forked by its judge's zygote) child_entry once it is confined
// (fds in place, working directory, environment, rlimits, uid, Landlock; born under the
// slot's seccomp filter): straight from here, so that a fresh fork touches as few of the
// shared Python objects as possible.
[[noreturn]] void serve_jobs(int sock, const ServerConfig& cfg);

// After unshare(CLONE_NEWPID), which applies to children only: forks, and returns true in the
// child, PID 1 of the new namespace, which dies with its parent; the parent only waits and
// exits with the child's status. False (in the caller) if the fork failed. Holds the GIL.
bool continue_as_pid1();

// rm -rf without following symlinks or crossing mounts (the program chose the contents).
void remove_tree(const std::string& path);

}  // namespace prmfast
