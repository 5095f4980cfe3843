"""Reference solutions of real benchmarks pass; broken ones fail."""
import pytest

from prmfast.sandbox import AssertTests, Job

pytestmark = pytest.mark.slow


def humaneval_jobs(problems, body=None):
    return [Job(p["prompt"] + (p["canonical_solution"] if body is None else body),
                AssertTests(p["test"], entry_point=p["entry_point"])) for p in problems]


def test_humaneval_canonical_solutions_pass(sandbox, humaneval):
    results = sandbox.run(humaneval_jobs(humaneval))
    failed = [(p["task_id"], r.status, r.stderr[-200:]) for p, r in zip(humaneval, results) if not r.passed]
    assert len(results) == 164 and not failed


def test_humaneval_wrong_bodies_fail(sandbox, humaneval):
    results = sandbox.run(humaneval_jobs(humaneval, body="    return None\n"))
    assert not [p["task_id"] for p, r in zip(humaneval, results) if r.passed]
    assert {r.status for r in results} <= {"failed", "error"}


def test_mbpp_sanitized_references_pass(sandbox, mbpp):
    jobs = [Job(t["code"], AssertTests("\n".join(t["test_imports"] + t["test_list"])),
                timeout_s=20.0 if t["task_id"] == 123 else None) for t in mbpp]
    results = sandbox.run(jobs)
    failed = [(t["task_id"], r.status, r.stderr[-200:]) for t, r in zip(mbpp, results) if not r.passed]
    assert len(failed) <= 1 and all(task_id == 123 for task_id, *_ in failed), failed
    assert all(len(r.tests) == len(t["test_list"]) for t, r in zip(mbpp, results))
