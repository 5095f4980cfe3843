"""Data selection for PRM training: which labelled responses to train on.

Applied to labels.jsonl records (dicts). `n_good` is the number of code lines labelled +1.
  full                every labelled response (worse than no PRM in the paper)
  revised_only        failed, and binary search found a recoverable non-empty prefix: at least one
                      code line before m* (with no comment lines: m* > 1; the paper's best)
  failed_only         every failed response (includes "unrecoverable from the start", m* = 0)
  passed_and_revised  passing responses plus revised_only
"""
from __future__ import annotations

from collections.abc import Callable


def _revised(rec: dict) -> bool:
    return not rec["passed"] and rec["n_good"] > 0


SELECTIONS: dict[str, Callable[[dict], bool]] = {
    "full": lambda rec: True,
    "revised_only": _revised,
    "failed_only": lambda rec: not rec["passed"],
    "passed_and_revised": lambda rec: rec["passed"] or _revised(rec),
}


def keeps_passing(mode: str) -> bool:
    """Whether `mode` trains on any passing response. Without one, every training response's
    last code line is labelled -1, so the PRM learns to score every program's last line low."""
    return SELECTIONS[mode]({"passed": True, "n_good": 1})


def select(records: list[dict], mode: str) -> list[dict]:
    if mode not in SELECTIONS:
        raise ValueError(f"unknown selection {mode!r}; choose one of {sorted(SELECTIONS)}")
    return [rec for rec in records if SELECTIONS[mode](rec)]
