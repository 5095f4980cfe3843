"""Two Table 1 runs on the same test tasks (and the same SFT policy per seed), compared.

    .venv/bin/python scripts/compare_tables.py results/paper/per_task.jsonl \\
        results/paper_long/per_task.jsonl [--variants sft,sparse,oracle] [--base sft]

Both files are per_task.jsonl files of scripts/ablation.py (prmfast/table1.py's schema). Prints
two markdown tables (docs/rl.md, "The screening's best levers, with power"):
- each variant of the second run minus the same variant of the first, paired over tasks (per
  seed and pooled, 95 % bootstrap intervals);
- where the second run's changes land (issue 17's "sharpening" diagnosis): each (seed, task)
  bucketed by the base's correct count in the first run, an evaluation independent of the
  second, and per bucket each variant's mean change of pass rate and how many pairs end with no
  or all samples correct, next to the base evaluated again.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prmfast.table1 import (OUTCOME_BUCKETS, check_rows, compare, format_interval,  # noqa: E402
                            outcome_shift)


def read_rows(path: str) -> list[dict]:
    """The per-task rows of a per_task.jsonl file, checked against its schema (ValueError)."""
    with open(path) as f:
        return check_rows(json.loads(line) for line in f if line.strip())


def differences(first: list[dict], second: list[dict], variants: list[str]) -> str:
    """Second minus first, per variant: per seed and pooled paired intervals over tasks."""
    rows = ([{**r, "variant": r["variant"] + " (first)"} for r in first]
            + [{**r, "variant": r["variant"] + " (second)"} for r in second])
    lines = ["| variant | tasks | second - first, pooled | per seed |", "|---|---|---|---|"]
    for v in variants:
        for tasks in ("all", "long"):
            c = compare(rows, f"{v} (second)", f"{v} (first)", tasks)
            if c is None or c["pooled"] is None:
                lines.append(f"| {v} | {tasks} | not in both | |")
                continue
            per_seed = "; ".join(f"{s}: {ci['mean']:+.3f}" for s, ci in c["per_seed"].items())
            lines.append(f"| {v} | {tasks} | {format_interval(c['pooled'])} | {per_seed} |")
    return "\n".join(lines)


def buckets(first: list[dict], second: list[dict], variants: list[str], base: str) -> str:
    """outcome_shift of every variant, one column each."""
    shifts = {v: outcome_shift(first, second, v, base) for v in variants}
    lines = [f"| {base}'s correct count in the first file (pairs) | "
             + " | ".join(f"{v} in the second file" for v in variants) + " |",
             "|---" * (len(variants) + 1) + "|"]
    for bucket in OUTCOME_BUCKETS:
        pairs = max(s[bucket]["pairs"] for s in shifts.values())
        cells = [("-" if s[bucket]["change"] is None else
                  f"{s[bucket]['change']:+.3f}; {s[bucket]['to_none']} at none, "
                  f"{s[bucket]['to_all']} at all") for s in shifts.values()]
        lines.append(f"| {bucket} ({pairs}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("first", help="per_task.jsonl whose base rows define the buckets")
    parser.add_argument("second", help="per_task.jsonl of the variants to show")
    parser.add_argument("--variants", default=None,
                        help="comma-separated variants of the second file (default: all of them)")
    parser.add_argument("--base", default="sft")
    args = parser.parse_args(argv)
    try:
        first, second = read_rows(args.first), read_rows(args.second)
    except (OSError, ValueError) as exc:        # json.JSONDecodeError is a ValueError
        print(f"cannot read the per-task rows: {exc}", file=sys.stderr)
        return 2
    present = sorted({r["variant"] for r in second})
    variants = args.variants.split(",") if args.variants else present
    missing = [v for v in variants if v not in present]
    if missing:
        print(f"variants {missing} are not in {args.second}, which has {present}", file=sys.stderr)
        return 2
    if not any(r["variant"] == args.base for r in first):
        print(f"the base {args.base!r} is not in {args.first} (--base names the variant whose "
              "counts define the buckets)", file=sys.stderr)
        return 2
    print(differences(first, second, variants) + "\n\n"
          + buckets(first, second, variants, args.base))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
