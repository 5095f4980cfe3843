"""Job and result types of the sandbox (DESIGN 3.2). Plain data: no execution here."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class AssertTests:
    """Run `code` after the program in the same namespace; if entry_point is given and `code`
    defines check(), call check(<entry_point function>). Passes iff nothing raises."""
    code: str
    entry_point: str | None = None


@dataclass(frozen=True)
class StdioTests:
    """Run the program once per (stdin, expected stdout) case; compare after normalising
    trailing whitespace on each line and trailing newlines."""
    cases: list[tuple[str, str]]


@dataclass(frozen=True)
class CallTests:
    """Call entry_point(*args) per (args, expected) case; compare by type and value (floats
    within atol, containers element-wise)."""
    entry_point: str
    cases: list[tuple[list, Any]]
    atol: float = 0.0


TestSpec = AssertTests | StdioTests | CallTests


@dataclass
class Job:
    program: str
    tests: TestSpec
    timeout_s: float | None = None
    memory_mb: int | None = None


STATUSES = ("passed", "failed", "error", "timeout", "memory", "crashed", "output_limit")


@dataclass
class Result:
    passed: bool
    status: str
    tests: list[bool] = field(default_factory=list)
    first_failure: int | None = None
    stderr: str = ""
    wall_s: float = 0.0
