"""The fork server: a warm interpreter that forks one judge per job.

Started by the dispatcher as `python -I server.py CONFIG_JSON` with its socket on fd 3.
Per job: judge (PID 1 of a fresh PID namespace, root) -> untrusted children. Killing the
judge (the dispatcher's kill, or the server's death through the parent-death signal)
makes the kernel kill everything left in its namespace.
"""
from __future__ import annotations

import gc
import json
import os
import select
import selectors
import shutil
import signal
import socket
import struct
import sys
import types

# Warm in the server so programs importing them pay nothing (shared by every fork). Kept
# short on purpose: every preloaded page makes each fork (page tables) and each copy-on-write
# fault after it more expensive; rarer, heavier modules (decimal, random...) load on demand.
PRELOAD = ("typing", "math", "re", "collections", "itertools", "functools", "heapq", "bisect",
           "string", "operator", "copy")
MESSAGE = struct.Struct("<IiQ")  # op, arg, job id (see csrc/dispatcher.cpp)
SUBMIT, KILL, EXITED = 1, 2, 3


def _import_sandbox_modules(package_root: str):
    """Import the harness without running prmfast/__init__.py (which may pull in heavy
    libraries that would make every fork slower)."""
    for name, path in (("prmfast", "prmfast"), ("prmfast.sandbox", "prmfast/sandbox")):
        pkg = types.ModuleType(name)
        pkg.__path__ = [os.path.join(package_root, path)]
        sys.modules[name] = pkg
    from prmfast import _sandbox
    from prmfast.sandbox import judge
    return _sandbox, judge


class JobForker:
    """Forks each job's judge straight into a fresh PID namespace, where it is PID 1.

    unshare(CLONE_NEWPID) only sets the namespace of the caller's *future* children and
    refuses a second call while that namespace differs from the caller's own, so the
    server points its children back at its own namespace (setns) before each unshare: one
    fork per job, no intermediate supervisor process.
    """

    def __init__(self, cfg, _sandbox, judge):
        self.cfg, self._sandbox, self.judge = cfg, _sandbox, judge
        self.pidns = "pidns" in cfg["layers"]
        self.own_ns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC) if self.pidns else -1
        # Lets a judge notice that the server died before its parent-death signal was armed.
        self.server_pidfd = os.pidfd_open(os.getpid())

    def fork(self, job: int, slot: int, payload_fd: int, result_fd: int, close_fds) -> int:
        if self.pidns:
            self._sandbox.setns(self.own_ns, self._sandbox.CLONE_NEWPID)
            self._sandbox.unshare(self._sandbox.CLONE_NEWPID)
        pid = os.fork()
        if pid == 0:
            for fd in close_fds:
                os.close(fd)
            self._judge(job, slot, payload_fd, result_fd)
        return pid

    def _judge(self, job, slot, payload_fd, result_fd) -> None:
        """Body of the judge process; never returns."""
        try:
            self._sandbox.set_parent_death_signal(signal.SIGKILL)
            if select.select([self.server_pidfd], [], [], 0)[0]:
                os._exit(1)
            os.close(self.server_pidfd)
            if self.own_ns >= 0:
                os.close(self.own_ns)
            workdir = os.path.join(self.cfg["base"], str(job))
            os.mkdir(workdir, 0o700)
            if "setuid" in self.cfg["layers"]:
                os.chown(workdir, self.cfg["uid_base"] + slot, self.cfg["uid_base"] + slot)
            self.judge.main(payload_fd, result_fd, self.cfg, workdir, slot)
            os._exit(0)
        except BaseException as exc:
            os.write(2, f"sandbox judge failed: {exc!r}\n".encode())
            os._exit(1)


def main() -> None:
    cfg = json.loads(sys.argv[1])
    sys.set_int_max_str_digits(0)  # trusted code here and in judges: no int<->str size limit
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _sandbox, judge = _import_sandbox_modules(cfg["package_root"])
    if "setuid" in cfg["layers"]:
        from prmfast.sandbox import mounts
        mounts.expose(sys.path + [sys.prefix, sys.base_prefix, sys.executable])
    if "netns" in cfg["layers"]:
        # One empty network namespace for all jobs: only a loopback that is down.
        _sandbox.unshare(_sandbox.CLONE_NEWNET)
    os.makedirs(cfg["base"], mode=0o711, exist_ok=True)
    for name in PRELOAD:
        __import__(name)
    # Forked children would otherwise copy most of the heap on their first collection
    # (the collector writes to every object it visits); freezing keeps pages shared.
    forker = JobForker(cfg, _sandbox, judge)
    gc.freeze()
    sock = socket.socket(fileno=3)
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ)
    jobs: dict[int, tuple[int, int]] = {}  # job -> (pid, pidfd)
    by_pidfd: dict[int, int] = {}
    while True:
        for key, _ in sel.select():
            if key.fileobj is sock:
                try:
                    msg, fds, _, _ = socket.recv_fds(sock, MESSAGE.size, 2)
                except OSError:
                    msg, fds = b"", []
                if not msg:  # the dispatcher is gone: take every job down with us
                    for pid, _ in jobs.values():
                        os.kill(pid, signal.SIGKILL)
                    for job in jobs:
                        shutil.rmtree(os.path.join(cfg["base"], str(job)), ignore_errors=True)
                    os._exit(0)
                op, arg, job = MESSAGE.unpack(msg)
                if op == SUBMIT and len(fds) == 2:
                    pid = forker.fork(job, arg, *fds, close_fds=[sock.fileno(), *by_pidfd])
                    for fd in fds:
                        os.close(fd)
                    pidfd = os.pidfd_open(pid)
                    jobs[job] = (pid, pidfd)
                    by_pidfd[pidfd] = job
                    sel.register(pidfd, selectors.EVENT_READ)
                elif op == KILL and job in jobs:
                    os.kill(jobs[job][0], signal.SIGKILL)
                else:
                    for fd in fds:
                        os.close(fd)
            else:
                job = by_pidfd.pop(key.fd)
                pid, pidfd = jobs.pop(job)
                sel.unregister(pidfd)
                os.close(pidfd)
                _, status = os.waitpid(pid, 0)
                shutil.rmtree(os.path.join(cfg["base"], str(job)), ignore_errors=True)
                sock.send(MESSAGE.pack(EXITED, status, job))


if __name__ == "__main__":
    main()
