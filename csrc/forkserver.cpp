// The fork server's loop, and each slot's zygote. Every fork shares the warm interpreter's
// pages copy-on-write, so each page a process writes afterwards is copied; running these
// loops in C++ keeps their writes to a few pages, and Python runs again only in the
// processes that need it (judges, untrusted children).
//
//   fork server   clean and warm; never reads a payload (it passes fds along)
//   └ judge       one per worker slot, long-lived, root, PID 1 of its own PID namespace:
//     │           reads each job's payload (test code, expected outputs), decides verdicts
//     └ zygote    forked by the judge here in C++ right after the judge itself was forked,
//       │         before the judge runs any Python or sees any job: its memory is the
//       │         server's clean memory. PID 1 of a nested PID namespace; forks, confines
//       │         and reaps the untrusted children, and kills everything of a job on request
//       └ child   one per job (per case for stdio tests), confined before any Python runs
//
// A child holds no job's secret in its memory (this one's or any earlier one's), and the
// judge's memory is out of its reach (another uid, Landlock). A job costs one fork of the
// clean zygote and no fork of a judge, whose pages stay private, so it pays no
// copy-on-write per job. Every process of a job lives in the zygote's namespace with its
// parent, so kills, reaping and the kernel's clean-up when a judge dies (its namespace and
// the nested one go with it) never leave anything behind.
#include "forkserver.h"
#include "fdpass.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mount.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <map>
#include <system_error>
#include <vector>


#include "confine.h"
#include "protocol.h"

namespace prmfast {
namespace {

// A slot's own POSIX shared memory folder (with pidns): 64 MiB, world-writable and sticky
// (the job's uid may differ from the zygote's).
constexpr const char* kDevShm = "/dev/shm";
constexpr const char* kDevShmOptions = "mode=1777,size=64m";

[[noreturn]] void fail(const char* what) { throw std::system_error(errno, std::generic_category(), what); }

int pidfd_open(pid_t pid) { return static_cast<int>(syscall(SYS_pidfd_open, pid, 0)); }

// Receives one message of at most `size` bytes and up to `max_fds` fds; returns the
// message's length (0 when the peer is gone).
ssize_t receive(int sock, void* buf, size_t size, std::vector<int>* fds, int max_fds) {
  struct iovec iov = {buf, size};
  alignas(struct cmsghdr) char control[CMSG_SPACE(8 * sizeof(int))];
  struct msghdr mh = {};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = control;
  mh.msg_controllen = CMSG_SPACE(max_fds * sizeof(int));
  ssize_t n;
  do n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
  while (n < 0 && errno == EINTR);
  for (struct cmsghdr* cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
    if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int fd;
      memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
      fds->push_back(fd);
    }
  }
  if (n < 0 && errno == EAGAIN) return -1;
  if ((mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) && n > 0) return -1;  // malformed: ignored
  return n < 0 ? 0 : n;
}

void close_all(std::vector<int>& fds) {
  for (int fd : fds) close(fd);
  fds.clear();
}

int remove_entry(const char* path, const struct stat*, int, struct FTW*) {
  remove(path);
  return 0;
}

std::string job_dir(const std::string& base, uint64_t job) { return base + "/" + std::to_string(job); }

std::string slot_cgroup(const ServerConfig& cfg, int slot) {
  return cfg.cgroup + "/slot" + std::to_string(slot);
}

// The "oom_kill" count of a memory cgroup (v1 memory.oom_control), 0 if unreadable.
int64_t oom_kills(const std::string& group) {
  int fd = open((group + "/memory.oom_control").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char text[256] = {};
  ssize_t n = read(fd, text, sizeof(text) - 1);
  close(fd);
  const char* at = n > 0 ? strstr(text, "oom_kill ") : nullptr;
  return at ? strtoll(at + 9, nullptr, 10) : 0;
}

// fork(2) with the interpreter's fork hooks, as os.fork does (the GIL is held).
pid_t python_fork() {
  PyOS_BeforeFork();
  pid_t pid = fork();
  int err = errno;
  if (pid == 0)
    PyOS_AfterFork_Child();
  else
    PyOS_AfterFork_Parent();
  errno = err;
  return pid;
}

// In a forked process that must not outlive its parent: the parent-death signal, then a
// check (on a pidfd of the parent) that closes the window in which the parent could have
// died unnoticed.
void die_with(int parent_pidfd) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  struct pollfd dead = {parent_pidfd, POLLIN, 0};
  if (poll(&dead, 1, 0) != 0) _exit(1);
}

// With userns, in a new zygote: a user namespace of the slot's own, nested in the server's,
// so that RLIMIT_NPROC counts this slot's processes only (the kernel counts per user
// namespace and uid), and with pidns a PID namespace owned by it, whose PID 1 goes on as the
// zygote (continue_as_pid1).
void slot_namespaces(const ServerConfig& cfg) {
  pid_t judge = getppid();
  const char* what = "";
  if (enter_user_namespace(0, 0, &what) != 0) _exit(1);
  prctl(PR_SET_PDEATHSIG, SIGKILL);  // new credentials: armed again, then checked
  if (getppid() != judge) _exit(1);
  if (cfg.pidns && (unshare(CLONE_NEWPID) != 0 || !continue_as_pid1())) _exit(1);
}

// In a zygote, PID 1 of its namespace: a /proc of that namespace only, in a mount namespace of
// its own, so that its children see none of the machine's other processes there; and a
// /dev/shm of the slot's own (POSIX shared memory and semaphores: multiprocessing), which the
// zygote empties after every job (clear_dev_shm).
// Returns whether the slot has its /dev/shm (not on a machine without that folder).
bool own_proc() {
  if (unshare(CLONE_NEWNS) != 0 || mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
      mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0)
    _exit(1);
  if (mount("tmpfs", kDevShm, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, kDevShmOptions) == 0)
    return true;
  if (errno != ENOENT) _exit(1);
  return false;
}

// Removes everything a job left in the slot's /dev/shm (a readdir when it left nothing).
void clear_dev_shm() {
  DIR* dir = opendir(kDevShm);
  if (dir == nullptr) return;
  bool empty = true;
  while (struct dirent* entry = readdir(dir))
    if (strcmp(entry->d_name, ".") != 0 && strcmp(entry->d_name, "..") != 0) empty = false;
  closedir(dir);
  if (!empty) remove_tree(kDevShm);  // all but the mount point itself
}

// In a zygote, whose slot has a System V IPC namespace of its own: removes every shared
// memory segment, semaphore set and message queue in it, once the job's processes are gone.
// Landlock does not cover these objects; this way none reaches the next job. Three *_INFO
// calls when there is nothing to remove (the usual case).
void clear_sysv_ipc() {
  struct shm_info shm = {};
  int last = shmctl(0, SHM_INFO, reinterpret_cast<struct shmid_ds*>(&shm));
  for (int i = 0; shm.used_ids > 0 && i <= last; ++i) {
    struct shmid_ds ds;
    int id = shmctl(i, SHM_STAT_ANY, &ds);
    if (id >= 0) shmctl(id, IPC_RMID, nullptr);
  }
  struct seminfo sem = {};
  last = semctl(0, 0, SEM_INFO, &sem);
  for (int i = 0; sem.semusz > 0 && i <= last; ++i) {
    struct semid_ds ds;
    int id = semctl(i, 0, SEM_STAT_ANY, &ds);
    if (id >= 0) semctl(id, 0, IPC_RMID);
  }
  struct msginfo msg = {};
  last = msgctl(0, MSG_INFO, reinterpret_cast<struct msqid_ds*>(&msg));
  for (int i = 0; msg.msgpool > 0 && i <= last; ++i) {
    struct msqid_ds ds;
    int id = msgctl(i, MSG_STAT_ANY, &ds);
    if (id >= 0) msgctl(id, IPC_RMID, nullptr);
  }
}

// The pids of this (single-threaded) process's children, zombies included: from
// /proc/thread-self/children, or, where the kernel lacks that file, a scan of /proc.
std::vector<pid_t> own_children() {
  std::vector<pid_t> pids;
  if (FILE* f = fopen("/proc/thread-self/children", "re")) {
    for (long pid; fscanf(f, "%ld", &pid) == 1;) pids.push_back(static_cast<pid_t>(pid));
    fclose(f);
    return pids;
  }
  pid_t self = getpid();
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return pids;
  while (struct dirent* entry = readdir(proc)) {
    if (entry->d_name[0] < '0' || entry->d_name[0] > '9') continue;
    char path[300], text[512];
    snprintf(path, sizeof(path), "/proc/%s/stat", entry->d_name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    ssize_t n = read(fd, text, sizeof(text) - 1);
    close(fd);
    text[n > 0 ? n : 0] = 0;
    const char* after_name = strrchr(text, ')');  // "pid (name) state ppid ..."
    char state;
    long ppid;
    if (after_name && sscanf(after_name + 1, " %c %ld", &state, &ppid) == 2 && ppid == self)
      pids.push_back(static_cast<pid_t>(atol(entry->d_name)));
  }
  closedir(proc);
  return pids;
}

// Moves `fds` to 3, 4, ... and closes every other fd above 2.
void keep_fds(std::vector<int> fds) {
  for (int& fd : fds)
    if ((fd = fcntl(fd, F_DUPFD_CLOEXEC, 64)) < 0) _exit(1);
  int next = 3;
  for (int fd : fds)
    if (dup3(fd, next++, O_CLOEXEC) < 0) _exit(1);
  if (syscall(SYS_close_range, static_cast<unsigned>(next), ~0U, 0U) != 0) _exit(1);
}

// What a forked process goes on as.
struct Start {
  enum Role { kJudge = 0, kChild = 1 } role;
  int slot = -1;
  int mode = 0;          // child: 0 serve requests, 1 run as a script
  std::string workdir;   // child: its job folder (already its working directory)
};

[[noreturn]] void child_failed(int err_fd, const char* what, int err) {
  char line[256];
  int n = snprintf(line, sizeof(line), "sandbox setup failed: %s: %s\n", what, strerror(err));
  if (n > 0 && write(err_fd, line, static_cast<size_t>(n)) < 0) _exit(120);
  _exit(120);
}

// In a forked child, fds in place and every layer applied; no Python runs before the end.
// fds: program memfd, stdin, request channel, stdout, stderr -> 4, 0, 3, 1, 2.
void confine_child(const ServerConfig& cfg, int slot, bool own_shm, const SpawnRequest& req,
                   std::vector<int>& fds, pid_t zygote, Start* start) {
  static const int target[5] = {4, 0, 3, 1, 2};
  int err_fd = fds[4];
  if (setpgid(0, 0) != 0) child_failed(err_fd, "setpgid", errno);
  int high[5];
  for (int i = 0; i < 5; ++i)
    if ((high[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 16)) < 0) child_failed(err_fd, "fcntl", errno);
  for (int i = 0; i < 5; ++i)
    if (dup2(high[i], target[i]) < 0) child_failed(err_fd, "dup2", errno);
  // Nothing else reaches the program: not the zygote's socket, not its pidfds.
  if (syscall(SYS_close_range, 5U, ~0U, 0U) != 0) child_failed(2, "close_range", errno);
  std::string workdir = job_dir(cfg.base, req.job);
  if (chdir(workdir.c_str()) != 0) child_failed(2, "chdir", errno);
  // A scrubbed environment (child.prepare mirrors it in os.environ).
  if (clearenv() != 0 || setenv("PATH", "/usr/local/bin:/usr/bin:/bin", 1) != 0 ||
      setenv("HOME", workdir.c_str(), 1) != 0 || setenv("TMPDIR", workdir.c_str(), 1) != 0 ||
      setenv("LANG", "C.UTF-8", 1) != 0 || setenv("PYTHONIOENCODING", "utf-8", 1) != 0)
    child_failed(2, "setenv", errno);
  // Born in the slot's memory cgroup (the zygote's): the OOM killer takes the job's processes
  // before the zygote (and, machine-wide, before anything else).
  if (!cfg.cgroup.empty() && write_text("/proc/self/oom_score_adj", "1000") != 0)
    child_failed(2, "oom_score_adj", errno);
  const char* what = "";
  // With userns, RLIMIT_NPROC counts the uid of the slot's own user namespace: the zygote
  // (and the process that made that namespace, with pidns) besides the job's processes.
  long sandbox_processes = cfg.userns ? 1 + cfg.pidns : 0;
  Limits lim{req.memory_mb, req.cpu_s, req.file_size_mb, req.open_files,
             req.processes + sandbox_processes};
  if (cfg.rlimits && apply_limits(lim, &what) != 0) child_failed(2, what, errno);
  // Root of the slot's user namespace: no capability over anything it owns.
  if (cfg.userns && drop_capabilities(&what) != 0) child_failed(2, what, errno);
  if (cfg.setuid && drop_privileges(cfg.uid_base + slot, cfg.uid_base + slot, &what) != 0)
    child_failed(2, what, errno);
  std::vector<std::string> writable = {workdir, "/dev/null"};
  if (own_shm) writable.push_back(kDevShm);  // the slot's own (own_proc)
  if (cfg.landlock && landlock_restrict(writable, cfg.readable, &what) != 0)
    child_failed(2, what, errno);
  // Changing uid cleared the parent-death signal: arm it again, then make sure the zygote
  // did not die in between (a reparented child sees another parent).
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != zygote) _exit(1);
  start->role = Start::kChild;
  start->slot = slot;
  start->mode = req.mode;
  start->workdir = workdir;
}

// A slot's zygote: serves its judge's requests until the judge hangs up.
class Zygote {
 public:
  Zygote(int sock, const ServerConfig& cfg, int slot, bool own_shm)
      : sock_(sock), cfg_(cfg), slot_(slot), own_shm_(own_shm) {
    self_pidfd_ = pidfd_open(getpid());
    if (self_pidfd_ < 0) _exit(1);
  }

  // Returns only in a forked untrusted child.
  Start loop() {
    for (;;) {
      std::vector<struct pollfd> pfds = {{sock_, POLLIN, 0}};
      for (auto& [pidfd, k] : kids_) pfds.push_back({pidfd, POLLIN, 0});
      if (poll(pfds.data(), pfds.size(), -1) < 0) {
        if (errno == EINTR) continue;
        _exit(1);
      }
      for (size_t k = 1; k < pfds.size(); ++k)
        if (pfds[k].revents) reap(pfds[k].fd);
      if (!pfds[0].revents) continue;
      SpawnRequest req = {};
      std::vector<int> fds;
      ssize_t n = receive(sock_, &req, sizeof(req), &fds, 5);
      if (n < 0) {
        close_all(fds);
        continue;
      }
      if (n == 0) {  // the judge is gone: so is everything of its jobs
        kill_all();
        _exit(0);
      }
      if (req.op == kSpawn && n == sizeof(req) && fds.size() == 5) {
        Start start;
        if (spawn(req, fds, &start)) return start;
        continue;
      }
      close_all(fds);
      if (req.op == kKill && n == sizeof(Message)) {
        Message msg;
        memcpy(&msg, &req, sizeof(msg));
        kill_all();
        if (cfg_.ipcns) clear_sysv_ipc();
        if (own_shm_) clear_dev_shm();
        Message done = {kKilled, 0, msg.job};
        send_message(sock_, done);
      }
    }
  }

 private:
  struct Kid {
    pid_t pid;
    uint64_t seq;
  };

  bool spawn(const SpawnRequest& req, std::vector<int>& fds, Start* start) {
    // The job's processes share the slot cgroup's limit (no job of this slot runs now).
    if (!cfg_.cgroup.empty() && req.memory_mb != limit_mb_) {
      if (write_text(slot_cgroup(cfg_, slot_) + "/memory.limit_in_bytes",
                     std::to_string(req.memory_mb << 20)) != 0)
        _exit(1);
      limit_mb_ = req.memory_mb;
    }
    pid_t self = getpid();
    pid_t pid = python_fork();
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      struct pollfd dead = {self_pidfd_, POLLIN, 0};
      if (poll(&dead, 1, 0) != 0) _exit(1);
      prctl(PR_SET_NAME, "sandbox-child");
      confine_child(cfg_, slot_, own_shm_, req, fds, self, start);
      return true;
    }
    int err = errno;
    close_all(fds);
    Message spawned = {kSpawned, pid < 0 ? -err : pid, req.seq};
    if (pid > 0) {
      int pidfd = pidfd_open(pid);
      if (pidfd < 0) {  // cannot watch it: stop it now and report it as gone
        kill(pid, SIGKILL);
        send_message(sock_, spawned);
        finish(pid, req.seq);
        return false;
      }
      kids_[pidfd] = Kid{pid, req.seq};
    }
    send_message(sock_, spawned);
    return false;
  }

  // Reaps `pid` and tells the judge how it ended and how much CPU time it used.
  void finish(pid_t pid, uint64_t seq) {
    int status = 0;
    struct rusage ru = {};
    while (wait4(pid, &status, __WALL, &ru) < 0 && errno == EINTR) {
    }
    int64_t cpu_us = (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000LL +
                     ru.ru_utime.tv_usec + ru.ru_stime.tv_usec;
    int64_t kills = 0;
    if (!cfg_.cgroup.empty()) {
      int64_t total = oom_kills(slot_cgroup(cfg_, slot_));
      kills = total - oom_seen_;
      oom_seen_ = total;
    }
    ChildExit gone = {kChildExited, status, seq, cpu_us, kills};
    send_message(sock_, gone);
  }

  void reap(int pidfd) {
    auto it = kids_.find(pidfd);
    if (it == kids_.end()) return;
    Kid k = it->second;
    kids_.erase(it);
    close(pidfd);
    finish(k.pid, k.seq);
  }

  // SIGKILL every process of the job and return once none is left, zombies included.
  void kill_all() {
    for (auto& [pidfd, k] : kids_) {
      if (!cfg_.pidns) kill(-k.pid, SIGKILL);  // its process group, at once
      kill(k.pid, SIGKILL);
    }
    for (auto it = kids_.begin(); it != kids_.end(); it = kids_.erase(it)) {
      close(it->first);
      finish(it->second.pid, it->second.seq);
    }
    if (!cfg_.pidns) {
      kill_orphans();
      return;
    }
    // PID 1 of the job namespace: kill(-1) reaches every other process in it (orphans,
    // double forks, setsid), and every orphan becomes our child to reap.
    for (;;) {
      if (kill(-1, SIGKILL) != 0 && errno == ESRCH) return;  // nothing, not even a zombie
      if (waitpid(-1, nullptr, __WALL) < 0 && errno == ECHILD) usleep(200);  // in transit
    }
  }

  // Without a PID namespace the zygote is a child subreaper: every orphan of a job (double
  // forks, setsid) is reparented to it. Kill and reap its children until it has none; a
  // process killed in a round hands its own children to the next one.
  void kill_orphans() {
    for (;;) {
      std::vector<pid_t> left = own_children();
      if (left.empty()) return;
      for (pid_t pid : left) kill(pid, SIGKILL);
      for (pid_t pid : left)
        while (waitpid(pid, nullptr, __WALL) < 0 && errno == EINTR) {
        }
    }
  }

  int sock_;
  ServerConfig cfg_;
  int slot_;
  bool own_shm_;             // the slot has its own /dev/shm, emptied after each job
  int self_pidfd_ = -1;
  int64_t oom_seen_ = 0;     // the slot cgroup's OOM kills reported so far
  int64_t limit_mb_ = -1;    // the slot cgroup's memory limit now
  std::map<int, Kid> kids_;  // by pidfd
};

struct Judge {
  pid_t pid = -1;
  int pidfd = -1;
  int sock = -1;   // -1 once the judge hung up
  int slot = -1;
  uint64_t job = 0;  // the job it runs, 0 when idle
};

class Server {
 public:
  Server(int sock, const ServerConfig& cfg) : sock_(sock), cfg_(cfg) {
    // unshare(CLONE_NEWPID) only sets the namespace of future children, and refuses to run
    // again while that differs from our own; setns back to our own before each unshare.
    if (cfg_.pidns && (own_ns_ = open("/proc/self/ns/pid", O_RDONLY | O_CLOEXEC)) < 0)
      fail("open(/proc/self/ns/pid)");
    // Readable once this server has exited: see die_with.
    self_pidfd_ = pidfd_open(getpid());
    if (self_pidfd_ < 0) fail("pidfd_open");
  }

  Start loop() {
    for (;;) {
      // What each pollfd is: 0 the dispatcher, 1 a judge's socket, 2 a judge's pidfd.
      std::vector<struct pollfd> pfds = {{sock_, POLLIN, 0}};
      std::vector<std::pair<int, uint64_t>> what = {{0, 0}};
      for (auto& [gen, j] : judges_) {
        if (j.sock >= 0) {
          pfds.push_back({j.sock, POLLIN, 0});
          what.push_back({1, gen});
        }
        pfds.push_back({j.pidfd, POLLIN, 0});
        what.push_back({2, gen});
      }
      if (poll(pfds.data(), pfds.size(), -1) < 0) {
        if (errno == EINTR) continue;
        fail("poll");
      }
      // A judge's last messages before its exit; the dispatcher last.
      for (int pass : {1, 2, 0}) {
        for (size_t k = 0; k < pfds.size(); ++k) {
          if (!pfds[k].revents || what[k].first != pass) continue;
          Start start;
          if (pass == 1) judge_message(what[k].second);
          if (pass == 2) judge_exited(what[k].second);
          if (pass == 0 && dispatcher_message(&start)) return start;
        }
      }
    }
  }

 private:
  // Forks the judge of `slot` as PID 1 of a fresh PID namespace, and in it the judge's
  // zygote; returns the judge's generation, or 0 in a forked process (then *start says
  // what it is).
  uint64_t spawn_judge(int slot, std::vector<int>& pending, Start* start) {
    if (cfg_.pidns) {
      if (setns(own_ns_, CLONE_NEWPID) != 0) fail("setns");
      if (unshare(CLONE_NEWPID) != 0) fail("unshare(CLONE_NEWPID)");
    }
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) fail("socketpair");
    pid_t pid = python_fork();
    if (pid < 0) fail("fork");
    if (pid == 0) {
      die_with(self_pidfd_);
      close(sv[0]);
      close_all(pending);  // the job's fds: the judge gets its own copies by message
      close_server_fds();
      start_judge(slot, sv[1], start);  // returns in the judge and in untrusted children
      return 0;
    }
    close(sv[1]);
    Judge j;
    j.pid = pid;
    j.slot = slot;
    j.sock = sv[0];
    j.pidfd = pidfd_open(pid);
    if (j.pidfd < 0) fail("pidfd_open(judge)");
    uint64_t gen = next_gen_++;
    judges_[gen] = j;
    slot_judge_[slot] = gen;
    return gen;
  }

  // In a new judge, before any Python runs in it: fork its zygote, then go on as the judge.
  // Each keeps stdio and its sockets only (judge: 3 server, 4 zygote; zygote: 3 judge).
  void start_judge(int slot, int server_sock, Start* start) {
    int judge_pidfd = pidfd_open(getpid());
    if (judge_pidfd < 0) _exit(1);
    // The zygote is PID 1 of a namespace nested in the judge's (the judge must not be
    // killed by the zygote's kill(-1)); with userns the zygote makes it (slot_namespaces).
    if (cfg_.pidns && !cfg_.userns && unshare(CLONE_NEWPID) != 0) _exit(1);
    int zv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, zv) != 0) _exit(1);
    pid_t pid = python_fork();
    if (pid < 0) _exit(1);
    if (pid == 0) {
      die_with(judge_pidfd);
      prctl(PR_SET_NAME, "sandbox-zygote");
      keep_fds({zv[1]});
      if (cfg_.userns) slot_namespaces(cfg_);
      bool own_shm = cfg_.pidns && own_proc();
      // Without a PID namespace, orphans of a job come to the zygote (see kill_orphans).
      if (!cfg_.pidns && prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) _exit(1);
      if (cfg_.ipcns && unshare(CLONE_NEWIPC) != 0) _exit(1);
      // Into the slot's memory cgroup, so that its children are born there (joining one per
      // child costs a cgroup migration each).
      if (!cfg_.cgroup.empty() && write_text(slot_cgroup(cfg_, slot) + "/cgroup.procs", "0") != 0)
        _exit(1);
      // Once the slot is set up, the seccomp filter: every child is born under it (attaching
      // it in each child instead costs ~0.1 ms of CPU per job: the kernel checks, translates and
      // compiles the filter and works out which system calls it always allows).
      // Nothing the zygote or a child's confinement does is refused.
      const char* what = "";
      if (cfg_.seccomp && seccomp_restrict(&what) != 0) child_failed(2, what, errno);
      Zygote zygote(3, cfg_, slot, own_shm);
      *start = zygote.loop();  // returns only in an untrusted child
      return;
    }
    prctl(PR_SET_NAME, "sandbox-judge");
    keep_fds({server_sock, zv[0]});
    start->role = Start::kJudge;
    start->slot = slot;
  }

  void judge_exited(uint64_t gen) {
    auto it = judges_.find(gen);
    if (it == judges_.end()) return;
    Judge j = it->second;
    int status = 0;
    // As PID 1 of its namespace it is reaped only after every process of the namespace,
    // the nested one of its zygote included.
    waitpid(j.pid, &status, 0);
    close(j.pidfd);
    if (j.sock >= 0) close(j.sock);
    judges_.erase(it);
    if (slot_judge_.count(j.slot) && slot_judge_[j.slot] == gen) slot_judge_.erase(j.slot);
    if (j.job) {  // died with a job: killed at its deadline, or a bug
      remove_tree(job_dir(cfg_.base, j.job));
      Message done = {kExited, status, j.job};
      send_message(sock_, done);
    }
  }

  void judge_message(uint64_t gen) {
    auto found = judges_.find(gen);
    if (found == judges_.end() || found->second.sock < 0) return;
    Judge& j = found->second;
    Message msg = {};
    std::vector<int> fds;
    ssize_t n = receive(j.sock, &msg, sizeof(msg), &fds, 0);
    close_all(fds);
    if (n < 0) return;
    if (n == 0) {  // the judge is exiting; its pidfd says when it is gone
      close(j.sock);
      j.sock = -1;
      return;
    }
    if (msg.op == kFinished && n == sizeof(msg) && j.job == msg.job && j.job) {
      Message done = {kExited, 0, j.job};
      j.job = 0;
      if (msg.arg && slot_judge_.count(j.slot) && slot_judge_[j.slot] == gen)
        slot_judge_.erase(j.slot);  // retiring: it exits by itself, the slot gets a new one
      send_message(sock_, done);
    }
  }

  bool dispatcher_message(Start* start) {
    Message msg = {};
    std::vector<int> fds;
    ssize_t n = receive(sock_, &msg, sizeof(msg), &fds, 2);
    if (n < 0) {
      close_all(fds);
      return false;
    }
    if (n == 0) shutdown();
    if (msg.op == kKill) {
      for (auto& [gen, j] : judges_)
        if (j.job == msg.job) kill(j.pid, SIGKILL);  // and with it its PID namespaces
    }
    if (msg.op != kSubmit || n != sizeof(msg) || fds.size() != 2 || msg.arg < 0) {
      close_all(fds);
      return false;
    }
    for (int attempt = 0; attempt < 2; ++attempt) {
      uint64_t gen = slot_judge_.count(msg.arg) ? slot_judge_[msg.arg] : 0;
      if (!gen && !(gen = spawn_judge(msg.arg, fds, start))) return true;
      Judge& j = judges_.at(gen);
      Message job = {kSubmit, 0, msg.job};
      if (j.sock >= 0 && j.job == 0 && send_message(j.sock, job, fds.data(), 2)) {
        j.job = msg.job;
        close_all(fds);
        return false;
      }
      // That judge is gone or confused: replace it.
      kill(j.pid, SIGKILL);
      slot_judge_.erase(msg.arg);
    }
    close_all(fds);  // the dispatcher sees the result pipe closed without a result
    Message done = {kExited, -1, msg.job};
    send_message(sock_, done);
    return false;
  }

  // The dispatcher is gone: take everything down with us. Idle judges are told (they stop
  // their zygote and exit, which keeps their CPU time accounted); busy ones are killed.
  [[noreturn]] void shutdown() {
    for (auto& [gen, j] : judges_) {
      if (j.job || j.sock < 0) kill(j.pid, SIGKILL);
      if (j.sock >= 0) close(j.sock);
    }
    while (waitpid(-1, nullptr, __WALL) > 0 || errno == EINTR) {
    }
    for (auto& [gen, j] : judges_)
      if (j.job) remove_tree(job_dir(cfg_.base, j.job));
    _exit(0);
  }

  // In a forked judge: none of the server's fds may stay open there.
  void close_server_fds() {
    close(sock_);
    close(self_pidfd_);
    if (own_ns_ >= 0) close(own_ns_);
    for (auto& [gen, j] : judges_) {
      close(j.pidfd);
      if (j.sock >= 0) close(j.sock);
    }
  }

  int sock_;
  ServerConfig cfg_;
  int own_ns_ = -1;
  int self_pidfd_ = -1;
  std::map<uint64_t, Judge> judges_;  // by generation
  std::map<int, uint64_t> slot_judge_;  // slot -> generation of its current judge
  uint64_t next_gen_ = 1;
};

}  // namespace

bool continue_as_pid1() {
  int self = pidfd_open(getpid());
  pid_t pid = self < 0 ? -1 : python_fork();
  if (pid < 0) return false;
  if (pid > 0) {
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
  }
  die_with(self);  // (not getppid(): the parent is outside this namespace, so that reads 0)
  close(self);
  return true;
}

void remove_tree(const std::string& path) {
  nftw(path.c_str(), remove_entry, 32, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

void serve_jobs(int sock, const ServerConfig& cfg) {
  Start start;
  {
    Server server(sock, cfg);
    start = server.loop();  // returns only in a forked process
  }
  PyObject* result =
      start.role == Start::kJudge
          ? PyObject_CallFunction(cfg.judge_entry, "iii", start.slot, 3, 4)
          : PyObject_CallFunction(cfg.child_entry, "is", start.mode, start.workdir.c_str());
  if (result == nullptr) PyErr_Print();
  _exit(start.role == Start::kJudge ? 1 : 120);
}

}  // namespace prmfast
