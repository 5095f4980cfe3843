"""Checking that a dataset's references pass their own tests (bad data is reported, not kept)."""
from __future__ import annotations

from dataclasses import dataclass, field

from prmfast.data.prompts import build_program
from prmfast.data.task import Task
from prmfast.sandbox.specs import Job


@dataclass
class Failure:
    task_id: str
    status: str
    stderr: str


@dataclass
class ValidationReport:
    """checked = tasks with a reference; failures lists every reference that did not pass."""
    total: int
    checked: int
    passed: int
    failures: list[Failure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def __str__(self) -> str:
        lines = [f"{self.passed}/{self.checked} references pass ({self.total} tasks)"]
        lines += [f"  {f.task_id}: {f.status} {f.stderr.strip()[-200:]}" for f in self.failures]
        return "\n".join(lines)


def validate_tasks(tasks: list[Task], sandbox, timeout_s: float | None = None) -> ValidationReport:
    """Run every reference (prompt + reference response) against its tests in `sandbox`."""
    checked = [t for t in tasks if t.reference is not None]
    jobs = [Job(build_program(t, t.reference), t.tests, timeout_s=timeout_s) for t in checked]
    results = sandbox.run(jobs) if jobs else []
    failures = [Failure(t.task_id, r.status, r.stderr) for t, r in zip(checked, results) if not r.passed]
    return ValidationReport(len(tasks), len(checked), len(checked) - len(failures), failures)
