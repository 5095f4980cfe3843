// Messages on the SOCK_SEQPACKET sockets (message boundaries kept) between the dispatcher
// and the fork server, the fork server and each judge, and each judge and its zygote.
//
//   dispatcher -> server   kSubmit {slot, job} + fds (payload memfd, result pipe)
//                          kKill {job}: the dispatcher's backstop deadline passed
//   server -> dispatcher   kExited {wait status, job}: the job is over and nothing of it
//                          runs any more (0 when its judge finished it)
//   server -> judge        kSubmit {job} + the same two fds
//   judge -> server        kFinished {retire, job}: result written, job folder removed
//   judge -> zygote        SpawnRequest + fds (program memfd, stdin, channel, stdout, stderr)
//                          kKill {seq}: kill every process of the job
//   zygote -> judge        kSpawned {pid or -errno, seq}: the untrusted child `seq` exists
//                          ChildExit {wait status, seq, CPU time, OOM kills}: it is gone
//                          and reaped
//                          kKilled {seq}: nothing of the job is left
#pragma once
#include <cstdint>

namespace prmfast {

enum Op : uint32_t {
  kSubmit = 1,
  kKill = 2,
  kExited = 3,
  kSpawn = 4,
  kSpawned = 5,
  kChildExited = 6,
  kFinished = 7,
  kKilled = 8,
};

struct Message {
  uint32_t op;
  int32_t arg;  // submit: worker slot; exited: wait status; spawned: pid; finished: retire
  uint64_t job;  // job id, or the child's sequence number for the zygote's messages
};

// What the judge asks its zygote to start: one untrusted child of job `job` (folder
// <base>/<job>), confined with these limits before any Python runs in it.
struct SpawnRequest {
  uint32_t op;    // kSpawn
  int32_t mode;   // 0: serve requests (assert/call tests), 1: run as a script (stdio)
  uint64_t job;
  uint64_t seq;
  int64_t memory_mb, cpu_s, file_size_mb, open_files, processes;
};

// kChildExited: the CPU time tells a SIGKILL of the RLIMIT_CPU hard limit from any other.
struct ChildExit {
  uint32_t op;  // kChildExited
  int32_t status;
  uint64_t seq;
  int64_t cpu_us;  // user + system time of the child
  int64_t oom_kills;  // processes of the job the memory cgroup's OOM killer killed meanwhile
};

}  // namespace prmfast
