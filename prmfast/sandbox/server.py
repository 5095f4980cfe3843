"""The fork server: a warm interpreter that forks one supervisor per job.

Started by the dispatcher as `python -I server.py CONFIG_JSON` with its socket on fd 3.
Per job: supervisor (here, root) -> unshare(CLONE_NEWPID) -> judge (PID 1 of the new
namespace) -> untrusted children. Killing the supervisor kills the judge (parent-death
signal), and the judge's death kills everything left in its namespace.
"""
from __future__ import annotations

import gc
import json
import os
import selectors
import shutil
import signal
import socket
import struct
import sys
import types

# Warm in the server so programs importing them pay nothing (shared by every fork).
PRELOAD = ("typing", "math", "re", "collections", "itertools", "functools", "heapq", "bisect",
           "string", "fractions", "decimal", "statistics", "operator", "copy", "random",
           "hashlib", "datetime", "json", "io", "traceback")
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


def supervise(cfg, _sandbox, judge, job: int, slot: int, payload_fd: int, result_fd: int) -> None:
    """Body of the per-job supervisor process; never returns."""
    try:
        _sandbox.set_parent_death_signal(signal.SIGKILL)
        if os.getppid() != cfg["server_pid"]:
            os._exit(1)
        workdir = os.path.join(cfg["base"], str(job))
        os.mkdir(workdir, 0o700)
        if "setuid" in cfg["layers"]:
            os.chown(workdir, cfg["uid_base"] + slot, cfg["uid_base"] + slot)
        if "pidns" in cfg["layers"]:
            _sandbox.unshare(_sandbox.CLONE_NEWPID)
        pid = os.fork()
        if pid == 0:
            try:
                _sandbox.set_parent_death_signal(signal.SIGKILL)
                judge.main(payload_fd, result_fd, cfg, workdir, slot)
                os._exit(0)
            except BaseException as exc:
                os.write(2, f"sandbox judge failed: {exc!r}\n".encode())
                os._exit(1)
        os.close(payload_fd)
        os.close(result_fd)
        _, status = os.waitpid(pid, 0)
        os._exit(0 if status == 0 else 1)
    except BaseException as exc:
        os.write(2, f"sandbox supervisor failed: {exc!r}\n".encode())
        os._exit(1)


def main() -> None:
    cfg = json.loads(sys.argv[1])
    cfg["server_pid"] = os.getpid()
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
                    pid = os.fork()
                    if pid == 0:
                        sock.close()
                        for pidfd in by_pidfd:
                            os.close(pidfd)
                        supervise(cfg, _sandbox, judge, job, arg, *fds)
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
