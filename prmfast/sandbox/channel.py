"""The judge's side of its channels: the fork server (jobs in, "finished" out), the zygote
(which forks, confines, kills and reaps the untrusted children) and each child (requests and
replies as plain data, captured output, deadlines).

    Link(server_fd, zygote_fd)      next_job, finished, spawn, kill, receive, exit
    Child(cfg, mode, stdin=b"")     one untrusted process: request/reply, stdout/stderr, deadline
    Stop(status, detail)            the child is gone (a BaseException test code cannot swallow)
    exit_stop(child) -> Stop        why a child that should still run is gone
"""
from __future__ import annotations

import collections
import os
import selectors
import signal
import socket
import struct
import time

from prmfast.sandbox import child as child_side
from prmfast.sandbox import codec

# A reply (one encoded value) above this ends the job as an error: the judge decodes every
# reply, and this bounds the memory that takes (a reply is read only when one is awaited).
MAX_FRAME = 8 << 20
# Messages to and from the fork server and the zygote (csrc/protocol.h).
SUBMIT, KILL, SPAWN, SPAWNED, CHILD_EXITED, FINISHED, KILLED = 1, 2, 4, 5, 6, 7, 8
MESSAGE = struct.Struct("<IiQ")          # op, arg, job or child sequence number
CHILD_EXIT = struct.Struct("<IiQqq")     # op, wait status, seq, CPU microseconds, OOM kills
SPAWN_REQUEST = struct.Struct("<IiQQqqqqq")  # op, mode, job, seq, five limits


class Stop(BaseException):
    """The child is gone; `status` says why. BaseException so test code cannot swallow it."""

    def __init__(self, status: str, detail: str = ""):
        super().__init__(status, detail)
        self.status, self.detail = status, detail


class Link:
    """The judge's sockets: to the fork server (jobs in, "finished" out) and to its zygote,
    which forks, confines, kills and reaps the untrusted children."""

    def __init__(self, server_fd: int, zygote_fd: int):
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET, fileno=server_fd)
        self.zygote = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET, fileno=zygote_fd)
        self.seq = 0
        # One epoll set for the judge's life: each child adds its fds and removes them.
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.zygote.fileno(), selectors.EVENT_READ)

    def next_job(self):
        """(job, payload fd, result fd) of the next job; exits when the server is gone."""
        while True:
            data, fds, _, _ = socket.recv_fds(self.server, MESSAGE.size, 2)
            if not data:
                self.exit()
            if len(data) == MESSAGE.size and len(fds) == 2 and MESSAGE.unpack(data)[0] == SUBMIT:
                return MESSAGE.unpack(data)[2], fds[0], fds[1]
            for fd in fds:
                os.close(fd)

    def finished(self, job: int, retire: bool) -> None:
        self.server.send(MESSAGE.pack(FINISHED, int(retire), job))

    def exit(self) -> None:
        """Stop the zygote (it kills what is left of the job) and reap it before exiting:
        as PID 1, exiting first would let the kernel reap it without adding its CPU time
        to anyone's (CPU accounting would lose it)."""
        self.zygote.close()
        try:
            while True:
                os.wait()
        except ChildProcessError:
            pass
        os._exit(0)

    def spawn(self, job: int, mode: int, limits: dict, fds: list[int]) -> int:
        """Ask for a child; returns its sequence number (the zygote's messages about it
        carry it)."""
        self.seq += 1
        request = SPAWN_REQUEST.pack(SPAWN, mode, job, self.seq, limits["memory_mb"],
                                     limits["cpu_s"], limits["file_size_mb"],
                                     limits["open_files"], limits["processes"])
        socket.send_fds(self.zygote, [request], fds)
        return self.seq

    def kill(self, seq: int) -> None:
        """Ask the zygote to kill every process of the job (KILLED answers once none is left)."""
        self.zygote.send(MESSAGE.pack(KILL, 0, seq))

    def receive(self):
        """(op, arg, seq, CPU seconds, OOM kills) of the zygote's next message (blocking);
        exits if it is gone."""
        data = self.zygote.recv(64)
        if not data:
            os._exit(1)  # the zygote died: this judge cannot make a clean one again
        if len(data) == CHILD_EXIT.size:
            op, arg, seq, cpu_us, oom_kills = CHILD_EXIT.unpack(data)
            return op, arg, seq, cpu_us / 1e6, oom_kills
        if len(data) == MESSAGE.size:
            return (*MESSAGE.unpack(data), 0.0, 0)
        return 0, 0, 0, 0.0, 0


class Child:
    """One untrusted process as seen from the judge: its channel, output and deadline.
    The zygote forks, confines and reaps it, and reports how it ended."""

    def __init__(self, cfg: dict, mode: int, stdin: bytes = b""):
        self.limit = cfg["limits"]["output_bytes"]
        self.link: Link = cfg["link"]
        # A script (stdio tests) talks to nobody: its fd 3 is /dev/null, so nothing it writes
        # there piles up here.
        if mode == child_side.SCRIPT:
            chan_parent, chan_fd = None, os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        else:
            chan_parent, chan_child = socket.socketpair()
            chan_fd = chan_child.fileno()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        stdin_fd = os.memfd_create("stdin")
        if stdin:
            os.write(stdin_fd, stdin)
            os.lseek(stdin_fd, 0, os.SEEK_SET)
        try:
            fds = [cfg["program_fd"], stdin_fd, chan_fd, out_w, err_w]
            self.seq = self.link.spawn(cfg["job"], mode, cfg["limits"], fds)
        finally:
            for fd in (out_w, err_w, stdin_fd, chan_fd):
                os.close(fd)
        self.spawn_error: Stop | None = None
        self.sock = chan_parent
        self.chan = chan_parent.fileno() if chan_parent is not None else -1
        self.sel = self.link.selector
        for fd in (out_r, err_r):
            os.set_blocking(fd, False)
        for fd in (self.chan, out_r, err_r):
            if fd >= 0:
                self.sel.register(fd, selectors.EVENT_READ)
        self.out_fd, self.err_fd = out_r, err_r
        self.stdout, self.stderr, self.total_output = bytearray(), bytearray(), 0
        self.inbuf, self.frames = bytearray(), collections.deque()
        self.wait_status = None
        self.killed = False
        self.cpu_s = 0.0  # CPU time the child used, from the zygote
        self.oom_kills = 0  # processes of the job the memory cgroup killed while it ran
        self.cpu_limit = cfg["limits"]["cpu_s"] if "rlimits" in cfg["layers"] else None
        self.deadline = float("inf")
        self.stopped: Stop | None = None

    def _on_zygote_message(self) -> None:
        op, arg, seq, cpu_s, oom_kills = self.link.receive()
        if seq != self.seq:
            return  # about an earlier child of this judge: already settled
        if op == KILLED:
            self.killed = True
        if op == SPAWNED and arg < 0:
            self.spawn_error = Stop("error", f"could not start the program: {os.strerror(-arg)}")
            self.wait_status = 127 << 8
        elif op == CHILD_EXITED:
            self.wait_status, self.cpu_s, self.oom_kills = arg, cpu_s, oom_kills

    # -- waiting -------------------------------------------------------------------
    def _on_readable(self, fd: int) -> None:
        if fd == self.link.zygote.fileno():
            self._on_zygote_message()
            return
        data = os.read(fd, 1 << 16)
        if not data:
            self.sel.unregister(fd)
            return
        if fd == self.chan:
            self.inbuf += data
            self._parse_frames()
            return
        self.total_output += len(data)
        if self.total_output > self.limit:
            self.stop(Stop("output_limit", f"more than {self.limit} bytes of output"))
        if fd == self.out_fd:
            self.stdout += data
        else:
            self.stderr += data
            del self.stderr[:-4096]

    def _parse_frames(self) -> None:
        while len(self.inbuf) >= 4:
            (size,) = struct.unpack_from("<I", self.inbuf)
            if size > MAX_FRAME:
                self.stop(Stop("error", "oversized reply from the program"))
            if len(self.inbuf) < 4 + size:
                return
            self.frames.append(bytes(self.inbuf[4:4 + size]))
            del self.inbuf[:4 + size]

    def _pump(self, until) -> None:
        """Process events until until() is true; stops the child on deadline."""
        while not until():
            if self.stopped:
                raise self.stopped
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                self.stop(Stop("timeout"))
            for key, _ in self.sel.select(min(remaining, 3600)):
                self._on_readable(key.fd)

    def _exited(self) -> bool:
        return self.wait_status is not None

    def send(self, message: dict) -> None:
        if self.stopped:
            raise self.stopped
        try:
            self.sock.sendall(codec.dumps(message))  # blocking, as before; reads wait in select
        except OSError:
            pass  # the child died: noticed by reply() through its exit status

    def reply(self):
        """The child's next message (stops the child if it is gone or too slow)."""
        self._pump(lambda: self.frames or self._exited())
        if not self.frames:
            self.stop(exit_stop(self))
        try:
            return codec.loads(self.frames.popleft())
        except codec.ProtocolError as exc:
            self.stop(Stop("error", f"malformed reply from the program: {exc}"))

    def request(self, message: dict):
        """Send one request and wait for its reply."""
        self.send(message)
        return self.reply()

    def wait_exit(self) -> None:
        self._pump(self._exited)

    def stop(self, reason: Stop):
        """Kill the child and everything it started, drain its output, raise `reason`."""
        if self.stopped is None:
            self.stopped = reason
            self.kill()
        raise self.stopped

    def kill(self) -> None:
        """Kill the child and everything it started; return once the zygote reaped them."""
        if not self.killed:
            self.link.kill(self.seq)
            while not self.killed:
                self._on_zygote_message()

    def close(self) -> None:
        """Reap the child, stop whatever it left behind and read its output to the end."""
        self.kill()
        registered = self.sel.get_map()
        for fd in (self.out_fd, self.err_fd):
            if fd in registered:
                os.set_blocking(fd, True)
                while self.total_output <= self.limit and (data := os.read(fd, 1 << 16)):
                    self.total_output += len(data)
                    (self.stdout if fd == self.out_fd else self.stderr).extend(data)
        del self.stderr[:-4096]
        for fd in (self.chan, self.out_fd, self.err_fd):
            if fd >= 0 and fd in registered:
                self.sel.unregister(fd)
        if self.sock is not None:
            self.sock.close()
        for fd in (self.out_fd, self.err_fd):
            os.close(fd)


def exit_stop(ch: Child) -> Stop:
    """Why a child that should still be running is gone."""
    if ch.spawn_error is not None:
        return ch.spawn_error
    wait_status = ch.wait_status
    if os.WIFSIGNALED(wait_status):
        sig = os.WTERMSIG(wait_status)
        # SIGKILL is RLIMIT_CPU's hard limit only if the child used that much CPU time
        # (otherwise: the program killed itself, or the kernel's OOM killer did).
        if sig == signal.SIGXCPU or (sig == signal.SIGKILL and ch.cpu_limit is not None
                                     and ch.cpu_s >= ch.cpu_limit):
            return Stop("timeout", "CPU time limit")
        if sig == signal.SIGKILL and ch.oom_kills:
            return Stop("memory", "the job's processes together passed memory_mb")
        return Stop("crashed", f"killed by {signal.Signals(sig).name}")
    code = os.WEXITSTATUS(wait_status)
    if code == child_side.MEMORY_EXIT:
        return Stop("memory", "MemoryError")
    return Stop("error", f"the program exited (code {code}) before the tests finished")
