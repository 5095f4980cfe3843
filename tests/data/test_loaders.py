"""Benchmark loaders: counts, test specs, bad data, references through the sandbox."""
import gzip
import json

import pytest

from prmfast.data import DataError, load_tasks, validate_tasks
from prmfast.data.paths import data_dir
from prmfast.sandbox.specs import AssertTests, CallTests, StdioTests

pytestmark = pytest.mark.skipif(not (data_dir() / "humaneval").is_dir(), reason="no shared data")


@pytest.mark.parametrize("name, kw, count", [
    ("humaneval", {}, 164),
    ("mbpp", {"split": "all"}, 974),
    ("mbpp", {"split": "all", "variant": "sanitized"}, 427),
    ("mbpp", {}, 500),
    ("livecodebench", {}, 1054),  # 1055 rows; abc350_c has no public test
])
def test_counts(name, kw, count):
    tasks = load_tasks(name, **kw)
    assert len(tasks) == count and len({t.task_id for t in tasks}) == count


def test_livecodebench_specs_are_well_formed():
    tasks = load_tasks("livecodebench")
    stdio = [t for t in tasks if isinstance(t.tests, StdioTests)]
    calls = [t for t in tasks if isinstance(t.tests, CallTests)]
    assert len(stdio) + len(calls) == len(tasks) and len(stdio) > 500 and len(calls) > 400
    assert all(t.meta["public_tests_only"] for t in tasks)
    for t in stdio[:50]:
        assert t.tests.cases and all(isinstance(i, str) and isinstance(o, str) for i, o in t.tests.cases)
    for t in calls[:50]:
        assert t.entry_point == t.tests.entry_point and f"def {t.entry_point}(self" in t.prompt
        assert f"Solution().{t.entry_point}(" in t.meta["harness"]
        assert all(isinstance(args, list) for args, _ in t.tests.cases)


def test_malformed_line_names_file_and_line(tmp_path):
    rows = [json.dumps({"task_id": "a", "prompt": "", "entry_point": "f",
                        "canonical_solution": "", "test": ""})] * 2
    bad = tmp_path / "HumanEval.jsonl.gz"
    with gzip.open(bad, "wt") as f:
        f.write("\n".join(rows + ["{not json"]) + "\n")
    with pytest.raises(DataError, match=r"HumanEval\.jsonl\.gz:3: malformed JSON"):
        load_tasks("humaneval", path=bad)
    missing = tmp_path / "humaneval" / "HumanEval.jsonl.gz"
    missing.parent.mkdir()
    with gzip.open(missing, "wt") as f:
        f.write(rows[0] + "\n" + json.dumps({"task_id": "b"}) + "\n")
    with pytest.raises(DataError, match=r":2: missing field\(s\) prompt"):
        load_tasks("humaneval", path=tmp_path)  # a folder holding the standard layout


def test_shared_folder_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("PRMFAST_SHARED", str(tmp_path))
    with pytest.raises(DataError, match="not found"):
        load_tasks("humaneval")


def test_unknown_names_and_splits():
    with pytest.raises(ValueError, match="unknown dataset"):
        load_tasks("apps")
    with pytest.raises(ValueError, match="split"):
        load_tasks("humaneval", split="train")


def test_failing_reference_is_reported(sandbox):
    task = load_tasks("humaneval")[0]
    task.reference = "    return not True\n"
    report = validate_tasks([task], sandbox)
    assert not report.ok and report.failures[0].task_id == "HumanEval/0"


@pytest.mark.slow
def test_humaneval_references_pass(sandbox):
    report = validate_tasks(load_tasks("humaneval"), sandbox)
    assert report.passed == 164, str(report)


@pytest.mark.slow
@pytest.mark.parametrize("variant, known", [("sanitized", {"mbpp/123"}),
                                            ("full", {"mbpp/123", "mbpp/367", "mbpp/927"})])
def test_mbpp_references_pass_except_known(sandbox, variant, known):
    report = validate_tasks(load_tasks("mbpp", split="all", variant=variant), sandbox)
    assert {f.task_id for f in report.failures} <= known, str(report)


@pytest.mark.slow
@pytest.mark.parametrize("name, count", [("humanevalplus", 164), ("mbppplus", 378)])
def test_evalplus_canonical_solutions_pass(sandbox, name, count):
    tasks = load_tasks(name)
    assert len(tasks) == count
    assert all(t.tests.cases for t in tasks if isinstance(t.tests, CallTests))
    assert sum(isinstance(t.tests, AssertTests) for t in tasks) <= 1  # Mbpp/124: complex inputs
    report = validate_tasks(tasks, sandbox)
    assert report.ok, str(report)
