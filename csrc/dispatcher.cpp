// Batch dispatcher. One thread multiplexes every in-flight job with poll(2):
//   submit: payload in a sealed memfd + the write end of a result pipe, passed to the fork
//           server with SCM_RIGHTS (no size limit, no risk of both sides blocking on writes);
//   wait:   the result pipe reaches EOF once every process of the job is gone, and the
//           server reports the judge's exit status; a job is done when both happened;
//   kill:   past its deadline the server SIGKILLs the job's judge, PID 1 of the job's PID
//           namespace, which takes every process of the job with it.
// If the server dies (or is killed), in-flight jobs are resubmitted once to a new server.
#include "dispatcher.h"
#include "fdpass.h"
#include "protocol.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <system_error>

namespace prmfast {
namespace {

double now_s() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

[[noreturn]] void fail(const char* what) { throw std::system_error(errno, std::generic_category(), what); }

void write_all(int fd, const char* data, size_t size) {
  while (size > 0) {
    ssize_t n = write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("write");
    }
    data += n;
    size -= static_cast<size_t>(n);
  }
}

// A memfd holding the payload, sealed so nothing downstream can change it.
int payload_fd(const std::string& payload) {
  int fd = memfd_create("prmfast-job", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) fail("memfd_create");
  write_all(fd, payload.data(), payload.size());
  fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL);
  lseek(fd, 0, SEEK_SET);
  return fd;
}

struct Active {
  size_t index;
  int attempt;
  int result_fd;
  int slot;
  double start, deadline;
  bool eof = false, exited = false, kill_sent = false;
  std::string buf;
};

}  // namespace

Dispatcher::Dispatcher(std::vector<std::string> argv, std::vector<std::string> env)
    : argv_(std::move(argv)), env_(std::move(env)) {
  if (argv_.empty()) throw std::invalid_argument("argv must not be empty");
}

Dispatcher::~Dispatcher() { stop_server(); }

void Dispatcher::close() {
  std::lock_guard<std::mutex> lock(mutex_);
  stop_server();
}

void Dispatcher::start_server() {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) fail("socketpair");
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, sv[1], 3);  // dup2 clears FD_CLOEXEC on fd 3
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  // None of the caller's other fds (not all of them are close-on-exec) reach the server.
  posix_spawn_file_actions_addclosefrom_np(&fa, 4);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  // Own process group: a terminal's Ctrl-C must not reach the server mid-batch.
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                      POSIX_SPAWN_SETSIGDEF);
  posix_spawnattr_setpgroup(&attr, 0);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  std::vector<char*> argv, envp;
  for (auto& a : argv_) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (auto& e : env_) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  pid_t pid;
  int rc = posix_spawn(&pid, argv[0], &fa, &attr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  ::close(sv[1]);
  if (rc != 0) {
    ::close(sv[0]);
    errno = rc;
    fail("posix_spawn(fork server)");
  }
  sock_ = sv[0];
  server_ = pid;
}

void Dispatcher::stop_server() {
  if (sock_ >= 0) ::close(sock_);  // the server exits on EOF, killing its jobs
  sock_ = -1;
  if (server_ > 0) {
    // Give it a moment to exit cleanly (it removes its jobs' folders), then insist.
    for (int i = 0; i < 200; ++i) {
      if (waitpid(server_, nullptr, WNOHANG) == server_) {
        server_ = -1;
        return;
      }
      usleep(5000);
    }
    kill(server_, SIGKILL);
    waitpid(server_, nullptr, 0);
  }
  server_ = -1;
}

std::vector<Outcome> Dispatcher::run(const std::vector<std::string>& payloads,
                                     const std::vector<double>& deadlines_s, int workers,
                                     size_t result_limit) {
  if (payloads.size() != deadlines_s.size())
    throw std::invalid_argument("payloads and deadlines differ in length");
  if (workers < 1) throw std::invalid_argument("workers must be >= 1");
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<Outcome> out(payloads.size());
  std::vector<size_t> pending;  // LIFO of (index), reversed so jobs start in order
  for (size_t i = payloads.size(); i-- > 0;) pending.push_back(i);
  std::vector<int> attempts(payloads.size(), 0);
  std::vector<int> free_slots;
  for (int s = workers - 1; s >= 0; --s) free_slots.push_back(s);
  std::map<uint64_t, Active> active;
  static uint64_t next_job = 1;  // unique across batches: stale messages never match
  size_t done = 0;

  auto finish = [&](std::map<uint64_t, Active>::iterator it, bool lost) {
    Active& a = it->second;
    Outcome& o = out[a.index];
    o.result = std::move(a.buf);
    o.wall_s = now_s() - a.start;
    o.lost = lost;
    if (a.result_fd >= 0) ::close(a.result_fd);
    free_slots.push_back(a.slot);
    active.erase(it);
    ++done;
  };

  while (done < payloads.size()) {
    if (sock_ < 0) start_server();
    while (!free_slots.empty() && !pending.empty()) {
      size_t index = pending.back();
      pending.pop_back();
      int pipefd[2];
      if (pipe2(pipefd, O_CLOEXEC) != 0) fail("pipe2");
      int memfd = payload_fd(payloads[index]);
      uint64_t job = next_job++;
      int slot = free_slots.back();
      free_slots.pop_back();
      Message msg = {kSubmit, slot, job};
      int fds[2] = {memfd, pipefd[1]};
      bool sent = send_message(sock_, msg, fds, 2);
      ::close(memfd);
      ::close(pipefd[1]);
      Active a;
      a.index = index;
      a.attempt = ++attempts[index];
      a.result_fd = pipefd[0];
      a.slot = slot;
      a.start = now_s();
      a.deadline = a.start + deadlines_s[index];
      if (!sent) a.eof = true;  // server gone; noticed below as EOF on the socket
      active.emplace(job, std::move(a));
    }

    std::vector<struct pollfd> pfds;
    std::vector<uint64_t> owners;  // job of each pollfd after the first (the socket)
    pfds.push_back({sock_, POLLIN, 0});
    double wake = now_s() + 1.0;
    for (auto& [job, a] : active) {
      if (!a.eof) {
        pfds.push_back({a.result_fd, POLLIN, 0});
        owners.push_back(job);
      }
      wake = std::min(wake, a.kill_sent ? a.deadline + 5.0 : a.deadline);
    }
    int timeout_ms = std::max(0, static_cast<int>((wake - now_s()) * 1000) + 1);
    int n = poll(pfds.data(), pfds.size(), timeout_ms);
    if (n < 0 && errno != EINTR) fail("poll");

    bool server_gone = false;
    if (pfds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      for (;;) {
        Message msg;
        ssize_t got = recv(sock_, &msg, sizeof(msg), MSG_DONTWAIT);
        if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR)) {
          server_gone = true;
          break;
        }
        if (got < 0) break;
        if (got != sizeof(msg) || msg.op != kExited) continue;
        auto it = active.find(msg.job);
        if (it == active.end()) continue;
        it->second.exited = true;
        out[it->second.index].wait_status = msg.arg;
      }
    }
    for (size_t k = 1; k < pfds.size(); ++k) {
      if (!(pfds[k].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      Active& a = active.at(owners[k - 1]);
      char chunk[65536];
      ssize_t got = read(a.result_fd, chunk, sizeof(chunk));
      if (got > 0) {
        // The judge is trusted, but a bound keeps a bug there from exhausting memory.
        size_t room = result_limit > a.buf.size() ? result_limit - a.buf.size() : 0;
        a.buf.append(chunk, std::min(room, static_cast<size_t>(got)));
      } else if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
        a.eof = true;
        ::close(a.result_fd);
        a.result_fd = -1;
      }
    }

    double now = now_s();
    for (auto it = active.begin(); it != active.end();) {
      Active& a = it->second;
      auto cur = it++;
      if (a.eof && a.exited) {
        finish(cur, false);
      } else if (!a.kill_sent && now >= a.deadline && !server_gone) {
        Message msg = {kKill, 0, cur->first};
        send_message(sock_, msg, nullptr, 0);
        a.kill_sent = true;
        out[a.index].timed_out = true;
      } else if (a.kill_sent && now >= a.deadline + 5.0) {
        server_gone = true;  // the server stopped answering: treat it as dead
      }
    }

    if (server_gone) {
      stop_server();
      // Retry each in-flight job once on a fresh server; give up on a second loss.
      for (auto it = active.begin(); it != active.end();) {
        auto cur = it++;
        Active& a = cur->second;
        if (out[a.index].timed_out || a.attempt >= 2) {
          finish(cur, !out[a.index].timed_out);
        } else {
          if (a.result_fd >= 0) ::close(a.result_fd);
          pending.push_back(a.index);
          free_slots.push_back(a.slot);
          active.erase(cur);
        }
      }
    }
  }
  return out;
}

}  // namespace prmfast
