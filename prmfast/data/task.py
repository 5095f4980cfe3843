"""The Task type shared by every dataset (DESIGN 3.3, docs/contracts.md)."""
from __future__ import annotations

from dataclasses import dataclass, field

from prmfast.sandbox.specs import AssertTests, CallTests, StdioTests


@dataclass
class Task:
    """One problem. `prompt` is completion style (it ends where the code continues);
    `reference` is a reference *response* (what follows the prompt), None when the dataset has
    none. meta keys used across modules: "horizon" (synthetic), "preamble" (code a chat answer
    needs before it, e.g. imports), "harness" (code appended after any program, e.g. a LeetCode
    method shim), "public_tests_only" (LiveCodeBench)."""
    task_id: str
    prompt: str
    tests: AssertTests | StdioTests | CallTests
    entry_point: str | None
    reference: str | None
    meta: dict = field(default_factory=dict)


def horizon_bucket(horizon: int) -> str:
    """"short" (1-3 steps), "medium" (4-5) or "long" (6+)."""
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    return "short" if horizon <= 3 else "medium" if horizon <= 5 else "long"
