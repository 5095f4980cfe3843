"""Computes a trusted reference solution's outputs on many inputs, in a subprocess.

Protocol: a pickled list of {"program", "entry", "inputs", "timeout_s"} on stdin; a pickled list
(per job) of per-input ("ok", value) | ("error", message) written to the file named by argv[1]
(stdout is left to whatever the solutions print). Used by the EvalPlus loaders,
whose expected outputs come from running the canonical solution; only trusted code runs here.
"""
from __future__ import annotations

import copy
import pickle
import signal
import sys


class _Timeout(Exception):
    pass


def _on_alarm(signum, frame):
    raise _Timeout()


def outputs(program: str, entry: str, inputs: list, timeout_s: float) -> list[tuple[str, object]]:
    namespace: dict = {"__name__": "__reference__"}
    try:
        exec(compile(program, "<reference>", "exec"), namespace)
        fn = namespace[entry]
    except Exception as exc:
        return [("error", f"{type(exc).__name__}: {exc}")] * len(inputs)
    results = []
    for args in inputs:
        signal.setitimer(signal.ITIMER_REAL, timeout_s)
        try:
            value = fn(*copy.deepcopy(args))
            pickle.dumps(value)
            results.append(("ok", value))
        except _Timeout:
            results.append(("error", "timeout"))
        except Exception as exc:
            results.append(("error", f"{type(exc).__name__}: {exc}"))
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    return results


def main():
    signal.signal(signal.SIGALRM, _on_alarm)
    sys.setrecursionlimit(10_000)
    jobs = pickle.load(sys.stdin.buffer)
    out = [outputs(j["program"], j["entry"], j["inputs"], j["timeout_s"]) for j in jobs]
    with open(sys.argv[1], "wb") as f:
        pickle.dump(out, f)


if __name__ == "__main__":
    main()
