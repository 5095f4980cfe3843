// Sending one fixed-size message, with up to two file descriptors (SCM_RIGHTS), over a unix
// socket: shared by the dispatcher and the fork server.
#pragma once

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

namespace prmfast {

// Sends `msg` (a trivially copyable struct) and `nfds` <= 2 fds; true when all of it went.
template <typename T>
bool send_message(int sock, const T& msg, const int* fds = nullptr, int nfds = 0) {
  struct iovec iov = {const_cast<T*>(&msg), sizeof(msg)};
  struct msghdr mh = {};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  alignas(struct cmsghdr) char control[CMSG_SPACE(2 * sizeof(int))] = {};
  if (nfds > 0) {
    mh.msg_control = control;
    mh.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
    struct cmsghdr* cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(nfds * sizeof(int));
    memcpy(CMSG_DATA(cm), fds, nfds * sizeof(int));
  }
  ssize_t n;
  do n = sendmsg(sock, &mh, MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  return n == static_cast<ssize_t>(sizeof(msg));
}

}  // namespace prmfast
