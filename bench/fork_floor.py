"""The floor of the fork-server design: an *unsandboxed* fork server, for comparison only.

`workers` warm interpreters (the sandbox server's preloaded modules, gc.freeze()) take job
indices from one pipe; for each they fork a child (fork(2) itself, without Python's at-fork
hooks, as the sandbox's zygote forks) that compiles and runs the program with its tests
in-process and exits. No isolation, no judge, no limits, no output capture: what is
left is the cost of a fork per job and of the job's own work, which no sandbox built on a
fork per job can go below. Prints {"jobs_per_s", "cpu_s"} as JSON (CPU: every process).

    python bench/fork_floor.py PROGRAMS.json WORKERS
"""
from __future__ import annotations

import ctypes
import gc
import importlib.util
import json
import os
import resource
import struct
import sys
import time

INDEX = struct.Struct("<I")
LIBC = ctypes.CDLL(None, use_errno=True)


def serve(programs: list[str], jobs_fd: int) -> None:
    """One warm worker: fork a child per job index read from jobs_fd, until it is empty."""
    gc.collect()
    gc.freeze()
    failed = 0
    while data := os.read(jobs_fd, INDEX.size):
        (i,) = INDEX.unpack(data)
        pid = LIBC.fork()
        if pid < 0:
            raise OSError(ctypes.get_errno(), "fork")
        if pid == 0:
            try:
                exec(compile(programs[i], "main.py", "exec"), {"__name__": "__main__"})
            except BaseException:  # noqa: BLE001 - any failure is a failed job
                os._exit(1)
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        failed += status != 0
    os._exit(min(failed, 100))


def main() -> None:
    programs = json.loads(open(sys.argv[1]).read())
    workers = int(sys.argv[2])
    for name in server_preload():
        __import__(name)
    r, w = os.pipe()
    start, cpu_before = time.perf_counter(), cpu_seconds()
    pids = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:
            os.close(w)
            serve(programs, r)
        pids.append(pid)
    os.close(r)
    os.write(w, b"".join(INDEX.pack(i) for i in range(len(programs))))
    os.close(w)
    failed = sum(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids)
    elapsed, cpu = time.perf_counter() - start, cpu_seconds() - cpu_before
    print(json.dumps({"jobs_per_s": len(programs) / elapsed, "cpu_s": cpu, "failed": failed}))


def server_preload() -> tuple[str, ...]:
    """The sandbox server's warm modules, read without importing the prmfast package (this
    interpreter stays as small as the sandbox's server)."""
    path = os.path.join(os.path.dirname(__file__), "..", "prmfast", "sandbox", "server.py")
    spec = importlib.util.spec_from_file_location("sandbox_server", path)
    server = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(server)
    return server.PRELOAD


def cpu_seconds() -> float:
    """CPU time of this process and of its reaped descendants."""
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage)


if __name__ == "__main__":
    main()
