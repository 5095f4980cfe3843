// The fork server's event loop, in C++ so that the warm interpreter's heap stays untouched
// between forks (see forkserver.cpp).
#pragma once
#include <cstdint>
#include <string>

namespace prmfast {

// What a freshly forked judge needs to know about its job.
struct JobStart {
  uint64_t job;
  int slot;
  int payload_fd;
  int result_fd;
};

// Serves the dispatcher on `sock` until it hangs up (then kills every job, removes their
// folders under `base` and exits the process). Returns only in a newly forked judge, which
// is PID 1 of a fresh PID namespace when `new_pid_namespace` is set.
JobStart serve_jobs(int sock, bool new_pid_namespace, const std::string& base);

}  // namespace prmfast
