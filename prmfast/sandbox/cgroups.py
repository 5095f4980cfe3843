"""Memory cgroups (v1) for the sandbox's jobs (root only): all processes of a job share one
memory limit, so a program that forks cannot hold `processes` x `memory_mb`.

The caller makes one folder per Sandbox beneath its own memory cgroup (so the machine's
accounting still covers the jobs), with a subfolder per worker slot. Each slot's zygote joins
its subfolder, so the untrusted children it forks are born there, and sets the limit to the
job's memory_mb before a job's first fork (forkserver.cpp).
"""
from __future__ import annotations

import os
import uuid

MEMORY_ROOT = "/sys/fs/cgroup/memory"


def own_memory_cgroup() -> str | None:
    """The folder of this process's v1 memory cgroup, if there is one we may write in."""
    try:
        with open("/proc/self/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            folder = os.path.join(MEMORY_ROOT, path.lstrip("/"))
            writable = os.path.isfile(os.path.join(folder, "memory.limit_in_bytes"))
            return folder if writable and os.access(folder, os.W_OK) else None
    return None


def make_slot_cgroups(workers: int) -> str:
    """A fresh folder beneath our memory cgroup with slot0..slot{workers-1}; returns it."""
    folder = os.path.join(own_memory_cgroup() or "", f"prmfast-sandbox-{uuid.uuid4().hex[:12]}")
    os.mkdir(folder)
    for slot in range(workers):
        os.mkdir(os.path.join(folder, f"slot{slot}"))
    return folder


def remove_slot_cgroups(folder: str) -> None:
    """Remove the folder once no process is left in it (best effort: a cgroup that still
    holds a process cannot be removed, and an empty one costs nothing)."""
    for name in os.listdir(folder) if os.path.isdir(folder) else ():
        path = os.path.join(folder, name)
        if os.path.isdir(path):
            try:
                os.rmdir(path)
            except OSError:
                pass
    try:
        os.rmdir(folder)
    except OSError:
        pass
