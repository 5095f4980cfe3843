"""How PRMs rank their test samples, per run and pooled over runs (e.g. the seeds of a table).

    .venv/bin/python scripts/prm_pooled.py runs/x/seed0/prm runs/x/seed1/prm runs/x/seed2/prm

Each argument is a prm stage folder (or its test_scores.jsonl, which the prm stage writes: one
row per test sample with task_id, passed, response_ids and the PRM's line scores). For each run
and for all of them pooled (every (run, task) a problem of its own), prints the within-task AUC
of the minimum line score, best-of-N reranking by PRM-min against a random pick and a majority
vote, and the 95 % paired-bootstrap intervals of PRM-min minus each (prmfast.prm.metrics).
--json PATH also writes the figures. A missing file or a malformed row: rc 2 naming it.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from prmfast.prm.metrics import ranking_metrics  # noqa: E402
from prmfast.runio import RunFileError, read_jsonl  # noqa: E402
from prmfast.table1 import format_interval  # noqa: E402

FIELDS = {"task_id": str, "passed": bool, "response_ids": list, "scores": list}


def read_scores(path: Path) -> list[dict]:
    """The rows of a test_scores.jsonl (or of DIR/test_scores.jsonl for a folder); ValueError
    naming the file and row for a missing file or a row without the fields above."""
    if path.is_dir():
        path = path / "test_scores.jsonl"
    if not path.is_file():
        raise ValueError(f"{path}: no such file (the prm stage writes DIR/prm/test_scores.jsonl)")
    try:
        rows = read_jsonl(path)
    except RunFileError as exc:
        raise ValueError(str(exc)) from None
    for i, row in enumerate(rows, 1):
        bad = [k for k, kind in FIELDS.items() if not isinstance(row.get(k), kind)]
        if bad or not all(isinstance(v, (int, float)) and math.isfinite(v)
                          for v in row["scores"]):
            raise ValueError(f"{path}: row {i} lacks {', '.join(bad) or 'finite scores'}")
    if not rows:
        raise ValueError(f"{path}: no rows")
    return rows


def measures(runs: list[list[dict]]) -> dict:
    """ranking_metrics over the samples of the given runs, each (run, task) a problem."""
    rows = [(i, r) for i, run in enumerate(runs) for r in run]
    return ranking_metrics([(i, r["task_id"]) for i, r in rows], [r["passed"] for _, r in rows],
                           [tuple(r["response_ids"]) for _, r in rows],
                           [r["scores"] for _, r in rows])


def table(names: list[str], runs: list[list[dict]]) -> tuple[str, dict]:
    """Markdown table (one row per run, then pooled) and the figures behind it."""
    figures = {name: measures([run]) for name, run in zip(names, runs)}
    if len(runs) > 1:
        figures["pooled"] = measures(runs)
    lines = ["| run | tasks | within-task AUC, min (pairs) | PRM-min / majority / random | "
             "PRM-min - majority | PRM-min - random |", "|---|---|---|---|---|---|"]
    for name, m in figures.items():
        rr, ci, wt = m["rerank"], m["rerank_ci95"], m["within_task"]["min"]
        lines.append(f"| {name} | {rr['problems']} | {wt['auc']:.3f} ({wt['pairs']}) | "
                     f"{rr['prm_min']:.3f} / {rr['majority']:.3f} / {rr['random']:.3f} | "
                     f"{_interval(rr, ci, 'majority')} | {_interval(rr, ci, 'random')} |")
    return "\n".join(lines), figures


def _interval(rerank: dict, ci95: dict, base: str) -> str:
    """PRM-min minus `base` with its interval, as table1.format_interval writes one."""
    low, high = ci95[f"prm_min-{base}"]
    return format_interval({"mean": rerank["prm_min"] - rerank[base], "low": low, "high": high,
                            "n": rerank["problems"]})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", type=Path,
                        help="prm stage folders or their test_scores.jsonl files")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    try:
        runs = [read_scores(p) for p in args.paths]
    except ValueError as exc:
        print(f"prm_pooled: {exc}", file=sys.stderr)
        return 2
    text, figures = table([str(p) for p in args.paths], runs)
    print(text)
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
