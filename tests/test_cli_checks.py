"""The CLI's checks before any work: value ranges, non-finite numbers, config files, --out paths,
a rerun with other settings on a run folder, and dataset errors as one line."""
import json
import sys

import pytest

from prmfast import train
from prmfast.config import PRESETS, ConfigError, config_to_dict, load_config
from prmfast.data import DataError
from prmfast.rl.stage import check_rl_config, run_config
from prmfast.train import PIPELINE, check_config, main


@pytest.fixture
def ran(monkeypatch):
    """Every stage replaced by one that records its name and creates its folder (no work);
    returns the list of names."""
    calls = []

    def stage(cfg, run_dir, name):
        calls.append(name)
        (run_dir / {"collect": "prm_data"}.get(name, name)).mkdir(exist_ok=True)
    for name in train.STAGES:
        monkeypatch.setitem(train.STAGES, name,
                            lambda cfg, run_dir, name=name: stage(cfg, run_dir, name))
    return calls


def one_error_line(capsys, *words: str, prefix: str = "config error: ") -> str:
    err = capsys.readouterr().err
    assert err.startswith(prefix) and err.count("\n") == 1 and "Traceback" not in err, err
    for word in words:
        assert word in err, err
    return err


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_presets_pass_every_check_on_cpu(preset):
    check_config(load_config(preset), PIPELINE)
    check_config(load_config(preset), ("rl",))


@pytest.mark.parametrize("setting", [
    "sampling.max_new_tokens=0", "sampling.batch_size=0", "sampling.top_p=0", "sampling.top_p=1.5",
    "sampling.temperature=-1", "sampling.temperature=0", "sft.eval_samples=0", "sft.batch_size=0",
    "sft.checkpoint_every=0", "sft.epochs=-1", "sft.epochs=0", "sft.lr=0",
    "sft.eval_temperature=-0.1", "sandbox.timeout_s=0", "sandbox.memory_mb=0", "sandbox.workers=0",
    "model.hidden_size=0", "model.num_layers=0", "model.num_heads=5", "model.num_heads=32",
    "model.dtype=float33", "model.init=/nonexistent", "model.max_position=16",
    "model.max_position=0", "collect.temperature=-1", "collect.temperature=0", "eval.samples=0",
    "eval.max_tasks=0", "eval.max_k=0", "eval.temperature=-1", "prm.lr=-1", "prm.patience=-3",
    "prm.head_lr=0", "rl.vf_coef=-1", "rl.prm_coef_fail=-0.5", "rl.vllm_gpu_memory_utilization=0",
    "rl.num_checkpoints=0", "rl.steps=0", "rl.gamma=1.5"])
def test_bad_values_fail_before_any_work_on_cpu(tmp_path, capsys, ran, setting):
    assert main(["all", "--out", str(tmp_path), "--set", setting]) == 2
    one_error_line(capsys, setting.split("=")[0])
    assert ran == [] and not (tmp_path / "config.json").exists()


@pytest.mark.parametrize("raw", ["NaN", "Infinity", "-Infinity", "1e400", "1" + "0" * 400])
def test_non_finite_numbers_are_rejected_on_cpu(tmp_path, capsys, ran, raw):
    assert main(["sft", "--out", str(tmp_path), "--set", f"rl.kl_coef={raw}"]) == 2
    one_error_line(capsys, "'rl.kl_coef'", "finite")
    with pytest.raises(ConfigError, match="prm.ridge"):
        load_config(sets=[f"prm.ridge=[1, {raw}]"])
    file = tmp_path / "c.json"
    file.write_text('{"sft": {"lr": %s}}' % raw)
    with pytest.raises(ConfigError, match="sft.lr"):
        load_config(file=file)


def test_rl_checkpoints_are_needed_only_by_the_baseline_on_cpu(tmp_path, capsys, ran):
    for stage in ("all", "rl_baseline"):
        assert main([stage, "--out", str(tmp_path), "--set", "rl.num_checkpoints=0"]) == 2
        one_error_line(capsys, "rl.num_checkpoints", "collect")
    check_rl_config(load_config(sets=["rl.num_checkpoints=0"]))    # prmfast.rl.bench runs so
    with pytest.raises(ConfigError, match="sampling.temperature"):
        check_rl_config(load_config(sets=["sampling.temperature=0"]))
    check_config(load_config(sets=["sampling.temperature=0"]), ("sft", "eval"))   # greedy: fine


@pytest.mark.parametrize("key, value", [("rl.minibatch_order", "tasks"),
                                        ("rl.outcome_baseline", "mean")])
def test_unknown_rl_choices_name_the_key_and_the_choices_on_cpu(key, value):
    with pytest.raises(ConfigError, match=f"{key}: '{value}' is not one of"):
        check_rl_config(load_config(sets=[f"{key}={value}"]))


@pytest.mark.parametrize("content, words", [
    (b"[1, 2]", ["object", "list"]), (b'"x"', ["object", "str"]),
    (b"\xff\xfe{}", ["not UTF-8"]), (None, ["is a directory"]), (b"{", ["does not parse"])])
def test_bad_config_files_are_one_error_on_cpu(tmp_path, capsys, ran, content, words):
    path = tmp_path / "c.json"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    assert main(["sft", "--out", str(tmp_path / "run"), "--config", str(path)]) == 2
    one_error_line(capsys, "c.json", *words)
    assert ran == []


def test_bad_out_paths_are_one_error_on_cpu(tmp_path, capsys, ran):
    afile = tmp_path / "afile"
    afile.write_text("x")
    bad = [str(afile), str(afile / "sub")] + (["/proc/nope"] if sys.platform == "linux" else [])
    for out in bad:
        assert main(["sft", "--out", out]) == 2
        one_error_line(capsys, f"--out {out}: ", prefix="error: ")
    assert main(["sft", "--out", ""]) == 2
    one_error_line(capsys, "--out", "empty")
    assert ran == []


def test_dataset_errors_are_one_line_on_cpu(tmp_path, capsys, monkeypatch):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"task_id": 1\n')
    assert main(["sft", "--preset", "smoke", "--out", str(tmp_path / "run"), "--set",
                 "data.name=mbpp", "--set", f"data.path={bad}"]) == 1
    one_error_line(capsys, f"{bad}:1", prefix="error: ")

    def broken(cfg, run_dir):
        raise DataError("tasks.jsonl:3: missing field(s) tests")
    monkeypatch.setitem(train.STAGES, "eval", broken)
    assert main(["eval", "--out", str(tmp_path / "run")]) == 1    # nothing written: may change
    one_error_line(capsys, "tasks.jsonl:3", prefix="error: ")


def test_rerun_with_other_settings_is_refused_on_cpu(tmp_path, capsys, ran):
    run = ["all", "--preset", "smoke", "--out", str(tmp_path)]
    assert main(run) == 0 and ran == list(PIPELINE)
    saved = (tmp_path / "config.json").read_bytes()
    capsys.readouterr()
    assert main(run + ["--set", "model.hidden_size=96", "--set", "sft.lr=0.01"]) == 2
    one_error_line(capsys, "model.hidden_size: 64 -> 96", "sft.lr: 0.003 -> 0.01", "--out")
    assert main(["sft", "--out", str(tmp_path), "--set", "seed=1"]) == 2      # preset default
    one_error_line(capsys, "seed: 0 -> 1", "data.n_train: 200 -> 2000")
    assert (tmp_path / "config.json").read_bytes() == saved and len(ran) == len(PIPELINE)
    assert main(run) == 0 and len(ran) == 2 * len(PIPELINE)          # the same settings: resume
    # keys that cannot change results may change
    assert main(run + ["--set", "model.device=cpu", "--set", "sandbox.workers=1"]) == 0
    assert json.loads((tmp_path / "config.json").read_text())["model"]["device"] == "cpu"


def test_a_stage_section_may_change_until_its_folder_exists_on_cpu(tmp_path, capsys, ran):
    base = ["--preset", "smoke", "--out", str(tmp_path)]
    assert main(["sft", *base, "--set", "prm.lr=0.2"]) == 0
    assert main(["prm", *base, "--set", "prm.lr=0.5"]) == 0               # no DIR/prm yet
    capsys.readouterr()
    assert main(["prm", *base]) == 2                                      # DIR/prm exists now
    one_error_line(capsys, "prm.lr: 0.5 -> 0.001")
    assert main(["report", *base]) == 0                                   # prm does not run
    assert json.loads((tmp_path / "config.json").read_text())["prm"]["lr"] == 0.5
    assert main(["prm", *base, "--set", "prm.lr=0.5"]) == 0
    assert ran == ["sft", "prm", "report", "prm"]


def test_an_rl_folder_is_compared_with_its_own_config_on_cpu(tmp_path, capsys, ran):
    base = ["--preset", "smoke", "--out", str(tmp_path)]
    assert main(["sft", *base]) == 0
    folder = tmp_path / "rl_baseline"          # as prmfast.rl.stage records a started RL run
    folder.mkdir()
    folder.joinpath("config.json").write_text(
        json.dumps(config_to_dict(run_config(load_config("smoke"), "rl_baseline"))))
    capsys.readouterr()
    assert main(["rl_baseline", *base, "--set", "rl.steps=5"]) == 2
    one_error_line(capsys, "rl.steps: 2 -> 5 (rl_baseline)")
    assert main(["rl", *base, "--set", "rl.steps=5"]) == 2               # rl_baseline again
    one_error_line(capsys, "rl.steps: 2 -> 5 (rl_baseline)")
    assert main(["rl", *base, "--set", "rl.steps=5", "--set", "rl.reward=partial"]) == 0
    assert main(["rl_baseline", *base]) == 0
    assert ran == ["sft", "rl", "rl_baseline"]


def test_an_unreadable_saved_config_is_one_error_on_cpu(tmp_path, capsys, ran):
    (tmp_path / "config.json").write_text("[")
    assert main(["sft", "--out", str(tmp_path)]) == 0       # no output yet: written anew
    (tmp_path / "config.json").write_text("[")                # now beside DIR/sft
    assert main(["sft", "--out", str(tmp_path)]) == 2
    one_error_line(capsys, "config.json", "new --out")


def test_a_finished_sft_rerun_with_another_size_is_refused_on_cpu(tmp_path, capsys):
    run = ["sft", "--preset", "smoke", "--out", str(tmp_path), "--set", "data.n_train=40",
           "--set", "data.n_test=4", "--set", "sft.eval_samples=1"]
    assert main(run) == 0
    saved = (tmp_path / "config.json").read_bytes()
    capsys.readouterr()
    assert main(run + ["--set", "model.hidden_size=32"]) == 2
    one_error_line(capsys, "model.hidden_size: 64 -> 32")
    assert (tmp_path / "config.json").read_bytes() == saved
    assert main(run) == 0 and "skipping" in capsys.readouterr().out


def test_rl_stages_check_how_they_were_launched_before_any_work_on_cpu(tmp_path, capsys,
                                                                          monkeypatch, ran):
    """deepspeed without a launcher, the single-process engine under a launcher of several
    processes, vLLM rollouts without vllm: one config error and no run folder (a later rerun
    with other settings would be refused as a change to the folder)."""
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    out = tmp_path / "run"
    assert main(["rl", "--preset", "smoke", "--out", str(out), "--set", "rl.engine=deepspeed"]) == 2
    one_error_line(capsys, "rl.engine: 'deepspeed' needs a launcher")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["rl_baseline", "--preset", "smoke", "--out", str(out)]) == 2
    one_error_line(capsys, "rl.engine: 'none' trains in one process", "started 2")
    monkeypatch.delenv("WORLD_SIZE")
    no_vllm = tmp_path / "python"                       # an interpreter without the package
    no_vllm.write_text(f"#!/bin/sh\nexec {sys.executable} -I -S \"$@\"\n")
    no_vllm.chmod(0o755)
    assert main(["rl", "--preset", "smoke", "--out", str(out), "--set", "rl.rollout_backend=vllm",
                 "--set", f"rl.vllm_python={no_vllm}"]) == 2
    one_error_line(capsys, "rl.rollout_backend: 'vllm' needs the vllm package")
    assert not out.exists() and ran == []
    assert main(["rl", "--preset", "smoke", "--out", str(out), "--set", "rl.rollout_backend=vllm",
                 "--set", "rl.vllm_engine=hf"]) == 0          # the worker's HF engine needs none


def test_the_sft_stage_compares_the_eval_key_it_reads_on_cpu(tmp_path, capsys, ran):
    """The SFT evaluation buckets by eval.length_threshold: a resumed sft stage may not change
    it, although the eval section may change until DIR/eval exists."""
    base = ["--preset", "smoke", "--out", str(tmp_path)]
    assert main(["sft", *base]) == 0                                      # DIR/sft exists now
    capsys.readouterr()
    assert main(["sft", *base, "--set", "eval.length_threshold=20"]) == 2
    one_error_line(capsys, "eval.length_threshold: 100 -> 20")
    assert main(["prm", *base, "--set", "eval.length_threshold=20"]) == 0  # prm does not read it
    assert ran == ["sft", "prm"]
