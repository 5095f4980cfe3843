"""Do prmfast's HumanEval+ / MBPP+ verdicts agree with the `evalplus` package's?

    .venv/bin/python scripts/evalplus_agreement.py                      # every task, both datasets
    .venv/bin/python scripts/evalplus_agreement.py --datasets mbppplus --tasks Mbpp/2,Mbpp/558

Needs `evalplus` (the `test` extra) and the datasets in ../shared/data; runs offline (EvalPlus
reads a copy of our dataset file through HUMANEVAL_OVERRIDE_PATH / MBPP_OVERRIDE_PATH and keeps
its cache in OUT). Per task it judges, with both evaluators, the same programs: the canonical
solution, its entry point with a `return None` body, up to MUTANTS one-operator mutants (+ to -,
< to <=, and to or, ...) and output probes chosen by the types of the task's outputs (floats
scaled by 1 + 1e-9 or 1 + 1e-6 or shifted by 2e-6, ints returned as floats, bools as ints,
tuples as lists). prmfast judges with the datasets' default ("official") grader.

A disagreement is explained when the task is a known EvalPlus bug (EVALUATOR_BUGS), when
EvalPlus fails the program on an input prmfast drops (an output over MAX_CASE_BYTES), or as a
load-dependent result: both evaluators judge the task again alone (no other task's programs
running beside it) with generous time limits and then agree, or one of them still times out.
Any other is unexplained (exit status 1). Writes OUT/summary.json and prints per dataset
agreed/total, every disagreement, and both evaluators' wall times on the same programs with the
same number of workers (EvalPlus's `evaluate()` call with its ground truth cached; prmfast's
cached load, sandbox start and run; --repeat N times both N times, alternating). prmfast's jobs
stop at their first failing input (Job.stop_on_failure, as python -m prmfast.eval runs them and
as EvalPlus does); --all-cases runs every input, as the RL partial reward needs.
"""
from __future__ import annotations

import argparse
import ast
import copy
import gzip
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from prmfast.data import load_tasks  # noqa: E402
from prmfast.data.evalplus import FILES, expected_outputs  # noqa: E402
from prmfast.data.jsonl import read_jsonl  # noqa: E402
from prmfast.data.paths import resolve  # noqa: E402
from prmfast.data.validate import job_timeout  # noqa: E402
from prmfast.sandbox import CallTests, Job, Sandbox  # noqa: E402

EVALPLUS_NAMES = {"humanevalplus": "humaneval", "mbppplus": "mbpp"}
OVERRIDE_VARIABLES = {"humanevalplus": "HUMANEVAL_OVERRIDE_PATH", "mbppplus": "MBPP_OVERRIDE_PATH"}
EVALUATOR_BUGS = {
    "HumanEval/32": "EvalPlus 0.3.1 fails every solution: its find_zero oracle skips recording "
                    "an input as passed, so no run is complete",
}
MUTANTS = 3
SANDBOX_TIMEOUT_S = 10.0  # python -m prmfast.eval's default
# Time limits of the recheck: EvalPlus's evaluate() arguments, prmfast's sandbox timeout.
GENEROUS_EVALPLUS = {"min_time_limit": 20.0, "gt_time_limit_factor": 40.0}
GENEROUS_TIMEOUT_S = 120.0
SWAPS = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Add, ast.Div: ast.Mult,
         ast.FloorDiv: ast.Div, ast.Mod: ast.FloorDiv, ast.Pow: ast.Mult, ast.Lt: ast.LtE,
         ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq, ast.NotEq: ast.Eq,
         ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is,
         ast.And: ast.Or, ast.Or: ast.And}
# Output probes: (name, the output type that makes it apply, the transform's body on `v`).
PROBES = [
    ("float*(1+1e-9)", float, "v * (1 + 1e-9) if type(v) is float else v"),
    ("float*(1+1e-6)", float, "v * (1 + 1e-6) if type(v) is float else v"),
    ("float+2e-6", float, "v + 2e-6 if type(v) is float else v"),
    ("int->float", int, "float(v) if type(v) is int else v"),
    ("bool->int", bool, "int(v) if type(v) is bool else v"),
    ("tuple->list", tuple, "list(v) if type(v) is tuple else v"),
]
# Applies a probe to the outermost call's result only (a recursive entry point keeps its own
# results), through lists, tuples and dict values.
PROBE_CODE = '''

_probe_inner, _probe_depth = {entry}, [0]


def _probe(v):
    if type(v) in (list, tuple):
        v = type(v)(_probe(x) for x in v)
    elif type(v) is dict:
        v = {{k: _probe(x) for k, x in v.items()}}
    return {body}


def {entry}(*args):
    _probe_depth[0] += 1
    try:
        out = _probe_inner(*args)
    finally:
        _probe_depth[0] -= 1
    return out if _probe_depth[0] else _probe(out)
'''


@dataclass
class Sample:
    task_id: str
    kind: str
    solution: str


def program_of(name: str, row: dict) -> str:
    """The canonical program as EvalPlus runs it."""
    return (row["prompt"] if name == "humanevalplus" else "") + row["canonical_solution"]


def mutants(program: str, limit: int = MUTANTS) -> list[tuple[str, str]]:
    """Up to `limit` (description, program) one-operator mutants, at sites spread over the
    program (deterministic)."""
    tree = ast.parse(program)
    sites = [(i, j) for i, node in enumerate(ast.walk(tree)) for j, op in enumerate(_ops(node))
             if type(op) in SWAPS]
    if not sites:
        return []
    picked = sorted({sites[k * (len(sites) - 1) // max(limit - 1, 1)] for k in range(limit)})
    out = []
    for i, j in picked:
        mutant = copy.deepcopy(tree)
        node = list(ast.walk(mutant))[i]
        op = _ops(node)[j]
        new = SWAPS[type(op)]()
        if isinstance(node, ast.Compare):
            node.ops[j] = new
        else:
            node.op = new
        out.append((f"mutant {type(op).__name__}->{type(new).__name__} line {node.lineno}",
                    ast.unparse(mutant) + "\n"))
    return out


def _ops(node) -> list:
    if isinstance(node, (ast.BinOp, ast.AugAssign, ast.BoolOp)):
        return [node.op]
    if isinstance(node, ast.Compare):
        return list(node.ops)
    return []


def returns_none(program: str, entry: str) -> str:
    """The program with the entry point's body replaced by `return None`."""
    tree = ast.parse(program)
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == entry:
            node.body = [ast.Return(ast.Constant(None))]
    return ast.unparse(tree) + "\n"


def output_types(value, found=None) -> set[type]:
    """The types found in an expected output (through lists, tuples, sets and dicts)."""
    found = set() if found is None else found
    found.add(type(value))
    if type(value) in (list, tuple, set, frozenset):
        for v in value:
            output_types(v, found)
    elif type(value) is dict:
        for v in value.values():
            output_types(v, found)
    return found


def samples_for(name: str, row: dict, task) -> list[Sample]:
    """The programs judged for one task (see the module docstring)."""
    program, entry = program_of(name, row), row["entry_point"]
    out = [Sample(row["task_id"], "canonical", program),
           Sample(row["task_id"], "return None", returns_none(program, entry))]
    out += [Sample(row["task_id"], kind, code) for kind, code in mutants(program)]
    types = set()
    if isinstance(task.tests, CallTests) and not task.meta.get("harness"):
        for _, expected in task.tests.cases:
            output_types(expected, types)
    out += [Sample(row["task_id"], f"probe {probe}",
                   program + PROBE_CODE.format(entry=entry, body=body))
            for probe, kind, body in PROBES if kind in types]
    return out


def write_dataset(rows: list[dict], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    return path


EVALUATE = """
import json, os, sys, time
from evalplus.evaluate import evaluate
kw = json.loads(sys.argv[1])
start = time.perf_counter()
evaluate(**kw)
print(json.dumps({"wall_s": time.perf_counter() - start}))
sys.stdout.flush()
os._exit(0)  # its watchdog thread would keep the process up to 20 s longer
"""


def run_evalplus(name: str, rows: list[dict], samples: list[Sample], folder: Path, workers: int,
                 limits: dict | None = None) -> tuple[list[dict], float]:
    """EvalPlus's results on `samples`, in order ({"passed": base and plus passed, "statuses",
    "failing": the inputs it reports failing}), and the wall time of its evaluate() call. Its
    ground truth is computed first (cached in `folder`) so that the timed call evaluates only."""
    folder.mkdir(parents=True, exist_ok=True)
    ids = {s.task_id for s in samples}
    rows = [r for r in rows if r["task_id"] in ids]
    dataset = write_dataset(rows, folder / "dataset.jsonl.gz")
    env = {**os.environ, OVERRIDE_VARIABLES[name]: str(dataset),
           "XDG_CACHE_HOME": str(folder / "cache"), "TOKENIZERS_PARALLELISM": "false"}
    samples_file = folder / "samples.jsonl"
    results_file = folder / "samples_eval_results.json"
    kw = dict(dataset=EVALPLUS_NAMES[name], parallel=workers, **(limits or {}))
    canonical = [Sample(r["task_id"], "canonical", program_of(name, r)) for r in rows]
    for batch in (canonical, samples):  # the first run builds the ground-truth cache
        results_file.unlink(missing_ok=True)
        samples_file.write_text("".join(json.dumps({"task_id": s.task_id, "solution": s.solution})
                                        + "\n" for s in batch))
        call = json.dumps({**kw, "samples": str(samples_file)})
        proc = subprocess.run([sys.executable, "-c", EVALUATE, call], env=env,
                              capture_output=True, text=True, cwd=folder)
        if proc.returncode != 0:
            raise RuntimeError(f"evalplus failed: {proc.stderr[-3000:]}")
    wall_s = json.loads(proc.stdout.strip().splitlines()[-1])["wall_s"]
    per_task = {tid: iter(rs) for tid, rs in json.loads(results_file.read_text())["eval"].items()}
    results = []
    for s in samples:
        r = next(per_task[s.task_id])
        results.append({"passed": r["base_status"] == r["plus_status"] == "pass",
                        "statuses": [r["base_status"], r["plus_status"]],
                        "failing": r["base_fail_tests"] + r["plus_fail_tests"]})
    return results, wall_s


def run_prmfast(name: str, dataset: Path, cache: Path, samples: list[Sample], workers: int,
                timeout_s: float = SANDBOX_TIMEOUT_S, all_cases: bool = False):
    """prmfast's results on `samples`, in order, and the wall time of loading the tasks (from
    the expected-output cache in `cache`, which must exist), starting the sandbox and running
    them (each job up to its first failing input unless `all_cases`)."""
    start = time.perf_counter()
    tasks = {t.task_id: t for t in load_tasks(name, path=dataset, cache_dir=cache)}
    with Sandbox(workers=workers, timeout_s=timeout_s) as sandbox:
        jobs = [Job(s.solution + tasks[s.task_id].meta.get("harness", ""), tasks[s.task_id].tests,
                    timeout_s=job_timeout(tasks[s.task_id], timeout_s),
                    stop_on_failure=not all_cases) for s in samples]
        results = sandbox.run(jobs)
    return results, time.perf_counter() - start


def dropped_inputs(name: str, dataset: Path, rows: list[dict], cache: Path) -> dict[str, set]:
    """Per task, the inputs (as JSON text) prmfast drops (see prmfast.data.evalplus)."""
    outputs = expected_outputs(name, dataset, rows, True, cache)
    return {r["task_id"]: {_input_key(args) for args, (status, _) in
                           zip(r["base_input"] + (r["plus_input"] or []), out["results"])
                           if status != "ok"} for r, out in zip(rows, outputs)}


def _input_key(args) -> str:
    return json.dumps(json.loads(json.dumps(list(args))))  # tuples as lists, as stored


def explain(sample: Sample, ours, theirs: dict, recheck: tuple | None, dropped: set) -> str | None:
    """Why the evaluators disagree on `sample`, None if unexplained. `recheck`: both results
    again, the task judged alone with generous time limits."""
    if sample.task_id in EVALUATOR_BUGS:
        return EVALUATOR_BUGS[sample.task_id]
    if ours.passed and {_input_key(args) for args in theirs["failing"]} & dropped:
        return "EvalPlus fails it on an input prmfast drops (an output over MAX_CASE_BYTES)"
    if recheck is not None:
        ours2, theirs2 = recheck
        if ours2.passed == theirs2["passed"]:
            return "load-dependent (they agree on the task judged alone, generous time limits)"
        if "timeout" in (ours2.status, *theirs2["statuses"]):
            return "load-dependent timeout (one still times out with generous time limits)"
    return None


def agreement(name: str, task_ids: list[str] | None, folder: Path, workers: int = 2,
              timeout_s: float = SANDBOX_TIMEOUT_S, repeat: int = 1,
              all_cases: bool = False) -> dict:
    """Judge every sample of the chosen tasks (all when None) with both evaluators; the
    report (see the module docstring). `repeat` > 1 times both again, alternating (the
    verdicts are the first run's); `all_cases`: prmfast runs every input of a job."""
    rows = read_jsonl(resolve(None, FILES[name]))
    if task_ids is not None:
        unknown = set(task_ids) - {r["task_id"] for r in rows}
        if unknown:
            raise ValueError(f"{name} has no task {sorted(unknown)}")
        rows = [r for r in rows if r["task_id"] in task_ids]
    dataset = write_dataset(rows, folder / "dataset" / Path(FILES[name]).name)
    cache = folder / "prmfast-cache"
    tasks = {t.task_id: t for t in load_tasks(name, path=dataset, cache_dir=cache)}
    samples = [s for r in rows for s in samples_for(name, r, tasks[r["task_id"]])]
    ours, ours_s = run_prmfast(name, dataset, cache, samples, workers, timeout_s, all_cases)
    theirs, theirs_s = run_evalplus(name, rows, samples, folder / "evalplus", workers)
    walls = {"evalplus": [round(theirs_s, 1)], "prmfast": [round(ours_s, 1)]}
    for _ in range(repeat - 1):
        walls["prmfast"].append(round(run_prmfast(name, dataset, cache, samples, workers,
                                                  timeout_s, all_cases)[1], 1))
        walls["evalplus"].append(round(run_evalplus(name, rows, samples, folder / "evalplus",
                                                    workers)[1], 1))
    differ = [i for i, (r, t) in enumerate(zip(ours, theirs)) if r.passed != t["passed"]]
    dropped = dropped_inputs(name, dataset, rows, cache)
    reasons = {i: explain(samples[i], ours[i], theirs[i], None, dropped[samples[i].task_id])
               for i in differ}
    pending = [i for i in differ if reasons[i] is None]
    for task_id in dict.fromkeys(samples[i].task_id for i in pending):  # one task at a time
        again = [i for i in pending if samples[i].task_id == task_id]
        ours2, _ = run_prmfast(name, dataset, cache, [samples[i] for i in again], workers,
                               GENEROUS_TIMEOUT_S, all_cases)
        theirs2, _ = run_evalplus(name, rows, [samples[i] for i in again],
                                  folder / "recheck" / task_id.replace("/", "_"), workers,
                                  GENEROUS_EVALPLUS)
        for i, recheck in zip(again, zip(ours2, theirs2)):
            reasons[i] = explain(samples[i], ours[i], theirs[i], recheck, dropped[task_id])
    disagreements = [{"task_id": samples[i].task_id, "kind": samples[i].kind,
                      "prmfast": ours[i].status, "evalplus": theirs[i]["statuses"],
                      "explained": reasons[i], "prmfast_stderr": ours[i].stderr[-300:]}
                     for i in differ]
    kinds = [s.kind.split(" ")[0] for s in samples]
    return {"dataset": name, "tasks": len(rows), "samples": len(samples),
            "agreed": len(samples) - len(differ),
            "kinds": {k: kinds.count(k) for k in sorted(set(kinds))},
            "evalplus_pass": sum(t["passed"] for t in theirs),
            "prmfast_pass": sum(r.passed for r in ours),
            "prmfast_timeouts": sum(r.status == "timeout" for r in ours),
            "prmfast_timeout_job_s": round(sum(r.wall_s for r in ours if r.status == "timeout"), 1),
            "disagreements": disagreements,
            "unexplained": [d for d in disagreements if d["explained"] is None],
            "wall_s": walls,
            "workers": workers, "timeout_s": timeout_s, "all_cases": all_cases}


PREFIXES = {"humanevalplus": "HumanEval/", "mbppplus": "Mbpp/"}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", default="humanevalplus,mbppplus")
    p.add_argument("--tasks", default=None, help="comma-separated task ids (default: all)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--repeat", type=int, default=1, help="timed runs of each evaluator")
    p.add_argument("--timeout-s", type=float, default=SANDBOX_TIMEOUT_S,
                   help="prmfast's per-job floor (python -m prmfast.eval --timeout-s)")
    p.add_argument("--out", type=Path, default=None, help="work folder (default: a temporary one)")
    p.add_argument("--all-cases", action="store_true",
                   help="prmfast runs every input of a job (as the RL partial reward does) "
                        "instead of stopping at the first failing one")
    args = p.parse_args(argv)
    names = args.datasets.split(",")
    if set(names) - set(FILES):
        p.error(f"--datasets: choose from {sorted(FILES)}")
    if args.workers < 1 or args.repeat < 1 or not args.timeout_s > 0:
        p.error("--workers and --repeat must be >= 1, --timeout-s > 0")
    ids = args.tasks.split(",") if args.tasks else None
    chosen = {name: None if ids is None else [i for i in ids if i.startswith(PREFIXES[name])]
              for name in names}
    if ids is not None and sorted(sum(chosen.values(), [])) != sorted(ids):
        p.error(f"--tasks: ids must start with {' or '.join(PREFIXES[n] for n in names)}")
    out = args.out or Path(tempfile.mkdtemp(prefix="evalplus-agreement-"))
    reports = []
    for name in names:
        if chosen[name] == []:
            continue
        report = agreement(name, chosen[name], out / name, args.workers, args.timeout_s,
                           args.repeat, args.all_cases)
        reports.append(report)
        print_report(report)
    (out / "summary.json").write_text(json.dumps(reports, indent=1) + "\n")
    print(f"written: {out / 'summary.json'}")
    return 1 if any(r["unexplained"] for r in reports) else 0


def print_report(report: dict) -> None:
    print(f"{report['dataset']}: agreed {report['agreed']}/{report['samples']} samples "
          f"({report['tasks']} tasks; {report['kinds']}); pass: evalplus "
          f"{report['evalplus_pass']}, prmfast {report['prmfast_pass']}")
    for d in report["disagreements"]:
        print(f"  {d['task_id']} [{d['kind']}]: prmfast {d['prmfast']}, evalplus "
              f"{'/'.join(d['evalplus'])}: {d['explained'] or 'UNEXPLAINED'}")
    walls = report["wall_s"]
    ratio = statistics.median(walls["evalplus"]) / statistics.median(walls["prmfast"])
    print(f"  wall time, {report['workers']} workers: evalplus {walls['evalplus']} s, prmfast "
          f"{walls['prmfast']} s (medians: {ratio:.2f}x); prmfast: {report['prmfast_timeouts']} "
          f"timeouts at --timeout-s {report['timeout_s']:g}, {report['prmfast_timeout_job_s']} s "
          "of job time")


if __name__ == "__main__":
    sys.exit(main())
