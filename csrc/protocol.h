// The dispatcher <-> fork server protocol: fixed-size messages on a SOCK_SEQPACKET socket
// (message boundaries kept); SUBMIT carries two fds (payload memfd, result pipe) by SCM_RIGHTS.
#pragma once
#include <cstdint>

namespace prmfast {

enum Op : uint32_t { kSubmit = 1, kKill = 2, kExited = 3 };

struct Message {
  uint32_t op;
  int32_t arg;  // submit: worker slot; exited: wait status
  uint64_t job;
};

}  // namespace prmfast
