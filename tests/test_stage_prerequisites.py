"""Stages refuse to run on an unfinished earlier stage (a StageError naming the stage to run),
and the report needs results to report."""
import json

import pytest

from prmfast import report
from prmfast.config import load_config
from prmfast.data import DataError, Task
from prmfast.errors import StageError
from prmfast.labeling import collect
from prmfast.prm import stage as prm
from prmfast.sandbox.specs import AssertTests


@pytest.fixture
def cfg():
    return load_config("smoke")


def test_collect_needs_a_finished_rl_baseline_on_cpu(tmp_path, cfg):
    (tmp_path / "rl_baseline" / "ckpt_0001").mkdir(parents=True)    # interrupted: 1 of 3
    with pytest.raises(StageError, match=r"rl_baseline/DONE is missing \(1 checkpoint\(s\) so "
                                         r"far\): run the rl_baseline stage first, or finish it"):
        collect.check_prerequisites(cfg, tmp_path)
    (tmp_path / "rl_baseline" / "DONE").write_text("ok\n")
    collect.check_prerequisites(cfg, tmp_path)


def test_collect_refuses_duplicate_task_ids_on_cpu(tmp_path, cfg):
    (tmp_path / "rl_baseline" / "ckpt_0001").mkdir(parents=True)
    task = Task("t", "def f():\n", AssertTests(""), "f", None, {"source": "x.jsonl:1"})
    other = Task("t", "def g():\n", AssertTests(""), "g", None, {"source": "x.jsonl:2"})
    with pytest.raises(DataError, match=r"duplicate task id 't' \(x\.jsonl:1 and x\.jsonl:2\)"):
        collect.collect(cfg, tmp_path, [task, other])


def test_prm_needs_a_finished_collect_on_cpu(tmp_path, cfg):
    (tmp_path / "prm_data").mkdir()
    (tmp_path / "prm_data" / "labels.jsonl").write_text("{}\n")       # interrupted collect
    with pytest.raises(StageError, match=r"prm_data/DONE is missing: run the collect stage"):
        prm.check_prerequisites(cfg, tmp_path)
    (tmp_path / "prm_data" / "DONE").write_text("ok\n")
    with pytest.raises(StageError, match="sft stage"):
        prm.check_prerequisites(cfg, tmp_path)


def test_report_stage_needs_eval_json_on_cpu(tmp_path, cfg):
    (tmp_path / "sft").mkdir()
    (tmp_path / "sft" / "eval.json").write_text(json.dumps({"pass@1": 0.25}))
    with pytest.raises(StageError, match=r"eval\.json is missing: run the eval stage first"):
        report.run_report(cfg, tmp_path)
    assert not (tmp_path / "report.md").exists()


def test_partial_report_lists_what_is_missing_and_needs_something_on_cpu(tmp_path, capsys):
    with pytest.raises(StageError, match="nothing to report"):
        report.write_report(tmp_path)
    with pytest.raises(SystemExit, match="error: nothing to report"):
        report.main([str(tmp_path), "--write"])
    (tmp_path / "sft").mkdir()
    (tmp_path / "sft" / "eval.json").write_text(json.dumps({"pass@1": 0.25}))
    text = report.write_report(tmp_path).read_text()
    assert "Partial run: no results yet from the rl_*, collect, prm, eval stage(s)." in text
    assert "**sft**: pass@1: 0.250" in text
