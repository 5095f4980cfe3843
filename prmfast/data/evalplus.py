"""HumanEval+ (164) and MBPP+ (378) from EvalPlus: base + plus inputs as CallTests.

EvalPlus ships inputs only; expected outputs come from running the canonical solution (trusted)
in subprocesses, once, cached on disk keyed by the dataset file's hash. An input on which the
canonical solution fails, times out or returns something unpicklable (an re.Match) is dropped and
counted in meta["dropped_inputs"]; a task left with no input falls back to its original asserts. MBPP+
stores tuple arguments as JSON lists: an argument whose contract asserts `isinstance(arg, tuple)`
is converted back to a tuple (top level only).
"""
from __future__ import annotations

import ast
import hashlib
import pickle
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from prmfast.data.humaneval import import_lines
from prmfast.data.jsonl import read_jsonl
from prmfast.data.paths import cache_dir as default_cache_dir
from prmfast.data.paths import resolve
from prmfast.data.task import Task
from prmfast.sandbox.specs import AssertTests, CallTests

FILES = {"humanevalplus": "evalplus/HumanEvalPlus.jsonl.gz", "mbppplus": "evalplus/MbppPlus.jsonl.gz"}
FIELDS = ("task_id", "prompt", "entry_point", "canonical_solution", "base_input", "plus_input", "atol")
WORKER = Path(__file__).with_name("reference_outputs.py")
MIN_ATOL = 1e-6  # EvalPlus also allows a relative error on floats; CallTests has atol only
CACHE_VERSION = 1


def _tuple_positions(row: dict) -> set[int]:
    """Positions of the entry function's parameters that its contract requires to be tuples."""
    names = set(re.findall(r"isinstance\((\w+), tuple\)", row.get("contract", "")))
    if not names:
        return set()
    for node in ast.walk(ast.parse(row["canonical_solution"])):
        if isinstance(node, ast.FunctionDef) and node.name == row["entry_point"]:
            return {i for i, arg in enumerate(node.args.args) if arg.arg in names}
    return set()


def _inputs(row: dict, plus: bool) -> list[list]:
    positions = _tuple_positions(row)
    inputs = row["base_input"] + (row["plus_input"] or [] if plus else [])  # Mbpp/793 has {}
    return [[tuple(a) if i in positions and isinstance(a, list) else a for i, a in enumerate(args)]
            for args in inputs]


def _program(name: str, row: dict) -> str:
    return row["prompt"] + row["canonical_solution"] if name == "humanevalplus" else row["canonical_solution"]


def _compute(jobs: list[dict], workers: int) -> list[list]:
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
                     workers: int = 2, timeout_s: float = 20.0) -> list[list]:
    """Per row, per input: ("ok", value) | ("error", message) from the canonical solution."""
    digest = hashlib.sha256(file.read_bytes()).hexdigest()[:16]
    cache = Path(cache_dir) / f"{name}-{digest}-{'plus' if plus else 'base'}-v{CACHE_VERSION}.pkl"
    if cache.is_file():
        return pickle.loads(cache.read_bytes())
    jobs = [{"program": _program(name, row), "entry": row["entry_point"],
             "inputs": _inputs(row, plus), "timeout_s": timeout_s} for row in rows]
    out = _compute(jobs, workers)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    tmp.write_bytes(pickle.dumps(out))
    tmp.replace(cache)
    return out


def load(name: str, path=None, plus: bool = True, cache_dir=None, workers: int = 2) -> list[Task]:
    """name "humanevalplus" or "mbppplus"; plus=False keeps the base inputs only."""
    file = resolve(path, FILES[name])
    rows = read_jsonl(file, FIELDS)
    outputs = expected_outputs(name, file, rows, plus, cache_dir or default_cache_dir(), workers)
    tasks = []
    for row, results in zip(rows, outputs):
        cases = [(args, value) for args, (status, value) in zip(_inputs(row, plus), results)
                 if status == "ok"]
        meta = {"dataset": name, "dropped_inputs": len(results) - len(cases),
                "n_base": len(row["base_input"])}
        if name == "humanevalplus":
            meta["preamble"] = import_lines(row["prompt"])
        tests = CallTests(row["entry_point"], cases, max(float(row["atol"]), MIN_ATOL))
        if not cases and row.get("assertion"):  # e.g. Mbpp/124: complex inputs stored as text
            tests = AssertTests(row["assertion"])
            meta["tests_from"] = "assertion"
        tasks.append(Task(task_id=row["task_id"], prompt=row["prompt"], tests=tests,
                          entry_point=row["entry_point"], reference=row["canonical_solution"],
                          meta=meta))
    return tasks
