"""Sandbox: the public entry point (docs/design.md, "Sandbox")."""
from __future__ import annotations

import fcntl
import functools
import json
import os
import shutil
import struct
import sys
import tempfile
import threading
from collections.abc import Iterable, Sequence

from prmfast import _sandbox
from prmfast.sandbox import cgroups, codec
from prmfast.sandbox.specs import (NOT_RUN, AssertTests, CallTests, Job, Result, StdioTests,
                                   check_count, check_seconds)

LAYERS = ("userns", "pidns", "ipcns", "netns", "setuid", "landlock", "seccomp", "rlimits", "cgroup")
NAMESPACE_LAYERS = ("pidns", "ipcns", "netns")  # need root or the userns layer
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_SERVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "server.py")
UID_BASE = 1_200_000  # the first uid range a Sandbox claims (uid_base=None)
UID_RANGE = 4096      # uids per range: the most workers a Sandbox with a claimed range has


def claim_uid_range(first: int = UID_BASE, ranges: int = 1024) -> tuple[int, int]:
    """(uid_base, lock fd): the first range of UID_RANGE uids from `first` that no live Sandbox
    on this machine holds, held until the fd is closed (a lock file per range in the temp
    folder; a process that dies releases it). Two Sandboxes sharing uids would share the
    per-uid process limit (RLIMIT_NPROC): one's threads could starve the other's. A lock file
    this process cannot open (another user's, or a link) counts as held."""
    for k in range(ranges):
        base = first + k * UID_RANGE
        path = os.path.join(tempfile.gettempdir(), f"prmfast-sandbox-uids-{base}.lock")
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return base, fd
        except BlockingIOError:
            os.close(fd)
    raise RuntimeError(f"all {ranges} uid ranges from {first} are held by live sandboxes")


@functools.cache
def _user_namespaces_work() -> bool:
    return _sandbox.user_namespaces_work()


def available_layers() -> tuple[str, ...]:
    """The isolation layers this machine supports, all applied by default: rlimits
    everywhere, landlock on kernels with Landlock, seccomp on x86_64 and aarch64 kernels with
    seccomp filters (neither needs root); as root the namespace layers (pidns, ipcns, netns),
    setuid and cgroup; without root, where unprivileged user namespaces work, userns and
    through it the namespace layers."""
    ok = {"rlimits"}
    if os.geteuid() == 0:
        ok |= {*NAMESPACE_LAYERS, "setuid"}
        if cgroups.own_memory_cgroup() is not None:
            ok.add("cgroup")
    elif _user_namespaces_work():
        ok |= {"userns", *NAMESPACE_LAYERS}
    if _sandbox.landlock_abi() >= 1:
        ok.add("landlock")
    if _sandbox.seccomp_available():
        ok.add("seccomp")
    return tuple(layer for layer in LAYERS if layer in ok)


def check_layers(layers: tuple[str, ...]) -> None:
    """ValueError for an unknown, unavailable or incompatible choice of layers."""
    unknown = set(layers) - set(LAYERS)
    if unknown:
        raise ValueError(f"unknown isolation layers {sorted(unknown)}; choose from {LAYERS}")
    missing = set(layers) - set(available_layers())
    if missing:
        raise ValueError(f"isolation layers {sorted(missing)} are not available here")
    needs_userns = set(NAMESPACE_LAYERS) & set(layers)
    if needs_userns and os.geteuid() != 0 and "userns" not in layers:
        raise ValueError(f"isolation layers {sorted(needs_userns)} need root or the userns layer")


class Sandbox:
    """Runs batches of jobs in sandboxed Python processes.

    workers:        jobs run at once (default: os.cpu_count())
    timeout_s:      wall-clock and CPU budget of a whole job (Job.timeout_s overrides it)
    case_timeout_s: budget of one test case (default: timeout_s)
    memory_mb:      address-space limit of the untrusted process (Job.memory_mb overrides)
    output_bytes:   stdout + stderr a job may produce before it ends as "output_limit"
    isolation:      layers to apply, a subset of LAYERS (default: all available_layers());
                    switching layers off exists to measure their cost, not for production
    uid_base:       untrusted code of worker slot k runs as uid/gid uid_base + k; None (default)
                    claims a range of UID_RANGE uids that no other live Sandbox on this
                    machine holds, so two sandboxes never share a per-uid process limit
    disk_mb:        (as root) size of the tmpfs, private to the sandbox, that holds the
                    job folders: a quota on the files of all jobs in flight, in memory
    judge_jobs:     jobs a slot's (long-lived, trusted) judge runs before a fresh one
                    replaces it
    Counts and sizes must be positive integers (0 would switch a limit off), budgets
    positive and at most one day (specs.MAX_TIMEOUT_S): else TypeError/ValueError naming the
    argument. None for workers or case_timeout_s means the default.
    """

    def __init__(self, workers: int | None = None, timeout_s: float = 5.0, memory_mb: int = 1024,
                 *, case_timeout_s: float | None = None, output_bytes: int = 1 << 20,
                 file_size_mb: int = 16, open_files: int = 256, processes: int = 64,
                 isolation: Iterable[str] | None = None, uid_base: int | None = None,
                 disk_mb: int = 1024, judge_jobs: int = 500, python: str | None = None):
        self.workers = (os.cpu_count() or 1) if workers is None else check_count(workers, "workers")
        self.timeout_s = check_seconds(timeout_s, "timeout_s")
        self.case_timeout_s = (self.timeout_s if case_timeout_s is None
                               else check_seconds(case_timeout_s, "case_timeout_s"))
        self.memory_mb = check_count(memory_mb, "memory_mb")
        self.limits = {name: check_count(value, name) for name, value in (
            ("output_bytes", output_bytes), ("file_size_mb", file_size_mb),
            ("open_files", open_files), ("processes", processes))}
        disk_mb, judge_jobs = check_count(disk_mb, "disk_mb"), check_count(judge_jobs, "judge_jobs")
        if uid_base is None and self.workers > UID_RANGE:
            raise ValueError(f"workers > {UID_RANGE} needs an explicit uid_base")
        if uid_base is not None:
            # uid 0 is root; slot uids must stay below (uid_t)-1, which means "no change"
            uid_base = check_count(uid_base, "uid_base", maximum=(1 << 32) - 2 - self.workers)
        layers = available_layers() if isolation is None else tuple(isolation)
        check_layers(layers)
        self.isolation = layers
        self._uid_lock = None
        if uid_base is None:
            # without the setuid layer the children run as the caller: no uids to claim
            uid_base, self._uid_lock = (claim_uid_range() if "setuid" in layers
                                        else (UID_BASE, None))
        self.uid_base = uid_base
        self._cgroup = cgroups.make_slot_cgroups(self.workers) if "cgroup" in layers else ""
        self._base = tempfile.mkdtemp(prefix="prmfast-sandbox-")
        os.chmod(self._base, 0o711)
        config = {"layers": list(layers), "uid_base": int(uid_base), "base": self._base,
                  "cgroup": self._cgroup,
                  "package_root": _PACKAGE_ROOT, "disk_mb": int(disk_mb),
                  "judge_jobs": int(judge_jobs)}
        argv = [python or sys.executable, "-I", "-B", _SERVER, json.dumps(config)]
        env = ["PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8"]
        self._dispatcher = _sandbox.Dispatcher(argv, env)
        self._lock = threading.Lock()

    def run(self, jobs: Sequence[Job]) -> list[Result]:
        """Run every job; one Result per job, in order. Releases the GIL while waiting.
        Jobs are checked first (Job.validate, args and expected values plain data): one the
        sandbox cannot run raises TypeError/ValueError naming jobs[i], and no job runs."""
        payloads = []
        for i, job in enumerate(jobs):
            try:
                payloads.append(self._payload(job))
            except (TypeError, ValueError) as exc:
                raise (TypeError if isinstance(exc, TypeError) else ValueError)(
                    f"jobs[{i}]: {exc}") from None
        deadlines = [self._job_timeout(job) * 1.5 + 2.0 for job in jobs]
        with self._lock:  # the sweep must not race another thread's batch
            outcomes = self._dispatcher.run(payloads, deadlines, self.workers)
            self._sweep()
        return [self._result(job, o) for job, o in zip(jobs, outcomes)]

    def close(self) -> None:
        self._dispatcher.close()
        shutil.rmtree(self._base, ignore_errors=True)
        if self._cgroup:
            cgroups.remove_slot_cgroups(self._cgroup)
            self._cgroup = ""
        if self._uid_lock is not None:  # the uids are free again once no process runs as them
            os.close(self._uid_lock)
            self._uid_lock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    @property
    def server_pid(self) -> int:
        """PID of the fork server (-1 before the first run)."""
        return self._dispatcher.server_pid

    # -- helpers -------------------------------------------------------------------
    def _job_timeout(self, job: Job) -> float:
        return float(job.timeout_s if job.timeout_s is not None else self.timeout_s)

    def _payload(self, job: Job) -> bytes:
        """Two length-prefixed JSON parts: what the untrusted side may know (program and
        inputs), then what it must never see (test code, expected outputs)."""
        if not isinstance(job, Job):
            raise TypeError(f"a job must be a Job, not {type(job).__name__}")
        job.validate()
        timeout = self._job_timeout(job)
        limits = dict(self.limits, timeout_s=timeout,
                      case_timeout_s=min(self.case_timeout_s, timeout),
                      cpu_s=max(1, int(timeout + 0.999)),
                      memory_mb=int(job.memory_mb if job.memory_mb is not None else self.memory_mb))
        tests = job.tests
        public = {"program": job.program, "limits": limits,
                  "stop_on_failure": job.stop_on_failure}
        if isinstance(tests, AssertTests):
            public.update(kind="assert", entry_point=tests.entry_point)
            secret = {"code": tests.code}
        elif isinstance(tests, CallTests):
            public.update(kind="call", entry_point=tests.entry_point,
                          args=[_encode(list(args), f"CallTests.cases[{i}] args")
                                for i, (args, _) in enumerate(tests.cases)])
            secret = {"expected": [_encode(want, f"CallTests.cases[{i}] expected")
                                   for i, (_, want) in enumerate(tests.cases)],
                      "atol": ([float(a) for a in tests.atol]
                               if isinstance(tests.atol, (list, tuple)) else float(tests.atol)),
                      "grader": tests.grader,
                      "alternatives": [_encode(list(values), f"CallTests.alternatives[{i}]")
                                       for i, values in enumerate(tests.alternatives or ())]}
        elif isinstance(tests, StdioTests):
            public.update(kind="stdio", stdin=[stdin for stdin, _ in tests.cases])
            secret = {"stdout": [stdout for _, stdout in tests.cases], "grader": tests.grader}
        else:  # unreachable after job.validate()
            raise TypeError(f"Job.tests must be AssertTests, StdioTests or CallTests, not {type(tests)}")
        return b"".join(struct.pack("<Q", len(part)) + part
                        for part in (json.dumps(public).encode(), json.dumps(secret).encode()))

    def _result(self, job: Job, outcome) -> Result:
        try:
            data = json.loads(outcome.result)
        except ValueError:
            data = None
        n_cases = len(getattr(job.tests, "cases", ())) or None
        if outcome.timed_out:
            data = {"status": "timeout", "stderr": "job deadline exceeded"}
        elif not isinstance(data, dict):
            why = "the sandbox server was lost" if outcome.lost else "the judge died"
            data = {"status": "error", "stderr": why}
        tests = [bool(t) for t in data.get("tests", [])]
        if n_cases and len(tests) < n_cases:
            tests += [False] * (n_cases - len(tests))
        statuses = [str(s) for s in data.get("statuses", [])][:len(tests)]
        statuses += [NOT_RUN] * (len(tests) - len(statuses))
        status = data.get("status", "error")
        first = data.get("first_failure")
        if status != "passed" and first is None:
            first = next((i for i, ok in enumerate(tests) if not ok), 0)
        return Result(passed=status == "passed", status=status, tests=tests,
                      first_failure=None if status == "passed" else first,
                      stderr=data.get("stderr", ""), wall_s=outcome.wall_s, statuses=statuses)

    def _sweep(self) -> None:
        """Remove job folders a killed server could not (after a batch, none is in use).
        As root they live on the server's private tmpfs, which vanishes with the server."""
        for name in os.listdir(self._base):
            shutil.rmtree(os.path.join(self._base, name), ignore_errors=True)


def _encode(value, name: str):
    """codec.encode, its errors naming the value."""
    try:
        return codec.encode(value)
    except TypeError as exc:
        raise TypeError(f"{name} is not plain data ({exc})") from None
    except RecursionError:
        raise ValueError(f"{name} is nested too deeply") from None
