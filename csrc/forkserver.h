// The fork server's event loop, in C++ so that the warm interpreter's heap stays untouched
// between forks (see forkserver.cpp).
#pragma once
#include <cstdint>
#include <string>

#include <sys/types.h>

namespace prmfast {

// What a freshly forked judge needs: its worker slot and the socket its jobs arrive on.
struct JudgeStart {
  int slot;
  int jobs_fd;
};

// Serves the dispatcher on `sock` until it hangs up (then kills every judge, removes the
// job folders under `base` and exits the process). Returns only in a newly forked judge.
JudgeStart serve_jobs(int sock, const std::string& base);

// fork(2) with the interpreter's fork hooks; with `new_pid_namespace` the child is PID 1
// of a fresh PID namespace. Holds the GIL.
pid_t fork_child(bool new_pid_namespace);

}  // namespace prmfast
