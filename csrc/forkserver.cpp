// The fork server's loop. Every fork shares the warm interpreter's pages copy-on-write, so
// each page the server writes afterwards (a Python loop writes refcounts everywhere) is
// copied while a child is alive. Running the loop here keeps the server's writes to a few
// pages of C++ state; Python runs again only in the forked judges.
//
// One long-lived judge per worker slot, forked on its slot's first job and again only after
// it died (killed at a job deadline, or crashed). Jobs reach it over a SEQPACKET socket (job
// id + payload memfd + result pipe) and it answers with the job id once every process of the
// job is gone. Forking a judge per job cost a fork of this process plus the judge's
// copy-on-write faults on every job; a warm judge pays neither. The judge forks each
// untrusted child as PID 1 of a fresh PID namespace (fork_child), so killing the child, or
// the judge's death (the child's parent-death signal), makes the kernel kill every process
// of the job.
#include "forkserver.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <map>
#include <system_error>
#include <vector>

#include <pybind11/pybind11.h>

#include "protocol.h"

namespace prmfast {
namespace {

// A judge process and the job it runs (0 when idle).
struct Judge {
  pid_t pid;
  int pidfd;
  int jobs_fd;
  uint64_t job;
};

[[noreturn]] void fail(const char* what) { throw std::system_error(errno, std::generic_category(), what); }

int pidfd_open(pid_t pid) { return static_cast<int>(syscall(SYS_pidfd_open, pid, 0)); }

// Receives one message and up to two fds; returns false when the dispatcher is gone.
bool receive(int sock, Message* msg, std::vector<int>* fds) {
  struct iovec iov = {msg, sizeof(*msg)};
  alignas(struct cmsghdr) char control[CMSG_SPACE(2 * sizeof(int))];
  struct msghdr mh = {};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = control;
  mh.msg_controllen = sizeof(control);
  ssize_t n;
  do n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
  while (n < 0 && errno == EINTR);
  if (n <= 0) return false;
  for (struct cmsghdr* cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
    if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int fd;
      memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
      fds->push_back(fd);
    }
  }
  if (n != sizeof(*msg)) msg->op = 0;  // malformed: ignored by the caller
  return true;
}

int remove_entry(const char* path, const struct stat*, int, struct FTW*) {
  remove(path);
  return 0;
}

// rm -rf without following symlinks or crossing mounts (the program chose the contents).
void remove_tree(const std::string& path) {
  nftw(path.c_str(), remove_entry, 32, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

std::string job_dir(const std::string& base, uint64_t job) { return base + "/" + std::to_string(job); }

// fork(2) with the interpreter's fork hooks, as os.fork does (the GIL is held).
pid_t python_fork() {
  PyOS_BeforeFork();
  pid_t pid = fork();
  if (pid == 0)
    PyOS_AfterFork_Child();
  else
    PyOS_AfterFork_Parent();
  return pid;
}

void report_exit(int sock, const std::string& base, uint64_t job, int status) {
  remove_tree(job_dir(base, job));
  Message done = {kExited, status, job};
  send(sock, &done, sizeof(done), MSG_NOSIGNAL);
}

// Hands a job to a judge: its id, with the payload memfd and the result pipe.
bool send_job(int jobs_fd, uint64_t job, const std::vector<int>& fds) {
  struct iovec iov = {&job, sizeof(job)};
  alignas(struct cmsghdr) char control[CMSG_SPACE(2 * sizeof(int))] = {};
  struct msghdr mh = {};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = control;
  mh.msg_controllen = sizeof(control);
  struct cmsghdr* cm = CMSG_FIRSTHDR(&mh);
  cm->cmsg_level = SOL_SOCKET;
  cm->cmsg_type = SCM_RIGHTS;
  cm->cmsg_len = CMSG_LEN(2 * sizeof(int));
  memcpy(CMSG_DATA(cm), fds.data(), 2 * sizeof(int));
  ssize_t n;
  do n = sendmsg(jobs_fd, &mh, MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  return n == sizeof(job);
}

}  // namespace

pid_t fork_child(bool new_pid_namespace) {
  if (new_pid_namespace) {
    // unshare(CLONE_NEWPID) only sets the namespace of future children, and refuses to run
    // again while that differs from our own: setns back to our own first.
    int own_ns = open("/proc/self/ns/pid", O_RDONLY | O_CLOEXEC);
    if (own_ns < 0) fail("open(/proc/self/ns/pid)");
    int rc = setns(own_ns, CLONE_NEWPID);
    close(own_ns);
    if (rc != 0) fail("setns");
    if (unshare(CLONE_NEWPID) != 0) fail("unshare(CLONE_NEWPID)");
  }
  pid_t pid = python_fork();
  if (pid < 0) fail("fork");
  return pid;
}

JudgeStart serve_jobs(int sock, const std::string& base) {
  // Readable once this server has exited: a judge checks it after arming its parent-death
  // signal, closing the window in which the server could die unnoticed.
  int self_pidfd = pidfd_open(getpid());
  if (self_pidfd < 0) fail("pidfd_open");
  std::map<int, Judge> judges;  // by worker slot

  for (;;) {
    std::vector<struct pollfd> pfds = {{sock, POLLIN, 0}};
    std::vector<int> owners;  // slot of each pair of pollfds after the first
    for (auto& [slot, j] : judges) {
      pfds.push_back({j.pidfd, POLLIN, 0});
      pfds.push_back({j.jobs_fd, POLLIN, 0});
      owners.push_back(slot);
    }
    if (poll(pfds.data(), pfds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      fail("poll");
    }

    for (size_t k = 0; k < owners.size(); ++k) {
      Judge& j = judges.at(owners[k]);
      if (pfds[2 + 2 * k].revents & POLLIN) {
        uint64_t finished = 0;
        if (recv(j.jobs_fd, &finished, sizeof(finished), MSG_DONTWAIT) == sizeof(finished) &&
            finished == j.job && j.job != 0) {
          report_exit(sock, base, j.job, 0);
          j.job = 0;
        }
      }
      if (pfds[1 + 2 * k].revents) {  // the judge died: its untrusted child died with it
        int status = 0;
        waitpid(j.pid, &status, 0);
        if (j.job != 0) report_exit(sock, base, j.job, status);
        close(j.pidfd);
        close(j.jobs_fd);
        judges.erase(owners[k]);
      }
    }

    if (!pfds[0].revents) continue;
    Message msg = {};
    std::vector<int> fds;
    if (!receive(sock, &msg, &fds)) {
      // The dispatcher is gone: take every job down with us.
      for (auto& [slot, j] : judges) kill(j.pid, SIGKILL);
      for (auto& [slot, j] : judges) {
        waitpid(j.pid, nullptr, 0);
        if (j.job != 0) remove_tree(job_dir(base, j.job));
      }
      _exit(0);
    }
    if (msg.op == kKill) {
      for (auto& [slot, j] : judges)
        if (j.job == msg.job) kill(j.pid, SIGKILL);
    }
    if (msg.op != kSubmit || fds.size() != 2) {
      for (int fd : fds) close(fd);
      continue;
    }
    int slot = msg.arg;
    auto it = judges.find(slot);
    if (it != judges.end() && it->second.job != 0) {
      // The dispatcher reuses a slot only after its job ended; anything else is a bug, and
      // the job ends with no result rather than sharing a judge.
      for (int fd : fds) close(fd);
      report_exit(sock, base, msg.job, 0);
      continue;
    }
    if (it == judges.end()) {
      int sv[2];
      if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) fail("socketpair");
      pid_t pid = python_fork();
      if (pid < 0) fail("fork");
      if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        struct pollfd dead = {self_pidfd, POLLIN, 0};
        if (poll(&dead, 1, 0) != 0) _exit(1);
        close(sock);
        close(self_pidfd);
        close(sv[0]);
        for (int fd : fds) close(fd);
        for (auto& [other, j] : judges) {
          close(j.pidfd);
          close(j.jobs_fd);
        }
        return JudgeStart{slot, sv[1]};
      }
      close(sv[1]);
      int pidfd = pidfd_open(pid);
      if (pidfd < 0) {  // cannot watch it: stop it now and report the job as gone
        kill(pid, SIGKILL);
        waitpid(pid, nullptr, 0);
        close(sv[0]);
        for (int fd : fds) close(fd);
        report_exit(sock, base, msg.job, SIGKILL);
        continue;
      }
      it = judges.emplace(slot, Judge{pid, pidfd, sv[0], 0}).first;
    }
    // If the judge has just died, the send fails and its pidfd reports the job as gone.
    it->second.job = msg.job;
    send_job(it->second.jobs_fd, msg.job, fds);
    for (int fd : fds) close(fd);
  }
}

}  // namespace prmfast
