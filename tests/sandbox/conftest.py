"""Fixtures for the sandbox tests: shared data, a module-wide Sandbox, a containment cgroup."""
from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest

from prmfast.sandbox import Sandbox

REPO = Path(__file__).resolve().parents[2]


def shared_dir() -> Path:
    return Path(os.environ.get("PRMFAST_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def humaneval():
    path = shared_dir() / "data" / "humaneval" / "HumanEval.jsonl.gz"
    if not path.exists():
        pytest.skip(f"{path} not found (set PRMFAST_SHARED)")
    with gzip.open(path, "rt") as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="session")
def mbpp():
    path = shared_dir() / "data" / "mbpp" / "sanitized-mbpp.json"
    if not path.exists():
        pytest.skip(f"{path} not found (set PRMFAST_SHARED)")
    return json.loads(path.read_text())


def job_folders(sb: Sandbox) -> list[str]:
    """The job folders as the sandbox's processes see them (as root they live on a tmpfs in
    the fork server's own mount namespace: /proc/<pid>/root resolves paths there)."""
    return os.listdir(f"/proc/{sb.server_pid}/root{sb._base}")


@pytest.fixture(scope="module")
def sandbox():
    with Sandbox(workers=2, timeout_s=5.0, memory_mb=512) as sb:
        yield sb


def _cgroup_dirs():
    return [Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup/memory")]


@pytest.fixture(scope="module")
def contained():
    """Move this test process (and so every sandbox process) into pids and memory cgroups,
    so that a regression in the sandbox cannot take the machine down. No-op if cgroup v1
    controllers are not writable here."""
    made = []
    name = f"prmfast-sandbox-test-{os.getpid()}"
    limits = {"pids": ("pids.max", "2000"), "memory": ("memory.limit_in_bytes", str(6 << 30))}
    for root in _cgroup_dirs():
        group = root / name
        try:
            group.mkdir(exist_ok=True)
            knob, value = limits[root.name]
            (group / knob).write_text(value)
            (group / "cgroup.procs").write_text(str(os.getpid()))
            made.append(group)
        except OSError:
            continue
    yield made
    for group in made:
        (group.parent / "cgroup.procs").write_text(str(os.getpid()))
        for pid in (group / "cgroup.procs").read_text().split():
            try:
                os.kill(int(pid), 9)
            except OSError:
                pass
        try:
            group.rmdir()
        except OSError:
            pass


def sandbox_processes(uid_base: int) -> list[int]:
    """PIDs of processes running as one of a sandbox's unprivileged uids (uid_base + slot)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if uid_base <= os.stat(f"/proc/{pid}").st_uid < uid_base + 64:
                found.append(int(pid))
        except OSError:
            pass
    return found
