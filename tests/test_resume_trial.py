"""Interrupted stages resume to what an uninterrupted run gives (found by kill/resume trials)."""
import pytest
import torch

from prmfast import sft
from prmfast.config import ModelConfig, SFTConfig
from prmfast.data import Task
from prmfast.models import build_tiny_model, train_tokenizer
from prmfast.sandbox import CallTests

TEXTS = [("# 1. sort\ndef f(xs):\n", "    xs = sorted(xs)\n    return xs\n"),
         ("# 1. sum\ndef f(xs):\n", "    return sum(xs)\n"),
         ("# 1. reverse\ndef f(xs):\n", "    xs = xs[::-1]\n    return xs\n")] * 4


@pytest.fixture(scope="module")
def sft_setup():
    tok = train_tokenizer([p + r for p, r in TEXTS], 300)
    tasks = [Task(f"t{i}", p, CallTests("f", []), "f", r, {}) for i, (p, r) in enumerate(TEXTS)]
    return tok, sft.build_examples(tok, tasks, max_len=64)


def tiny_policy(tok):
    torch.manual_seed(0)
    return build_tiny_model(tok, ModelConfig(hidden_size=32, num_layers=1, num_heads=2,
                                             intermediate_size=64, max_position=64))


@pytest.mark.parametrize("stop_at", [4, 9])          # mid-training; after the last step
def test_sft_loss_history_survives_a_resume_on_cpu(sft_setup, tmp_path, monkeypatch, stop_at):
    """sft/eval.json's train.steps and final_loss come from the whole history: a run killed
    after its last checkpoint (e.g. during the SFT evaluation) used to report 0 steps and no
    final loss, one killed mid-training only the steps after the resume."""
    tok, examples = sft_setup
    cfg = SFTConfig(epochs=3.0, batch_size=4, lr=1e-2, warmup_steps=2, checkpoint_every=2)
    whole: list[float] = []
    sft.train(tiny_policy(tok), examples, cfg, tmp_path / "a", seed=0, progress=False,
              history=whole)
    assert len(whole) == 9

    save = sft.save_checkpoint

    def save_then_crash(state_dir, step, *args):
        save(state_dir, step, *args)
        if step == stop_at:
            raise KeyboardInterrupt
    monkeypatch.setattr(sft, "save_checkpoint", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        sft.train(tiny_policy(tok), examples, cfg, tmp_path / "b", seed=0, progress=False)
    monkeypatch.setattr(sft, "save_checkpoint", save)
    resumed: list[float] = []
    rest = sft.train(tiny_policy(tok), examples, cfg, tmp_path / "b", seed=0, progress=False,
                     history=resumed)
    assert rest == whole[stop_at:]                  # the return value: this call's steps
    assert resumed == whole


def test_labels_appended_after_a_torn_record_are_kept_on_cpu(tmp_path):
    """A hard kill mid-append leaves labels.jsonl ending in a torn record. The resumed collect
    appended its records onto that line, so read_jsonl stopped there: every record labelled
    after the resume was silently lost (summary and PRM saw fewer responses)."""
    import random
    import shutil

    from prmfast.labeling.store import label_into
    from prmfast.runio import read_jsonl
    from tests.test_labeling import FakeBackend, FakeSandbox, make_prober, make_response

    rng = random.Random(2)
    responses = [make_response(str(i), i % 3, [rng.randint(0, 58) for _ in range(rng.randint(2, 8))])
                 for i in range(10)]

    def label(folder):
        prober = make_prober(FakeBackend(0.4), FakeSandbox(), journal=folder / "probes.jsonl")
        label_into(folder / "labels.jsonl", responses, prober, 4, lambda r: {})
        return [{k: v for k, v in rec.items() if k not in ("label_wall_s", "cost")}
                for rec in read_jsonl(folder / "labels.jsonl")]

    (tmp_path / "a").mkdir()
    straight = label(tmp_path / "a")
    torn = tmp_path / "b"
    torn.mkdir()
    shutil.copy(tmp_path / "a" / "probes.jsonl", torn / "probes.jsonl")
    lines = (tmp_path / "a" / "labels.jsonl").read_text().splitlines(keepends=True)
    (torn / "labels.jsonl").write_text("".join(lines[:5]) + lines[5][:len(lines[5]) // 2])
    assert len(read_jsonl(torn / "labels.jsonl")) == 5
    assert label(torn) == straight and len(straight) == 10


def tear_writes(monkeypatch):
    """Path.write_text and Path.write_bytes write half of their data, then the process is
    'killed'."""
    from pathlib import Path

    def tearing(real):
        def torn(self, data, *args, **kwargs):
            real(self, data[:len(data) // 2], *args, **kwargs)
            raise KeyboardInterrupt
        return torn
    for name in ("write_text", "write_bytes"):
        monkeypatch.setattr(Path, name, tearing(getattr(Path, name)))


def test_a_kill_while_rewriting_config_json_keeps_the_folder_resumable_on_cpu(tmp_path,
                                                                              monkeypatch):
    """Every command rewrites DIR/config.json and DIR/rl_*/config.json; a kill mid-write left a
    torn file, and the folder's resume was refused ('not a readable saved config; use a new
    --out'): the whole run was lost."""
    from prmfast import train
    from prmfast.config import config_to_dict, load_config, save_config
    from prmfast.rl.stage import run_config

    run_dir = tmp_path / "run"
    cfg = load_config("smoke")
    cfg.out = str(run_dir)
    record = train.check_rerun(cfg, run_dir, train.PIPELINE)
    train.make_run_folder(run_dir, record)
    rl_record = config_to_dict(run_config(cfg, "rl_baseline"))
    (run_dir / "rl_baseline").mkdir()
    save_config(run_dir / "rl_baseline" / "config.json", rl_record)
    with monkeypatch.context() as patch:
        tear_writes(patch)
        with pytest.raises(KeyboardInterrupt):
            train.make_run_folder(run_dir, record)
        with pytest.raises(KeyboardInterrupt):
            save_config(run_dir / "rl_baseline" / "config.json", rl_record)
    assert train.check_rerun(cfg, run_dir, train.PIPELINE) == record


def test_a_kill_while_truncating_rl_metrics_keeps_every_row_on_cpu(tmp_path, monkeypatch):
    """Resuming an RL stage rewrites metrics.jsonl without the rows past the resumed step; a
    kill mid-rewrite lost the rows after the torn point (training curves with holes)."""
    import json

    from prmfast.runio import read_metrics
    from prmfast.rl.stage import _truncate_metrics

    path = tmp_path / "metrics.jsonl"
    rows = [{"step": i, "reward": i / 10, "note": "x" * 50} for i in range(1, 7)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with monkeypatch.context() as patch:
        tear_writes(patch)
        with pytest.raises(KeyboardInterrupt):
            _truncate_metrics(path, 4)
    _truncate_metrics(path, 4)
    assert read_metrics(tmp_path) == rows[:4]


def test_sft_model_folder_is_the_same_after_a_resume_on_cpu(tmp_path):
    """The run's tokenizer is trained on first use: an uninterrupted run saved the trained
    object into sft/model, a resumed one the copy read back from DIR/tokenizer, whose
    tokenizer_config.json has other keys (is_local, local_files_only)."""
    from prmfast.config import load_config
    from prmfast.models import save_policy

    cfg = load_config("smoke", sets=["model.vocab_size=300", "model.device=cpu"])
    tasks = [Task(f"t{i}", p, CallTests("f", []), "f", r, {}) for i, (p, r) in enumerate(TEXTS)]
    saved = []
    for name in ("first", "resumed"):               # trains the tokenizer, then reads it back
        model, tok = sft.initial_policy(cfg, tmp_path / "run", tasks)
        save_policy(model, tok, tmp_path / name)
        saved.append({f.name: f.read_bytes() for f in (tmp_path / name).iterdir()})
    assert saved[0] == saved[1]
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["tokenizer"]


def test_a_kill_while_saving_the_sft_model_leaves_no_partial_folder_on_cpu(tmp_path,
                                                                          monkeypatch):
    """DIR/sft/model (and DIR/prm/model) were written in place: a kill mid-save left a partial
    folder that the RL stages (`rl_baseline`, `rl_prm` run on their own: they check that the
    folder exists) loaded, failing with a traceback on a truncated file."""
    from prmfast.config import load_config
    from prmfast.errors import StageError
    from prmfast.rl.stage import check_rl_ready

    cfg = load_config("smoke", sets=["data.n_train=24", "data.n_test=2", "sft.epochs=1.0",
                                     "sft.eval_samples=1", "sampling.max_new_tokens=8",
                                     "model.device=cpu"])
    run_dir = tmp_path / "run"
    real_save = sft.save_policy

    def torn_save(model, tokenizer, folder):
        folder.mkdir(parents=True)
        (folder / "config.json").write_text("{")
        raise KeyboardInterrupt
    monkeypatch.setattr(sft, "save_policy", torn_save)
    with pytest.raises(KeyboardInterrupt):
        sft.run(cfg, run_dir, progress=False)
    with pytest.raises(StageError, match="sft/model"):
        check_rl_ready(cfg, run_dir, "rl_baseline")
    monkeypatch.setattr(sft, "save_policy", real_save)
    sft.run(cfg, run_dir, progress=False)
    check_rl_ready(cfg, run_dir, "rl_baseline")
    assert sorted(p.name for p in (run_dir / "sft").iterdir()) == ["DONE", "eval.json", "model"]


@pytest.mark.parametrize("stop_at", [1, 3, 5, 7])   # resolve calls: chunks of 3, 3, 2 rounds
def test_resumed_labelling_charges_the_same_costs_on_cpu(tmp_path, stop_at):
    """Probes journalled by a chunk cut short were answered from the cache on resume and
    charged as cached: labels.jsonl's cost fields and summary.json's cost totals (executions
    per failed response) changed after a resume."""
    from tests.test_labeling import label_with_interrupt, random_responses

    responses = random_responses()
    straight = label_with_interrupt(tmp_path / "a", responses)
    resumed = label_with_interrupt(tmp_path / "b", responses, stop_at)
    assert resumed == straight and len(straight) == 10
    assert sum(rec["cost"]["cached"] for rec in straight) > 0   # cache hits stay cache hits
