"""The trusted side of a job: asks for the untrusted children, drives them, decides.

One judge per worker slot runs job after job (root, PID 1 of the slot's PID namespace).
It reads each job's payload, public and secret halves (test code, expected outputs), but
the untrusted children are forked by its zygote, which was forked before the judge saw
any job (csrc/forkserver.cpp) and holds no job's data: no child's memory ever holds this
or any other job's secret, and the judge's memory is out of their reach (another uid,
Landlock's ptrace and signal scoping). Children send back plain data only (see codec),
and every verdict is computed here. After each job the zygote has killed everything of
it, and the judge removes the job's folder before it reports the job finished.

Its parts: channel (the sockets to the server, the zygote and each child), remote (the
child's values as the test code sees them), runners (the three test kinds and the verdict).
"""
from __future__ import annotations

import fcntl
import json
import os
import signal
import struct
import time

from prmfast import _sandbox
from prmfast.sandbox import child as child_side
from prmfast.sandbox.channel import Link, Stop
from prmfast.sandbox.runners import RUNNERS, verdict


def _read_part(fd: int):
    (size,) = struct.unpack("<Q", os.read(fd, 8))
    data = b""
    while len(data) < size:
        data += os.read(fd, size - len(data))
    return json.loads(data)


def program_memfd(program: str) -> int:
    """The program in a sealed memfd, which each child of the job reads (fd 4)."""
    fd = os.memfd_create("program", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    data = program.encode("utf-8", "surrogatepass")
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW
                | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL)
    return fd


def run_job(link: Link, job: int, payload_fd: int, layers: list[str], workdir: str) -> dict:
    """One job, from its payload to its verdict; every child of it is gone on return."""
    start = time.monotonic()
    public = _read_part(payload_fd)
    write_source(workdir, public["program"])
    limits = public["limits"]
    program_fd = program_memfd(public["program"])
    cfg = {"link": link, "job": job, "program_fd": program_fd, "limits": limits,
           "layers": layers}
    try:
        return RUNNERS[public["kind"]](cfg, public, lambda: _read_part(payload_fd),
                                       limits["case_timeout_s"], start + limits["timeout_s"])
    except Stop as stop:
        return verdict([], [], stop, None)
    finally:
        os.close(program_fd)


def write_source(workdir: str, program: str) -> None:
    """The program as `main.py` in its folder, as `python main.py` would find it: its
    __file__ exists, and tracebacks show its lines (the child runs the sealed copy)."""
    fd = os.open(os.path.join(workdir, child_side.SOURCE_NAME),
                 os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        data = program.encode("utf-8", "surrogatepass")
        while data:
            data = data[os.write(fd, data):]
    finally:
        os.close(fd)


def serve(sock: int, zygote: int, slot: int, server_cfg: dict) -> None:
    """Entry of a slot's judge (root, PID 1 of the slot's namespace): runs the jobs the
    server hands it, one at a time; after server_cfg["judge_jobs"] of them it retires
    (the server starts a fresh one), which bounds what a long life can accumulate."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    link = Link(sock, zygote)
    uid = server_cfg["uid_base"] + slot
    lifetime = server_cfg["judge_jobs"]
    for n in range(lifetime):
        job, payload_fd, result_fd = link.next_job()
        workdir = os.path.join(server_cfg["base"], str(job))
        os.mkdir(workdir, 0o700)
        if "setuid" in server_cfg["layers"]:
            os.chown(workdir, uid, uid)
        result = run_job(link, job, payload_fd, server_cfg["layers"], workdir)
        os.close(payload_fd)
        data = json.dumps(result).encode()
        while data:
            data = data[os.write(result_fd, data):]
        os.close(result_fd)
        _sandbox.remove_tree(workdir)
        link.finished(job, retire=n == lifetime - 1)
    link.exit()
