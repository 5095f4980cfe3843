"""Computes a trusted reference solution's outputs on many inputs, in a subprocess.

Protocol: a pickled list of {"program", "entry", "inputs", "timeout_s", "max_case_bytes"} on
stdin; written to the file named by argv[1], a pickled list (per job) of
{"results": [("ok", value) | ("error", message) | ("too_large", message) per input],
"seconds": time spent in the kept calls}. An input whose pickled arguments + output exceed
max_case_bytes is "too_large", so huge outputs never leave this process; the process's address
space is capped at MEMORY_BYTES (a MemoryError is an "error"). stdout is left to whatever the
solutions print. Used by the EvalPlus loaders; only trusted code runs here.
"""
from __future__ import annotations

import copy
import pickle
import resource
import signal
import sys
import time

MEMORY_BYTES = 3 << 30


class _Timeout(Exception):
    pass


def _on_alarm(signum, frame):
    raise _Timeout()


def _call(fn, args, timeout_s: float, max_case_bytes: int) -> tuple[tuple[str, object], float]:
    """(result, seconds) of one call."""
    signal.setitimer(signal.ITIMER_REAL, timeout_s)
    start = time.perf_counter()
    try:
        value = fn(*copy.deepcopy(args))
    except _Timeout:
        return ("error", "timeout"), 0.0
    except Exception as exc:
        return ("error", f"{type(exc).__name__}: {exc}"), 0.0
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    seconds = time.perf_counter() - start
    try:
        size = len(pickle.dumps((args, value)))
    except Exception as exc:  # e.g. an re.Match
        return ("error", f"unpicklable output: {type(exc).__name__}: {exc}"), 0.0
    if size > max_case_bytes:
        return ("too_large", f"{size} bytes"), 0.0
    return ("ok", value), seconds


def outputs(program: str, entry: str, inputs: list, timeout_s: float, max_case_bytes: int) -> dict:
    namespace: dict = {"__name__": "__reference__"}
    try:
        exec(compile(program, "<reference>", "exec"), namespace)
        fn = namespace[entry]
    except Exception as exc:
        return {"results": [("error", f"{type(exc).__name__}: {exc}")] * len(inputs), "seconds": 0.0}
    calls = [_call(fn, args, timeout_s, max_case_bytes) for args in inputs]
    return {"results": [r for r, _ in calls], "seconds": sum(s for _, s in calls)}


def main():
    signal.signal(signal.SIGALRM, _on_alarm)
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))
    sys.setrecursionlimit(10_000)
    if hasattr(sys, "set_int_max_str_digits"):
        sys.set_int_max_str_digits(0)
    jobs = pickle.load(sys.stdin.buffer)
    out = [outputs(j["program"], j["entry"], j["inputs"], j["timeout_s"], j["max_case_bytes"])
           for j in jobs]
    with open(sys.argv[1], "wb") as f:
        pickle.dump(out, f)


if __name__ == "__main__":
    main()
