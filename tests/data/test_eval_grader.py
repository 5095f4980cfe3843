"""`python -m prmfast.eval` records the grader (the official one) in settings.json, and does not
resume a folder of a graded benchmark whose results predate that record (compared strictly)."""
from __future__ import annotations

import json

import pytest

from prmfast.eval import benchmarks


@pytest.mark.parametrize("name, refused", [("mbppplus", True), ("livecodebench", True),
                                            ("humaneval", False), ("mbpp", False)])
def test_results_from_before_the_grader_setting(tmp_path, name, refused):
    args = benchmarks.parse_args(["--model", str(tmp_path / "m"), "--tasks", name])
    settings = benchmarks.eval_settings(args, "completion")
    assert settings.grader == "official"
    folder = tmp_path / name
    folder.mkdir()
    (folder / "results.jsonl").write_text(json.dumps({"task_id": "t"}) + "\n")
    benchmarks.check_settings(folder, settings)
    saved = json.loads((folder / "settings.json").read_text())
    assert saved["grader"] == "official"
    benchmarks.check_settings(folder, settings)  # a resume
    del saved["grader"]  # as an older version wrote it
    (folder / "settings.json").write_text(json.dumps(saved))
    if refused:
        with pytest.raises(benchmarks.EvalError, match='grader: "strict" -> "official"'):
            benchmarks.check_settings(folder, settings)
    else:  # judged by their asserts: the grader never changed their results
        benchmarks.check_settings(folder, settings)
