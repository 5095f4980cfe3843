"""Checking that a dataset's references pass their own tests (bad data is reported, not kept)."""
from __future__ import annotations

from dataclasses import dataclass, field

from prmfast.data.jsonl import DataError
from prmfast.data.prompts import build_program
from prmfast.data.task import Task
from prmfast.sandbox.specs import Job


@dataclass
class Failure:
    """known: the dataset's documented reason (meta["known_failure"]), None if unexpected."""
    task_id: str
    status: str
    stderr: str
    known: str | None = None


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

    @property
    def unexpected(self) -> list[Failure]:
        return [f for f in self.failures if f.known is None]

    def __str__(self) -> str:
        lines = [f"{self.passed}/{self.checked} references pass ({self.total} tasks)"]
        lines += [f"  {f.task_id}: {f.status} {f.stderr.strip()[-200:]}"
                  + (f" (known: {f.known})" if f.known else "") for f in self.failures]
        return "\n".join(lines)


def job_timeout(task: Task, timeout_s: float) -> float:
    """`timeout_s`, raised to the task's own budget (meta["time_limit_s"]) when that is larger."""
    return max(timeout_s, task.meta.get("time_limit_s", 0.0))


def validate_tasks(tasks: list[Task], sandbox, timeout_s: float | None = None) -> ValidationReport:
    """Run every reference (prompt + reference response) against its tests in `sandbox`, each
    job with job_timeout(task, timeout_s or the sandbox's timeout)."""
    checked = [t for t in tasks if t.reference is not None]
    base = timeout_s or sandbox.timeout_s
    jobs = [Job(build_program(t, t.reference), t.tests, timeout_s=job_timeout(t, base)) for t in checked]
    results = sandbox.run(jobs) if jobs else []
    failures = [Failure(t.task_id, r.status, r.stderr, t.meta.get("known_failure"))
                for t, r in zip(checked, results) if not r.passed]
    return ValidationReport(len(tasks), len(checked), len(checked) - len(failures), failures)


def drop_failing_references(tasks: list[Task], sandbox, what: str) -> list[Task]:
    """`tasks` without those whose reference fails its own tests (bad data is reported, not
    used): prints one warning line with the count and a few task ids (`what` names the tasks,
    e.g. "train-split"); DataError when every reference fails (broken tests or references)."""
    report = validate_tasks(tasks, sandbox)
    if report.ok:
        return tasks
    bad = {f.task_id for f in report.failures}
    if report.passed == 0:
        first = next(t for t in tasks if t.task_id in bad)
        raise DataError(f"{first.meta.get('source', first.task_id)}: all {report.checked} "
                        f"{what} references fail their own tests (e.g. {first.task_id}: "
                        f"{report.failures[0].status}); the dataset's tests or references are "
                        "broken")
    ids = ", ".join(f.task_id for f in report.failures[:5])
    print(f"warning: {len(bad)} of {report.checked} {what} references fail their own tests "
          f"and are left out: {ids}{', ...' if len(bad) > 5 else ''}")
    return [t for t in tasks if t.task_id not in bad]
