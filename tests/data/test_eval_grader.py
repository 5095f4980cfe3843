"""`python -m prmfast.eval` records the grader (the official one) in settings.json, and does not
resume a folder whose results predate that record: they were compared strictly."""
from __future__ import annotations

import json

import pytest

from prmfast import bench_eval


def test_results_from_before_the_grader_setting_are_not_resumed(tmp_path):
    args = bench_eval.parse_args(["--model", str(tmp_path / "m"), "--tasks", "mbppplus"])
    settings = bench_eval.eval_settings(args, "completion")
    assert settings.grader == "official"
    (tmp_path / "results.jsonl").write_text(json.dumps({"task_id": "Mbpp/2"}) + "\n")
    bench_eval.check_settings(tmp_path, settings)
    saved = json.loads((tmp_path / "settings.json").read_text())
    assert saved["grader"] == "official"
    bench_eval.check_settings(tmp_path, settings)  # a resume
    del saved["grader"]  # as an older version wrote it
    (tmp_path / "settings.json").write_text(json.dumps(saved))
    with pytest.raises(bench_eval.EvalError, match='grader: "strict" -> "official"'):
        bench_eval.check_settings(tmp_path, settings)
