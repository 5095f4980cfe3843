// The fork server's loop. Every fork shares the warm interpreter's pages copy-on-write, so
// each page the server writes afterwards (a Python loop writes refcounts everywhere) is
// copied while a judge is alive. Running the loop here keeps the server's writes to a few
// pages of C++ state; Python runs again only in the forked judge.
//
// One fork per job: the judge is forked straight into a fresh PID namespace, where it is
// PID 1, so killing it (deadline, or the server's death via the parent-death signal) makes
// the kernel kill every process of the job.
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

struct Running {
  pid_t pid;
  int pidfd;
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

}  // namespace

JobStart serve_jobs(int sock, bool new_pid_namespace, const std::string& base) {
  // unshare(CLONE_NEWPID) only sets the namespace of future children, and refuses to run
  // again while that differs from our own; setns back to our own before each unshare.
  int own_ns = -1;
  if (new_pid_namespace && (own_ns = open("/proc/self/ns/pid", O_RDONLY | O_CLOEXEC)) < 0)
    fail("open(/proc/self/ns/pid)");
  // Readable once this server has exited: a judge checks it after arming its parent-death
  // signal, closing the window in which the server could die unnoticed.
  int self_pidfd = pidfd_open(getpid());
  if (self_pidfd < 0) fail("pidfd_open");
  std::map<uint64_t, Running> jobs;

  for (;;) {
    std::vector<struct pollfd> pfds = {{sock, POLLIN, 0}};
    std::vector<uint64_t> owners;
    for (auto& [job, r] : jobs) {
      pfds.push_back({r.pidfd, POLLIN, 0});
      owners.push_back(job);
    }
    if (poll(pfds.data(), pfds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      fail("poll");
    }

    for (size_t k = 1; k < pfds.size(); ++k) {
      if (!pfds[k].revents) continue;
      auto it = jobs.find(owners[k - 1]);
      int status = 0;
      waitpid(it->second.pid, &status, 0);
      close(it->second.pidfd);
      remove_tree(job_dir(base, it->first));
      Message done = {kExited, status, it->first};
      send(sock, &done, sizeof(done), MSG_NOSIGNAL);
      jobs.erase(it);
    }

    if (!pfds[0].revents) continue;
    Message msg = {};
    std::vector<int> fds;
    if (!receive(sock, &msg, &fds)) {
      // The dispatcher is gone: take every job down with us.
      for (auto& [job, r] : jobs) kill(r.pid, SIGKILL);
      for (auto& [job, r] : jobs) {
        waitpid(r.pid, nullptr, 0);  // a PID namespace's init is reaped after all its processes
        remove_tree(job_dir(base, job));
      }
      _exit(0);
    }
    if (msg.op == kKill) {
      auto it = jobs.find(msg.job);
      if (it != jobs.end()) kill(it->second.pid, SIGKILL);
    }
    if (msg.op != kSubmit || fds.size() != 2) {
      for (int fd : fds) close(fd);
      continue;
    }
    if (new_pid_namespace) {
      if (setns(own_ns, CLONE_NEWPID) != 0) fail("setns");
      if (unshare(CLONE_NEWPID) != 0) fail("unshare(CLONE_NEWPID)");
    }
    pid_t pid = python_fork();
    if (pid < 0) fail("fork");
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      struct pollfd dead = {self_pidfd, POLLIN, 0};
      if (poll(&dead, 1, 0) != 0) _exit(1);
      close(sock);
      close(self_pidfd);
      if (own_ns >= 0) close(own_ns);
      for (auto& [job, r] : jobs) close(r.pidfd);
      return JobStart{msg.job, msg.arg, fds[0], fds[1]};
    }
    for (int fd : fds) close(fd);
    int pidfd = pidfd_open(pid);
    if (pidfd < 0) {  // cannot watch it: stop it now and report it as gone
      int status = 0;
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      remove_tree(job_dir(base, msg.job));
      Message done = {kExited, status, msg.job};
      send(sock, &done, sizeof(done), MSG_NOSIGNAL);
      continue;
    }
    jobs[msg.job] = Running{pid, pidfd};
  }
}

}  // namespace prmfast
