"""Label quality: binary search vs an exhaustive scan vs the synthetic oracle, and the effect of K.

Input per response: first_pass[p] for every search point p < P, the index of the first passing
completion among K_max sampled from prefix p (None if none passed), from one scan at the largest
K. Best-of-k for any k <= K_max follows exactly (recoverable iff first_pass < k), and so does the
cost of each probe under the wave schedule (probe.executions_for). Binary search is replayed on
the same outcomes, so its disagreements with the scan come only from non-monotone outcomes, and
the cost ratio compares the two algorithms on identical samples.
"""
from __future__ import annotations

from collections.abc import Sequence

from prmfast.labeling.probe import executions_for
from prmfast.labeling.search import (binary_search, is_monotone, labels_from_line, m_star,
                                     scan_first_bad)


def compare_at_k(first_pass: Sequence[int | None], k: int, first_wave: int) -> dict:
    """Scan and binary search for one failing response at best-of-k."""
    outcomes = [fp is not None and fp < k for fp in first_pass] + [False]
    first_bad, probed = binary_search(len(first_pass), outcomes.__getitem__)
    return {"scan_first_bad": scan_first_bad(outcomes), "binary_first_bad": first_bad,
            "monotone": is_monotone(outcomes), "binary_probes": len(probed),
            "scan_probes": len(first_pass),
            "binary_executions": sum(executions_for(first_pass[p], k, first_wave) for p in probed),
            "scan_executions": sum(executions_for(fp, k, first_wave) for fp in first_pass)}


def first_bad_line(is_comment: Sequence[bool], m: int) -> int:
    """m* with "unrecoverable from the start" (0) read as the first code line: the 1-based first
    line labelled -1, the quantity comparable with the oracle's first error."""
    return m or next((i + 1 for i, c in enumerate(is_comment) if not c), 0)


def _label_accuracy(pred: list[int], truth: list[int]) -> tuple[int, int]:
    pairs = [(a, b) for a, b in zip(pred, truth) if b != 0]
    return sum(a == b for a, b in pairs), len(pairs)


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def summarize_k(rows: Sequence[dict], is_comment: Sequence[Sequence[bool]],
                oracle_m_star: Sequence[int | None]) -> dict:
    """Aggregate compare_at_k rows (one per response) against each other and the oracle
    (oracle_m_star: 1-based first error line, None where the oracle has none)."""
    out = {"responses": len(rows),
           "binary_vs_scan_agreement": _mean([r["binary_first_bad"] == r["scan_first_bad"]
                                              for r in rows]),
           "monotonicity_violation_rate": _mean([not r["monotone"] for r in rows]),
           "probes_per_response": {"binary": _mean([r["binary_probes"] for r in rows]),
                                   "scan": _mean([r["scan_probes"] for r in rows])},
           "executions_per_response": {"binary": _mean([r["binary_executions"] for r in rows]),
                                       "scan": _mean([r["scan_executions"] for r in rows])}}
    b, s = out["executions_per_response"]["binary"], out["executions_per_response"]["scan"]
    out["scan_over_binary_executions"] = s / b if b else float("nan")
    for name in ("binary", "scan"):
        exact, near, hit, seen, n = 0, 0, 0, 0, 0
        for r, com, om in zip(rows, is_comment, oracle_m_star):
            if om is None:
                continue
            got = first_bad_line(com, m_star(com, r[f"{name}_first_bad"]))
            n += 1
            exact += got == om
            near += abs(got - om) <= 1
            h, t = _label_accuracy(labels_from_line(com, got), labels_from_line(com, om))
            hit, seen = hit + h, seen + t
        out[f"{name}_vs_oracle"] = {"m_star_exact": exact / n if n else float("nan"),
                                    "m_star_within_one": near / n if n else float("nan"),
                                    "line_label_accuracy": hit / seen if seen else float("nan"),
                                    "responses": n}
    return out


def collected_vs_oracle(records: Sequence[dict]) -> dict:
    """The collection's own labels (binary search at collect.k) against the oracle, on failed
    records with an oracle first error (records carry oracle_m_star)."""
    rows = [r for r in records if not r["passed"] and r.get("oracle_m_star") is not None]
    got = [first_bad_line(r["is_comment"], r["m_star"]) for r in rows]
    exact = [g == r["oracle_m_star"] for g, r in zip(got, rows)]
    near = [abs(g - r["oracle_m_star"]) <= 1 for g, r in zip(got, rows)]
    hit = seen = 0
    for r in rows:
        h, t = _label_accuracy(r["labels"], labels_from_line(r["is_comment"], r["oracle_m_star"]))
        hit, seen = hit + h, seen + t
    return {"responses": len(rows), "m_star_exact": _mean(exact), "m_star_within_one": _mean(near),
            "line_label_accuracy": hit / seen if seen else float("nan")}
