"""Runs instrumented step-traced functions on inputs and reports the state after every step.

Standard library only: the oracle (prmfast.data.oracle) starts this file as a subprocess for
untrusted candidates and imports `trace_calls` in-process for trusted references, so both are
traced by the same code. Protocol: a JSON object on stdin
    {"jobs": [{"source": str, "entry": str, "inputs": [[arg, ...], ...]}, ...],
     "timeout_s": float, "memory_mb": int}
and one JSON line per job on stdout: a list (per input) of lists of events (see `trace_calls`).
Every job runs in a forked child with resource limits, a per-call CPU-time timer and a wall
deadline; the child's own stdout/stderr go to /dev/null and events come back through a pipe as
they happen, so a child that hangs or dies still reports the steps it finished.
"""
from __future__ import annotations

import copy
import json
import os
import resource
import select
import signal
import sys
import tempfile
import time

STEP_HOOK = "__prmfast_step__"
MAX_STATE_CHARS = 2000
PLAIN_TYPES = (int, bool, float, str, type(None))


def encode_state(value, budget: int = MAX_STATE_CHARS) -> str:
    """Canonical text of a state built from plain values (exact types only, so a subclass with
    a lying __eq__ or __repr__ cannot imitate a reference state); anything else is `<type>`."""
    text = _encode(value)
    return text if len(text) <= budget else "<too large>"


def _encode(value) -> str:
    kind = type(value)
    if kind in PLAIN_TYPES:
        return repr(value)
    if kind in (list, tuple):
        inner = ", ".join(_encode(item) for item in value)
        return f"[{inner}]" if kind is list else f"({inner})"
    return f"<{kind.__name__}>"


class _Timeout(BaseException):
    """Raised by the per-call CPU timer; a BaseException so `except Exception` cannot swallow it."""


def _on_alarm(signum, frame):
    raise _Timeout()


def trace_calls(source: str, entry: str, inputs: list, emit, timeout_s: float | None = None):
    """Execute `source` (a function whose body calls STEP_HOOK(i, state) after step i), then call
    `entry` on each input. Emits events (input index, kind, step, payload): "start", then "step"
    per traced step, then one of "return" (payload: encoded value), "error" (exception name),
    "timeout"."""
    def hook(step, state):
        emit(current[0], "step", step, encode_state(state))

    current = [0]
    namespace = {STEP_HOOK: hook, "__name__": "__candidate__"}
    try:
        exec(compile(source, "<candidate>", "exec"), namespace)
        fn = namespace[entry]
    except BaseException as exc:  # the source itself fails: every input errors at step 0
        for n in range(len(inputs)):
            emit(n, "start", None, "")
            emit(n, "error", None, type(exc).__name__)
        return
    for n, args in enumerate(inputs):
        current[0] = n
        emit(n, "start", None, "")
        if timeout_s:
            signal.setitimer(signal.ITIMER_PROF, timeout_s)
        try:
            value = fn(*copy.deepcopy(args))
            signal.setitimer(signal.ITIMER_PROF, 0)
            emit(n, "return", None, encode_state(value))
        except _Timeout:
            emit(n, "timeout", None, "")
        except BaseException as exc:
            signal.setitimer(signal.ITIMER_PROF, 0)
            emit(n, "error", None, type(exc).__name__)


def _limit_child(memory_mb: int, cpu_s: int):
    resource.setrlimit(resource.RLIMIT_AS, (memory_mb << 20, memory_mb << 20))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)


def _run_child(job: dict, write_fd: int, timeout_s: float, memory_mb: int):
    def emit(n, kind, step, payload):
        os.write(write_fd, (json.dumps([n, kind, step, payload]) + "\n").encode())

    signal.signal(signal.SIGPROF, _on_alarm)
    _limit_child(memory_mb, cpu_s=int(timeout_s * (len(job["inputs"]) + 1)) + 1)
    trace_calls(job["source"], job["entry"], job["inputs"], emit, timeout_s)


def run_job(job: dict, timeout_s: float, memory_mb: int) -> list[list | None]:
    """Run one job in a forked child; returns per input its events [kind, step, payload] after
    "start", or None for an input the child never started (it was killed before)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read_fd)
        os.setsid()
        try:
            _run_child(job, write_fd, timeout_s, memory_mb)
        finally:
            os._exit(0)
    os.close(write_fd)
    deadline = time.monotonic() + 2 * timeout_s * (len(job["inputs"]) + 1) + 1.0
    chunks = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([read_fd], [], [], left)[0]:
            break
        chunk = os.read(read_fd, 1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(read_fd)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    os.waitpid(pid, 0)
    traces = [None for _ in job["inputs"]]
    for line in b"".join(chunks).decode(errors="replace").splitlines():
        try:
            n, kind, step, payload = json.loads(line)
            if kind == "start":
                traces[n] = []
            else:
                traces[n].append([kind, step, payload])
        except (ValueError, TypeError, IndexError, AttributeError):
            break  # a torn last line from a killed child
    return traces


def main():
    request = json.load(sys.stdin)
    with tempfile.TemporaryDirectory(prefix="prmfast-trace-") as workdir:
        os.chdir(workdir)
        for job in request["jobs"]:
            traces = run_job(job, request["timeout_s"], request["memory_mb"])
            sys.stdout.write(json.dumps(traces) + "\n")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
