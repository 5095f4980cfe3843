// The batch dispatcher: runs in the caller's process, talks to the fork server over a
// unix socket, and waits for every job's result with the GIL released.
#pragma once
#include <sys/types.h>

#include <mutex>
#include <string>
#include <vector>

namespace prmfast {

struct Outcome {
  std::string result;    // what the job's judge wrote (a JSON document), bounded
  int wait_status = -1;  // of the job's judge process, as reported by the server
  bool timed_out = false;  // the dispatcher's backstop deadline killed the job
  bool lost = false;       // the fork server died twice while the job was in flight
  double wall_s = 0.0;
};

class Dispatcher {
 public:
  // argv/env: how to start the fork server; its end of the socket becomes fd 3.
  Dispatcher(std::vector<std::string> argv, std::vector<std::string> env);
  ~Dispatcher();
  Dispatcher(const Dispatcher&) = delete;
  Dispatcher& operator=(const Dispatcher&) = delete;

  // Runs payloads[i] with deadline deadlines_s[i] (seconds from its start), at most
  // `workers` at a time; outcome i belongs to payload i. Thread-safe (serialised).
  std::vector<Outcome> run(const std::vector<std::string>& payloads,
                           const std::vector<double>& deadlines_s, int workers,
                           size_t result_limit);
  pid_t server_pid() const { return server_; }
  void close();

 private:
  void start_server();
  void stop_server();
  std::vector<std::string> argv_, env_;
  int sock_ = -1;
  pid_t server_ = -1;
  std::mutex mutex_;
};

}  // namespace prmfast
