"""The Task type shared by every dataset (docs/design.md, "Tasks, lines and labels";
docs/contracts.md)."""
from __future__ import annotations

from dataclasses import dataclass, field

from prmfast.data.jsonl import DataError
from prmfast.sandbox.specs import AssertTests, CallTests, StdioTests


@dataclass
class Task:
    """One problem. `prompt` is completion style (it ends where the code continues);
    `reference` is a reference *response* (what follows the prompt), None when the dataset has
    none. meta keys used across modules: "horizon" (synthetic), "preamble" (code a chat answer
    needs before it, e.g. imports), "harness" (code appended after any program, e.g. a LeetCode
    method shim), "public_tests_only" (LiveCodeBench), "source" (the dataset file and line it was
    read from)."""
    task_id: str
    prompt: str
    tests: AssertTests | StdioTests | CallTests
    entry_point: str | None
    reference: str | None
    meta: dict = field(default_factory=dict)


def tasks_by_id(tasks: list[Task]) -> dict[str, Task]:
    """The tasks keyed by task_id; an id given twice raises DataError naming it and where both
    come from (results are kept per id, so one task would be judged by the other's tests)."""
    by_id: dict[str, Task] = {}
    for task in tasks:
        if task.task_id in by_id:
            where = [t.meta["source"] for t in (by_id[task.task_id], task) if "source" in t.meta]
            raise DataError(f"duplicate task id {task.task_id!r}"
                            + (f" ({' and '.join(where)})" if where else "")
                            + ": task ids must be unique")
        by_id[task.task_id] = task
    return by_id


GRADER_CHOICES = ("official", "strict")


def sandbox_grader(choice: str, official: str) -> str:
    """The sandbox grader (prmfast.sandbox.compare.GRADERS) that a load's `grader` choice
    means: "official" is the dataset's own (`official`), "strict" exact type and value."""
    if choice not in GRADER_CHOICES:
        raise ValueError(f"grader must be one of {GRADER_CHOICES}, got {choice!r}")
    return official if choice == "official" else "strict"


def horizon_bucket(horizon: int) -> str:
    """"short" (1-3 steps), "medium" (4-5) or "long" (6+)."""
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    return "short" if horizon <= 3 else "medium" if horizon <= 5 else "long"
