"""HumanEval+ (164) and MBPP+ (378) from EvalPlus: base + plus inputs as CallTests.

EvalPlus ships inputs only; expected outputs come from running the canonical solution (trusted)
in subprocesses, once, cached on disk (gzip) keyed by the dataset file's hash. An input is
dropped, and counted per reason in meta["dropped_inputs"], when the canonical solution fails,
times out or returns something unpicklable ("error"), or when its pickled arguments + output
exceed MAX_CASE_BYTES ("too_large": a few inputs by design make outputs of megabytes, up to
260 MB for Mbpp/255, beyond what a sandbox frame carries). A task left with no input falls back
to its original asserts. MBPP+ stores tuples as JSON lists and complex numbers as text: such
arguments are decoded as EvalPlus does (evalplus_inputs). Tasks that EvalPlus compares
specially call a wrapper (evalplus_oracles). meta["time_limit_s"] is a job budget scaled from
the canonical solution's time, as EvalPlus scales its time limits. Outputs are compared as
EvalPlus does (sandbox grader "evalplus", with its per-input tolerances: evalplus_tolerances)
unless grader="strict".
"""
from __future__ import annotations

import gzip
import hashlib
import pickle
import subprocess
import sys
import tempfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from prmfast.data.evalplus_inputs import decode_arguments
from prmfast.data.evalplus_oracles import alternatives, oracle_kind, wrapper, wrapper_name
from prmfast.data.humaneval import import_lines
from prmfast.data.jsonl import Row, read_jsonl
from prmfast.data.paths import cache_dir as default_cache_dir
from prmfast.data.paths import resolve
from prmfast.data.task import Task, sandbox_grader
from prmfast.sandbox.compare import EVALPLUS_FLOAT_ATOL, is_floats
from prmfast.sandbox.specs import AssertTests, CallTests

FILES = {"humanevalplus": "evalplus/HumanEvalPlus.jsonl.gz", "mbppplus": "evalplus/MbppPlus.jsonl.gz"}
FIELDS = {**dict.fromkeys(("task_id", "prompt", "entry_point", "canonical_solution"), str),
          "base_input": list, "plus_input": (list, dict), "atol": (int, float)}
WORKER = Path(__file__).with_name("reference_outputs.py")
STRICT_MIN_ATOL = 1e-6  # the strict grader's float tolerance (it has no relative one)
MAX_CASE_BYTES = 1_000_000  # pickled arguments + expected output of one input
TIME_FACTOR, TIME_MARGIN_S = 4.0, 2.0  # time_limit_s = factor * canonical time + margin
CACHE_VERSION = 3  # 3: MBPP+ arguments decoded as EvalPlus does (evalplus_inputs)


def _inputs(row: dict, plus: bool) -> list[list]:
    inputs = row["base_input"] + (row["plus_input"] or [] if plus else [])  # Mbpp/793 has {}
    return [decode_arguments(row["task_id"], args) for args in inputs]


def _harness(name: str, row: dict) -> str:
    """The special-comparison wrapper of the task ("" when compared exactly)."""
    kind = oracle_kind(name, row["entry_point"])
    return wrapper(kind, row["entry_point"], float(row["atol"])) if kind else ""


def _tested_function(name: str, row: dict) -> str:
    return wrapper_name(row["entry_point"]) if _harness(name, row) else row["entry_point"]


def _program(name: str, row: dict) -> str:
    code = row["prompt"] + row["canonical_solution"] if name == "humanevalplus" else row["canonical_solution"]
    return code + _harness(name, row)


def _compute(jobs: list[dict], workers: int) -> list[dict]:
    """Run the jobs in `workers` subprocesses (round-robin shards), keeping the job order."""
    shards = [jobs[i::workers] for i in range(workers)]

    def run(shard):
        with tempfile.TemporaryDirectory(prefix="prmfast-ref-") as tmp:
            result = Path(tmp) / "out.pkl"
            proc = subprocess.run([sys.executable, "-I", str(WORKER), str(result)], cwd=tmp,
                                  input=pickle.dumps(shard), capture_output=True)
            if proc.returncode != 0:
                raise RuntimeError(f"reference outputs failed: {proc.stderr.decode()[-2000:]}")
            return pickle.loads(result.read_bytes())

    with ThreadPoolExecutor(workers) as pool:
        shard_out = list(pool.map(run, shards))
    out = [None] * len(jobs)
    for i, results in enumerate(shard_out):
        out[i::workers] = results
    return out


def expected_outputs(name: str, file: Path, rows: list[dict], plus: bool, cache_dir: Path,
                     workers: int = 2, timeout_s: float = 20.0) -> list[dict]:
    """Per row: {"results": per input ("ok", value) | ("error" | "too_large", message),
    "seconds": the canonical solution's time on the kept inputs}."""
    digest = hashlib.sha256(file.read_bytes()).hexdigest()[:16]
    cache = (Path(cache_dir) / f"{name}-{digest}-{'plus' if plus else 'base'}"
             f"-cap{MAX_CASE_BYTES}-v{CACHE_VERSION}.pkl.gz")
    if cache.is_file():
        return pickle.loads(gzip.decompress(cache.read_bytes()))
    jobs = [{"program": _program(name, row), "entry": _tested_function(name, row),
             "inputs": _inputs(row, plus), "timeout_s": timeout_s, "max_case_bytes": MAX_CASE_BYTES}
            for row in rows]
    out = _compute(jobs, workers)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    tmp.write_bytes(gzip.compress(pickle.dumps(out, protocol=pickle.HIGHEST_PROTOCOL), 6))
    tmp.replace(cache)
    return out


def load(name: str, path=None, plus: bool = True, cache_dir=None, workers: int = 2,
         grader: str = "official") -> list[Task]:
    """name "humanevalplus" or "mbppplus"; plus=False keeps the base inputs only. grader
    "official" compares as EvalPlus does, "strict" by exact type and value."""
    grader = sandbox_grader(grader, "evalplus")
    file = resolve(path, FILES[name])
    rows = read_jsonl(file, FIELDS)
    outputs = expected_outputs(name, file, rows, plus, cache_dir or default_cache_dir(), workers)
    return [_task(name, row, plus, out, grader) for row, out in zip(rows, outputs)]


def evalplus_tolerances(row: dict, results: list) -> list[float]:
    """Per input, the tolerance EvalPlus 0.3.1 compares its output with: the task's atol; for
    an atol-0 task, 0 until the first input of the run (the base inputs, then the plus inputs)
    whose expected output is floats (compare.is_floats), EVALPLUS_FLOAT_ATOL from there on
    (EvalPlus keeps it for the rest of the run). A dropped input's output counts as not
    floats."""
    tolerances, tol = [], 0.0
    for i, (status, value) in enumerate(results):
        if i in (0, len(row["base_input"])):
            tol = float(row["atol"])
        if not tol and status == "ok" and is_floats(value):
            tol = EVALPLUS_FLOAT_ATOL
        tolerances.append(tol)
    return tolerances


def _task(name: str, row: Row, plus: bool, out: dict, grader: str) -> Task:
    cases = [(args, value) for args, (status, value) in zip(_inputs(row, plus), out["results"])
             if status == "ok"]
    dropped = Counter(status for status, _ in out["results"] if status != "ok")
    meta = {"dataset": name, "dropped_inputs": dict(dropped), "n_base": len(row["base_input"]),
            "time_limit_s": round(TIME_FACTOR * out["seconds"] + TIME_MARGIN_S, 1),
            "source": row.where}
    if name == "humanevalplus":
        meta["preamble"] = import_lines(row["prompt"])
    if _harness(name, row):
        meta["harness"] = _harness(name, row)
    if grader == "evalplus":
        atol = [t for t, (status, _) in zip(evalplus_tolerances(row, out["results"]),
                                            out["results"]) if status == "ok"]
    else:
        atol = max(float(row["atol"]), STRICT_MIN_ATOL)
    tests = CallTests(_tested_function(name, row), cases, atol, grader=grader,
                      alternatives=alternatives(name, row["entry_point"], [a for a, _ in cases]))
    if not cases and row.get("assertion"):  # every input dropped (no such task in the files)
        tests = AssertTests(row["assertion"])
        meta["tests_from"] = "assertion"
        meta.pop("harness", None)
    return Task(task_id=row["task_id"], prompt=row["prompt"], tests=tests,
                entry_point=row["entry_point"], reference=row["canonical_solution"], meta=meta)
