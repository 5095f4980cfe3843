"""The paper's Table 1 with statistical power: per-task rows, paired comparisons, the claims.

scripts/ablation.py evaluates every variant of every seed on the same test tasks; this module
turns those evaluations into

- per-task rows (results/<name>/per_task.jsonl), one per (seed, variant, task):
  {"seed", "variant", "task_id", "horizon", "n" (samples), "c" (correct)};
- paired comparisons "A-B": the per-task difference of pass rates on the tasks both were
  evaluated on, with a paired bootstrap interval over tasks (prmfast.eval.paired_bootstrap),
  per seed and pooled (each task's difference averaged over the seeds that have both);
- the claims of issue 17's targets, each with the numbers it was decided on, so that a table
  says plainly which of the paper's findings hold on this run and which do not.
- where one run's changes land against another's (outcome_shift): the test tasks bucketed by the
  SFT policy's correct count in an independent evaluation (scripts/compare_tables.py).

Everything here is recomputable from per_task.jsonl and the PRM's eval.json files alone.
"""
from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable

from prmfast.eval import paired_bootstrap

LONG_HORIZON = 6                 # "long horizon": tasks of 6+ steps (the report's "long" bucket)
ROW_KEYS = ("seed", "variant", "task_id", "horizon", "n", "c")
# (A, B, tasks): the comparisons a Table 1 reports; tasks "all" or "long" (LONG_HORIZON+ steps)
COMPARISONS = (
    ("sparse", "sft", "all"), ("both", "sft", "all"), ("both", "sft", "long"),
    ("oracle", "sparse", "all"), ("oracle", "sparse", "long"),
    ("both", "sparse", "all"), ("both", "sparse", "long"),
    ("dense", "sparse", "long"), ("valueinit", "sparse", "long"),
    ("partial", "sparse", "long"),
)
# issue 17's targets: minimum gains and the PRM's ranking floor
MIN_GAIN_BOTH_VS_SFT = 0.05
MIN_GAIN_ORACLE_VS_SPARSE_LONG = 0.03
MIN_WITHIN_TASK_AUC = 0.70
MIN_TASKS, MIN_SAMPLES, MIN_SEEDS = 500, 10, 3
# outcome_shift's buckets of a task's correct count c of n samples
OUTCOME_BUCKETS = ("none", "under half", "half or more", "all")


def per_task_rows(seed: int, variant: str, raw: dict) -> list[dict]:
    """Rows of one evaluation: raw is prmfast.eval.evaluate_policy's result (its "tasks")."""
    if "tasks" not in raw:
        raise ValueError(f"no per-task results in the evaluation of {variant}/seed{seed} "
                         f"(an evaluation cache written before they were kept: delete it)")
    return [{"seed": int(seed), "variant": variant, "task_id": t["task_id"],
             "horizon": t["horizon"], "n": len(t["passed"]), "c": int(sum(t["passed"]))}
            for t in raw["tasks"]]


def check_rows(rows: Iterable[dict]) -> list[dict]:
    """The rows, each checked against the per_task.jsonl schema (ValueError naming the row);
    a (seed, variant, task_id) given twice is refused too."""
    rows, seen = list(rows), set()
    for i, row in enumerate(rows):
        if set(row) != set(ROW_KEYS):
            raise ValueError(f"row {i}: keys {sorted(row)}, expected {sorted(ROW_KEYS)}")
        n, c = row["n"], row["c"]
        if not (isinstance(n, int) and isinstance(c, int) and 0 <= c <= n and n > 0):
            raise ValueError(f"row {i}: need integers 0 <= c <= n and n > 0, got n={n!r} c={c!r}")
        if row["horizon"] is not None and not isinstance(row["horizon"], int):
            raise ValueError(f"row {i}: horizon must be an integer or null, got {row['horizon']!r}")
        key = (row["seed"], row["variant"], row["task_id"])
        if key in seen:
            raise ValueError(f"row {i}: {key} appears twice")
        seen.add(key)
    return rows


def _rates(rows: list[dict], tasks: str) -> dict[tuple[int, str], dict[str, float]]:
    """{(seed, variant): {task_id: pass rate}} over the selected tasks ("all" or "long")."""
    if tasks not in ("all", "long"):
        raise ValueError(f"tasks must be 'all' or 'long', got {tasks!r}")
    out: dict[tuple[int, str], dict[str, float]] = defaultdict(dict)
    for r in rows:
        if tasks == "long" and (r["horizon"] is None or r["horizon"] < LONG_HORIZON):
            continue
        out[(r["seed"], r["variant"])][r["task_id"]] = r["c"] / r["n"]
    return out


def compare(rows: list[dict], a: str, b: str, tasks: str = "all", *, n_boot: int = 10_000,
            seed: int = 0) -> dict | None:
    """Paired comparison A - B: {"per_seed": {seed: interval}, "pooled": interval, "seeds"};
    an interval is paired_bootstrap's {"mean", "low", "high", "n"} over tasks. Pooled: each task
    present for both in every such seed contributes its difference averaged over those seeds.
    None when no seed has both variants."""
    rates = _rates(rows, tasks)
    seeds = sorted({s for s, v in rates if v == a} & {s for s, v in rates if v == b})
    per_seed, diffs = {}, []
    for s in seeds:
        common = sorted(rates[(s, a)].keys() & rates[(s, b)].keys())
        if common:
            d = [rates[(s, a)][t] - rates[(s, b)][t] for t in common]
            per_seed[s] = paired_bootstrap(d, n_boot=n_boot, seed=seed)
            diffs.append(dict(zip(common, d)))
    if not per_seed:
        return None
    shared = sorted(set.intersection(*(set(d) for d in diffs)))
    pooled = (paired_bootstrap([sum(d[t] for d in diffs) / len(diffs) for t in shared],
                               n_boot=n_boot, seed=seed) if shared else None)
    return {"per_seed": per_seed, "pooled": pooled, "seeds": sorted(per_seed)}


def pass_at_1(rows: list[dict]) -> dict[str, dict]:
    """{variant: {"per_seed": {seed: pass@1}, "long": {seed: pass@1 on long tasks}}}: the mean
    over tasks of each task's pass rate (tasks weigh equally, as in evaluate_policy)."""
    out: dict[str, dict] = {}
    for tasks, key in (("all", "per_seed"), ("long", "long")):
        for (s, v), per_task in sorted(_rates(rows, tasks).items()):
            if per_task:
                out.setdefault(v, {"per_seed": {}, "long": {}})[key][s] = (
                    sum(per_task.values()) / len(per_task))
    return out


def outcome_bucket(c: int, n: int) -> str:
    """Which of OUTCOME_BUCKETS c correct samples of n fall in."""
    return ("none" if c == 0 else "all" if c == n else
            "under half" if 2 * c < n else "half or more")


def outcome_shift(first: list[dict], second: list[dict], variant: str,
                  base: str = "sft") -> dict[str, dict]:
    """Where a variant's changes land. Each (seed, task) is bucketed by `base`'s correct count in
    `first`, an evaluation independent of `second` (so that regression to the mean shows as the
    change of base evaluated again, not as an effect); per bucket of OUTCOME_BUCKETS: {"pairs",
    "change" (mean pass rate of `variant` in `second` minus base's in `first`), "to_none",
    "to_all" (pairs where `variant` ends with none / all samples correct)}. Pairs missing from
    either side are left out."""
    base_rows = {(r["seed"], r["task_id"]): r for r in check_rows(first) if r["variant"] == base}
    out = {b: {"pairs": 0, "change": 0.0, "to_none": 0, "to_all": 0} for b in OUTCOME_BUCKETS}
    for r in check_rows(second):
        b_row = base_rows.get((r["seed"], r["task_id"]))
        if r["variant"] != variant or b_row is None:
            continue
        entry = out[outcome_bucket(b_row["c"], b_row["n"])]
        entry["pairs"] += 1
        entry["change"] += r["c"] / r["n"] - b_row["c"] / b_row["n"]
        entry["to_none"] += r["c"] == 0
        entry["to_all"] += r["c"] == r["n"]
    for entry in out.values():
        entry["change"] = entry["change"] / entry["pairs"] if entry["pairs"] else None
    return out


def claims(rows: list[dict], comparisons: dict[str, dict | None],
           prm: dict[int, dict]) -> list[dict]:
    """Each target of issue 17 as {"claim", "holds" (True/False/None: not measured), "why"}.
    comparisons: {"A-B:tasks": compare(...)}; prm: {seed: the PRM's eval.json}."""
    out = []
    both = comparisons.get("both-sft:all")
    out.append({"claim": f"1. RL + both beats SFT by >= {MIN_GAIN_BOTH_VS_SFT} pass@1, "
                         "interval above 0, in every seed",
                "holds": None if both is None else
                all(ci["mean"] >= MIN_GAIN_BOTH_VS_SFT and ci["low"] > 0
                    for ci in both["per_seed"].values()),
                "why": "not measured" if both is None else
                "; ".join(f"seed {s}: {format_interval(ci)}"
                          for s, ci in both["per_seed"].items())})
    out.append(_pooled_claim(comparisons.get("sparse-sft:all"), 0.0,
                             "1b. RL sparse beats SFT, pooled interval above 0"))
    out.append(_pooled_claim(comparisons.get("oracle-sparse:long"), MIN_GAIN_ORACLE_VS_SPARSE_LONG,
                             f"2. oracle dense beats sparse on long horizons by >= "
                             f"{MIN_GAIN_ORACLE_VS_SPARSE_LONG}, interval above 0"))
    aucs = {s: _within_task_auc(e) for s, e in prm.items()}
    measured = {s: a for s, a in aucs.items() if a is not None and not math.isnan(a)}
    out.append({"claim": f"3. PRM within-task AUC >= {MIN_WITHIN_TASK_AUC} in every seed",
                "holds": None if not measured else
                len(measured) == len(aucs) and min(measured.values()) >= MIN_WITHIN_TASK_AUC,
                "why": "; ".join(f"seed {s}: {a if a is None else round(a, 3)}"
                                 for s, a in aucs.items()) or "not measured"})
    rerank = {s: e.get("test", {}).get("rerank_ci95", {}).get("prm_min-majority")
              for s, e in prm.items()}
    out.append({"claim": "3b. best-of-N PRM reranking beats a majority vote (interval above 0, "
                         "every seed)",
                "holds": None if not rerank or None in rerank.values() else
                all(ci[0] > 0 for ci in rerank.values()),
                "why": "; ".join(f"seed {s}: prm_min - majority {ci}" for s, ci in rerank.items())
                or "not measured"})
    out.append(_pooled_claim(comparisons.get("both-sparse:long"), 0.0,
                             "4. RL + both beats sparse on long horizons, interval above 0"))
    per_eval = defaultdict(int)
    for r in rows:
        per_eval[(r["seed"], r["variant"])] += 1
    seeds = sorted({r["seed"] for r in rows})
    min_tasks = min(per_eval.values(), default=0)
    min_n = min((r["n"] for r in rows), default=0)
    out.append({"claim": f"5. power: >= {MIN_TASKS} test tasks x {MIN_SAMPLES} samples, "
                         f">= {MIN_SEEDS} seeds", "holds": bool(rows) and
                min_tasks >= MIN_TASKS and min_n >= MIN_SAMPLES and len(seeds) >= MIN_SEEDS,
                "why": f"{min_tasks} tasks per evaluation (fewest), {min_n} samples per task "
                       f"(fewest), seeds {seeds}"})
    return out


def format_interval(ci: dict) -> str:
    """A paired_bootstrap interval as "+0.012 [-0.003, +0.027] (n=500)"."""
    return f"{ci['mean']:+.3f} [{ci['low']:+.3f}, {ci['high']:+.3f}] (n={ci['n']})"


def _pooled_claim(comparison: dict | None, min_gain: float, claim: str) -> dict:
    """A claim on a comparison's pooled interval: mean >= min_gain and interval above 0."""
    pooled = None if comparison is None else comparison["pooled"]
    if pooled is None:
        return {"claim": claim, "holds": None, "why": "not measured"}
    return {"claim": claim, "holds": pooled["mean"] >= min_gain and pooled["low"] > 0,
            "why": f"pooled over seeds {comparison['seeds']}: {format_interval(pooled)}"}


def _within_task_auc(prm_eval: dict) -> float | None:
    """The PRM's within-task AUC of PRM-min on test samples, from its eval.json."""
    return prm_eval.get("test", {}).get("within_task", {}).get("min", {}).get("auc")


def oracle_share(comparisons: dict[str, dict | None], tasks: str = "long") -> float | None:
    """The share of the oracle's gain over sparse that RL + both captures (pooled means):
    (both - sparse) / (oracle - sparse); None when not measured or the oracle gained nothing."""
    both, oracle = comparisons.get(f"both-sparse:{tasks}"), comparisons.get(f"oracle-sparse:{tasks}")
    if not both or not oracle or not both["pooled"] or not oracle["pooled"]:
        return None
    gain = oracle["pooled"]["mean"]
    return None if gain <= 0 else both["pooled"]["mean"] / gain


def table(rows: list[dict], prm: dict[int, dict], *, n_boot: int = 10_000) -> dict:
    """summary.json: pass@1 per variant and seed, every comparison of COMPARISONS whose
    variants were run, the claims, the oracle share and the PRM's within-task AUC per seed."""
    rows = check_rows(rows)
    variants = {r["variant"] for r in rows}
    comparisons = {f"{a}-{b}:{tasks}": compare(rows, a, b, tasks, n_boot=n_boot)
                   for a, b, tasks in COMPARISONS if a in variants and b in variants}
    return {"pass@1": pass_at_1(rows), "comparisons": comparisons,
            "claims": claims(rows, comparisons, prm),
            "oracle_share_long": oracle_share(comparisons),
            "prm_within_task_auc": {s: _within_task_auc(e) for s, e in prm.items()}}
