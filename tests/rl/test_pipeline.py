"""The whole pipeline on the smoke preset; resume after an interrupt in every stage; fail-fast
config and prerequisite errors."""
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from prmfast.config import load_config
from prmfast.errors import StageError
from prmfast.prm.metrics import ranking_metrics
from prmfast.rl.stage import check_rl_ready, run_rl, variant_name
from prmfast.runio import write_json
from tests.browser import Responses, load_page, needs_chromium

ROOT = Path(__file__).resolve().parents[2]


def train(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "prmfast.train", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """(run folder, the `all` process, its wall time): the whole smoke pipeline, run once."""
    run = tmp_path_factory.mktemp("smoke") / "run"
    start = time.perf_counter()
    proc = train("all", "--preset", "smoke", "--out", str(run))
    return run, proc, time.perf_counter() - start


@pytest.mark.slow
def test_smoke_pipeline_end_to_end(smoke_run, tmp_path):
    run, proc, wall = smoke_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "rl_prm:" in proc.stderr and "Loading weights" not in proc.stderr  # stage bars only
    for stage in ("sft", "rl_baseline", "prm_data", "prm", "rl_prm", "eval"):
        assert (run / stage / "DONE").exists(), stage
    assert len(list((run / "rl_baseline").glob("ckpt_[0-9]*"))) == 2
    for name in ("rl_baseline", "rl_prm"):      # the probe: before the first update and after
        probes = [json.loads(x) for x in (run / name / "probe.jsonl").read_text().splitlines()]
        assert [p["step"] for p in probes] == [0, 2], name
        assert all(0 <= p["train_pass@1"] <= 1 and 0 <= p["validation_pass@1"] <= 1
                   for p in probes)
    prm_test = json.loads((run / "prm" / "eval.json").read_text())["test"]
    scores = [json.loads(x) for x in (run / "prm" / "test_scores.jsonl").read_text().splitlines()]
    assert len(scores) == prm_test["rerank"]["problems"] * prm_test["rerank"]["n"]
    again = ranking_metrics([r["task_id"] for r in scores], [r["passed"] for r in scores],
                            [tuple(r["response_ids"]) for r in scores],
                            [r["scores"] for r in scores])   # the stored scores made eval.json's
    write_json(tmp_path / "again.json", again)                    # as eval.json (NaN: null)
    assert json.loads((tmp_path / "again.json").read_text()) == {k: prm_test[k] for k in again}
    ev = json.loads((run / "eval.json").read_text())
    assert set(ev["models"]) == {"sft", "rl_baseline", "rl_prm"}
    assert {"pass@1", "by_horizon", "by_length", "best_of_k"} <= set(ev["models"]["rl_prm"])
    rows = [json.loads(x) for x in (run / "rl_prm" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and rows[0]["time_prm_fwd"] > 0
    report = (run / "report.md").read_text()
    assert "pass@1" in report and "Step-time breakdown" in report and "within-task AUC" in report
    assert {p.name for p in (run / "plots").iterdir()} >= {"pass_by_horizon.png", "training.png",
                                                       "probe.png"}
    assert "![probe](plots/probe.png)" in report
    if os.getloadavg()[0] <= (os.cpu_count() or 1):      # the budget holds on an idle machine
        assert wall < 180, f"smoke pipeline took {wall:.0f}s (budget 180s)"
    # a rerun skips every stage
    start = time.perf_counter()
    assert train("all", "--preset", "smoke", "--out", str(run)).returncode == 0
    assert time.perf_counter() - start < 60


@pytest.mark.slow
@needs_chromium
def test_smoke_run_line_inspector_in_a_browser(smoke_run):
    """The report stage's DIR/inspect.html of a real run, loaded in chromium: test samples of
    every model, the collected responses with their binary-search labels and the last RL
    iteration's responses (DIR/rl_*/rollouts.jsonl) with per-line PPO advantages; a PRM score on
    every line."""
    run, proc, _ = smoke_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    cfg = load_config("smoke")
    rollouts = {name: [json.loads(x) for x in (run / name / "rollouts.jsonl").read_text()
                       .splitlines()] for name in ("rl_baseline", "rl_prm")}
    for rows in rollouts.values():
        assert len(rows) == cfg.rl.prompts_per_step * cfg.rl.samples_per_prompt
        for r in rows:
            assert r["step"] == cfg.rl.steps and bool(r["lines"]) == bool(r["response_ids"])
            assert len(r["advantage"]) == len(r["line_reward"]) == len(r["lines"])
    assert any(a != 0 for r in rollouts["rl_prm"] for a in r["advantage"])
    dom, console = load_page(run / "inspect.html")
    assert console == []
    boxes = Responses(dom).boxes
    kinds = Counter((b["attrs"]["data-model"], b["attrs"]["data-source"].split()[0])
                    for b in boxes)
    n_test = cfg.eval.inspect_tasks * cfg.eval.inspect_samples
    n_labelled = len((run / "prm_data" / "labels.jsonl").read_text().splitlines())
    assert kinds == {("sft", "test"): n_test, ("rl_baseline", "test"): n_test,
                     ("rl_prm", "test"): n_test, ("rl_baseline", "collect"): n_labelled,
                     ("rl_baseline", "RL"): len(rollouts["rl_baseline"]),
                     ("rl_prm", "RL"): len(rollouts["rl_prm"])}
    rl_lines = [[line.rstrip("\n") for line in r["lines"]] for r in rollouts["rl_baseline"]]
    assert [[cells[-1][1] for cells in b["rows"]] for b in boxes
            if b["attrs"]["data-source"].startswith("RL") and
            b["attrs"]["data-model"] == "rl_baseline"] == rl_lines
    for b in boxes:
        source = b["attrs"]["data-source"]
        for label, prm, _, advantage, _ in b["rows"]:
            assert (label[1] != "") == source.startswith("collect")
            assert (advantage[1] != "") == source.startswith("RL")
            assert prm[1] != ""
    oracle = [cells[2][1] for b in boxes if b["attrs"]["data-passed"] == "pass"
              for cells in b["rows"]]
    assert all(value in ("+1", "0") for value in oracle)   # a passing response has no error


@pytest.mark.slow
def test_frozen_pretrained_prm_stage_and_its_dense_reward(smoke_run, tmp_path):
    """prm.pretrained: the prm stage on a 'pretrained' backbone with its own tokenizer (a tiny
    model from config), then PPO with its dense reward; ValueInit from it is refused."""
    from prmfast.models import build_tiny_model, save_policy, train_tokenizer
    from prmfast.prm import is_frozen_prm

    run, proc, _ = smoke_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    texts = ["def f(xs):\n    return [x * 2 for x in xs if x > 1]\n", "# Write g:\n"] * 50
    backbone_tok = train_tokenizer(texts, 280)
    save_policy(build_tiny_model(backbone_tok, load_config("smoke").model), backbone_tok,
                tmp_path / "backbone")
    out = tmp_path / "frozen"
    out.mkdir()
    for name in ("tokenizer", "sft", "rl_baseline", "prm_data"):
        (out / name).symlink_to(run / name)
    pretrained = f"prm.pretrained={tmp_path / 'backbone'}"
    proc = train("prm", "--preset", "smoke", "--out", str(out), "--set", pretrained,
                 "--set", "prm.layer=1")                # the first of the backbone's 2 layers
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert is_frozen_prm(out / "prm" / "model")
    assert json.loads((out / "prm" / "model" / "frozen_prm.json").read_text())["layer"] == 1
    ev = json.loads((out / "prm" / "eval.json").read_text())
    assert ev["history"]["best_ridge"] in load_config("smoke").prm.ridge
    assert ev["test_samples"] > 0 and "rerank" in ev["test"]
    low, high = ev["test"]["rerank_ci95"]["prm_min-random"]
    margin = ev["test"]["rerank"]["prm_min"] - ev["test"]["rerank"]["random"]
    assert low - 1e-9 <= margin <= high + 1e-9
    for where in (ev["test"], ev["held_out"]):
        within = where["within_task"]["min"]
        assert (within["auc"] is None) == (within["pairs"] == 0)    # no pair: null, not NaN
        assert within["auc"] is None or 0 <= within["auc"] <= 1
    proc = train("rl_prm", "--preset", "smoke", "--out", str(out), "--set", pretrained)
    assert proc.returncode == 2 and "critic_init" in proc.stderr
    with pytest.raises(StageError, match="frozen pretrained backbone"):
        check_rl_ready(load_config("smoke"), out, "rl_prm")
    proc = train("rl", "--preset", "smoke", "--out", str(out), "--set", "rl.reward=dense")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(x) for x in (out / "rl_dense" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and rows[0]["time_prm_fwd"] > 0
    assert any(r["line_reward"] != 0 for r in rows)          # the PRM's scores reached PPO


# the sandbox call during which each stage is interrupted (after some work was saved); an RL
# stage makes two calls to probe before the first update (train and validation tasks), one per
# iteration, so its 4th call is in iteration 2
INTERRUPT_AT = {"sft": 1, "rl_baseline": 4, "collect": 2, "prm": 1, "rl_prm": 4, "eval": 2}


@pytest.mark.slow
def test_resume_after_an_interrupt_in_every_stage(tmp_path, monkeypatch):
    from prmfast import report, train as train_mod
    from prmfast.sandbox import Sandbox
    cfg = load_config("smoke")
    run = tmp_path / "run"
    real_run = Sandbox.run
    for stage in train_mod.PIPELINE:
        calls = {"n": 0}
        if stage == "report":
            monkeypatch.setattr(report, "_plot_series", _raise_interrupt)
        else:
            def interrupted(self, jobs, _stage=stage, _calls=calls):
                _calls["n"] += 1
                if _calls["n"] == INTERRUPT_AT[_stage]:
                    raise KeyboardInterrupt
                return real_run(self, jobs)
            monkeypatch.setattr(Sandbox, "run", interrupted)
        with pytest.raises(KeyboardInterrupt):
            train_mod.STAGES[stage](cfg, run)
        monkeypatch.undo()
        train_mod.STAGES[stage](cfg, run)
        assert stage == "report" or (run / _folder(stage) / "DONE").exists(), stage
    for name in ("rl_baseline", "rl_prm"):
        steps = [json.loads(x)["step"] for x in (run / name / "metrics.jsonl").read_text().splitlines()]
        assert steps == [1, 2], name
        probes = [json.loads(x)["step"] for x in (run / name / "probe.jsonl").read_text().splitlines()]
        assert probes == [0, 2], name
        assert not (run / name / "state").exists()
    assert (run / "report.md").exists()


def _folder(stage):
    return {"collect": "prm_data"}.get(stage, stage)


def _raise_interrupt(*args, **kwargs):
    raise KeyboardInterrupt


def test_config_errors_fail_fast(tmp_path):
    for bad, key in (("rl.reward=dens", "rl.reward"), ("rl.stepz=3", "rl.stepz"),
                     ("rl.dual_clip=0.5", "rl.dual_clip"), ("rl.steps=ten", "rl.steps")):
        start = time.perf_counter()
        proc = train("all", "--preset", "smoke", "--out", str(tmp_path / "x"), "--set", bad)
        assert proc.returncode == 2, (bad, proc.stderr[-2000:])
        assert key in proc.stderr
        assert time.perf_counter() - start < 30
        assert not (tmp_path / "x" / "sft").exists()


def test_missing_prerequisites_are_named_on_cpu(tmp_path):
    cfg = load_config("smoke")
    with pytest.raises(StageError, match="sft/model"):
        check_rl_ready(cfg, tmp_path, "rl_baseline")
    (tmp_path / "sft" / "model").mkdir(parents=True)
    check_rl_ready(cfg, tmp_path, "rl_baseline")
    with pytest.raises(StageError, match="prm/model"):
        run_rl(cfg, tmp_path, "rl_prm")


def test_variant_names_on_cpu():
    def name(*sets):
        return variant_name(load_config("smoke", sets=list(sets)).rl)
    assert name() == "baseline"
    assert name("rl.reward=dense", "rl.critic_init=prm") == "prm"
    assert name("rl.reward=partial") == "partial"
    assert name("rl.critic_init=prm") == "sparse_vinit"
    assert name("rl.reward=dense", "rl.critic_init=prm", "rl.normalize_by_lines=false") == \
        "dense_vinit_noT"
