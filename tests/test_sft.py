"""SFT: masking, schedules, resume equals an uninterrupted run, and the CLI smoke run."""
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from prmfast import sft
from prmfast.config import ModelConfig, SFTConfig
from prmfast.data import Task
from prmfast.models import build_tiny_model, encode, train_tokenizer
from prmfast.sandbox import CallTests
from prmfast.train import main

REPO = Path(__file__).resolve().parents[1]
TEXTS = [("# 1. sort\ndef f(xs):\n", "    xs = sorted(xs)\n    return xs\n"),
         ("# 1. sum\ndef f(xs):\n", "    return sum(xs)\n"),
         ("# 1. reverse\ndef f(xs):\n", "    xs = xs[::-1]\n    return xs\n")] * 4


@pytest.fixture(scope="module")
def setup():
    tok = train_tokenizer([p + r for p, r in TEXTS], 300)
    tasks = [Task(f"t{i}", p, CallTests("f", []), "f", r, {}) for i, (p, r) in enumerate(TEXTS)]
    return tok, sft.build_examples(tok, tasks, max_len=64)


def fresh_model(tok):
    torch.manual_seed(0)
    return build_tiny_model(tok, ModelConfig(hidden_size=32, num_layers=1, num_heads=2,
                                             intermediate_size=64, max_position=64))


def test_examples_mask_the_prompt_on_cpu(setup):
    tok, examples = setup
    ids, labels = examples[0]
    n_prompt = len(encode(tok, TEXTS[0][0]))
    assert labels[:n_prompt] == [-100] * n_prompt
    assert labels[n_prompt:] == ids[n_prompt:] and ids[-1] == tok.eos_token_id
    batch = sft.collate(examples[:3], pad_id=tok.pad_token_id)
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape
    assert (batch["labels"][batch["attention_mask"] == 0] == -100).all()


def test_warmup_cosine_and_epoch_order_on_cpu():
    f = sft.warmup_cosine(2, 10)
    assert [f(0), f(1), f(2)] == [0.5, 1.0, 1.0] and f(10) == pytest.approx(0.0)
    assert sorted(sft.epoch_order(7, 3, 0)) == list(range(7))
    assert sft.epoch_order(7, 3, 0) == sft.epoch_order(7, 3, 0) != sft.epoch_order(7, 4, 0)


def test_resume_equals_uninterrupted_on_cpu(setup, tmp_path, monkeypatch):
    tok, examples = setup
    cfg = SFTConfig(epochs=3.0, batch_size=4, lr=1e-2, warmup_steps=2, checkpoint_every=2)
    whole = fresh_model(tok)
    losses = sft.train(whole, examples, cfg, tmp_path / "a", seed=0, progress=False)
    assert len(losses) == 9 and losses[-1] < losses[0]

    save = sft.save_checkpoint

    def save_then_crash(state_dir, step, *args):
        save(state_dir, step, *args)
        if step == 4:
            raise KeyboardInterrupt
    monkeypatch.setattr(sft, "save_checkpoint", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        sft.train(fresh_model(tok), examples, cfg, tmp_path / "b", seed=0, progress=False)
    monkeypatch.setattr(sft, "save_checkpoint", save)
    resumed = fresh_model(tok)
    rest = sft.train(resumed, examples, cfg, tmp_path / "b", seed=0, progress=False)
    assert rest == losses[4:]
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


@pytest.mark.slow
def test_smoke_run_end_to_end_on_cpu(tmp_path):
    out = tmp_path / "run"
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "prmfast.train", "sft", "--preset", "smoke",
                           "--out", str(out)], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert time.perf_counter() - t0 < 180        # about 40 s on a loaded 2-core machine
    for name in ("config.json", "tokenizer/tokenizer.json", "sft/model/config.json",
                 "sft/model/model.safetensors", "sft/eval.json", "sft/DONE"):
        assert (out / name).exists(), name
    assert not (out / "sft" / "state").exists()
    result = json.loads((out / "sft" / "eval.json").read_text())
    assert 0.0 <= result["pass@1"] <= 1.0 and result["samples"] == 2
    assert set(result["by_horizon"]) <= {"short", "medium", "long"}
    assert json.loads((out / "config.json").read_text())["out"] == str(out)
    assert main(["sft", "--preset", "smoke", "--out", str(out)]) == 0      # DONE: skipped


def test_cli_config_errors_exit_2_on_cpu(tmp_path, capsys):
    assert main(["sft", "--out", str(tmp_path), "--set", "sft.lr=fast"]) == 2
    assert "sft.lr" in capsys.readouterr().err
    assert main(["sft", "--out", str(tmp_path), "--set", "sft.lrr=1"]) == 2
    assert main(["sft", "--out", str(tmp_path), "--config", str(tmp_path / "none.toml")]) == 2
    assert not (tmp_path / "config.json").exists()


def test_cli_interrupt_says_how_to_resume_on_cpu(tmp_path, capsys, monkeypatch):
    from prmfast import train

    def interrupted(cfg, run_dir):
        raise KeyboardInterrupt
    monkeypatch.setitem(train.STAGES, "prm", interrupted)
    assert main(["prm", "--out", str(tmp_path)]) == 130
    assert f"--out {tmp_path} to resume" in capsys.readouterr().err


def test_cli_missing_prerequisite_is_one_clear_line_on_cpu(tmp_path, capsys):
    assert main(["prm", "--preset", "smoke", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "collect stage" in err and "Traceback" not in err


@pytest.mark.parametrize("setting", ["prm.selection=revised", "collect.k=0", "data.name=humaneval2",
                                     "prm.early_stop=never", "rl.reward=dense_ish"])
def test_cli_bad_stage_values_fail_before_any_work_on_cpu(tmp_path, capsys, setting):
    assert main(["all", "--out", str(tmp_path), "--set", setting]) == 2
    assert setting.split("=")[0] in capsys.readouterr().err
    assert not (tmp_path / "config.json").exists()
