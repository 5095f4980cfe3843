"""The RL stages of `python -m prmfast.train`: PPO from the SFT policy into DIR/<name>/.

    DIR/<name>/config.json     the effective config of the run (rl.* after the stage's overrides)
    DIR/<name>/metrics.jsonl   one row per iteration (rewards, losses, hack metrics, timings)
    DIR/<name>/rollouts.jsonl  the last iteration's responses, per line: PPO advantage (mean over
                               the line's tokens) and line reward (trainer.rollout_records; under
                               several ranks rank 0's share)
    DIR/<name>/ckpt_XXXX/      policy checkpoints after evenly spaced iterations (HF folders)
    DIR/<name>/model/          the final policy
    DIR/<name>/state/          resumable state (removed once DONE is written)
    DIR/<name>/DONE            written last

Named runs: "rl_baseline" (sparse reward, critic from the policy) and "rl_prm" (dense PRM reward,
critic initialised from the PRM: DenseReward + ValueInit); `rl` runs whatever cfg.rl says into
DIR/rl_<variant_name(cfg.rl)>.
"""
from __future__ import annotations

import copy
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from prmfast.config import (Config, ConfigError, apply_overrides, check_ranges, config_to_dict,
                            save_config)
from prmfast.device import resolve_device, select_device
from prmfast.distributed import deepspeed_config_path, get_rank, is_main
from prmfast import trackers
from prmfast.errors import StageError
from prmfast.prm import is_frozen_prm, load_prm
from prmfast.rl.algos import (LR_SCHEDULES, MINIBATCH_ORDERS, OUTCOME_BASELINES,
                              checkpoint_steps)
from prmfast.rl.rewards import REWARDS
from prmfast.rl.trainer import DEEPSPEED_ON_CPU, PPOTrainer, latest_state
from prmfast.runio import append_jsonl, read_jsonl, write_jsonl

CRITIC_INITS = ("policy", "prm")
ENGINES = ("none", "ddp", "deepspeed")     # fsdp: not wired into the RL stage (docs/scale.md)
PIPELINE_RUNS = {
    "rl_baseline": {"rl.reward": "sparse", "rl.critic_init": "policy"},
    "rl_prm": {"rl.reward": "dense", "rl.critic_init": "prm"},
}


FROZEN_PRM_NO_VALUE_INIT = (
    "rl.critic_init='prm' (ValueInit) starts the critic from the PRM's weights, but a PRM on a "
    "frozen pretrained backbone (prm.pretrained) has another backbone and tokenizer than the "
    "policy; use rl.critic_init='policy' (the stage `rl --set rl.reward=dense`)")


def variant_name(rl) -> str:
    """Folder suffix of an RL run: "baseline" (sparse + critic from policy), "prm" (dense +
    ValueInit), else the reward, "_vinit" for ValueInit, "_noT" without 1/T normalisation,
    "_nocomment" without neutral comments; e.g. "dense_noT"."""
    if rl.normalize_by_lines and rl.neutral_comments:
        if (rl.reward, rl.critic_init) == ("sparse", "policy"):
            return "baseline"
        if (rl.reward, rl.critic_init) == ("dense", "prm"):
            return "prm"
    name = rl.reward + ("_vinit" if rl.critic_init == "prm" else "")
    name += "" if rl.normalize_by_lines else "_noT"
    return name + ("" if rl.neutral_comments else "_nocomment")


def check_rl_config(cfg: Config) -> None:
    """Value checks of the rl.* keys (types are checked by prmfast.config). Raises ConfigError
    naming the key."""
    rl = cfg.rl
    choices = {"rl.reward": (rl.reward, tuple(REWARDS)),
               "rl.critic_init": (rl.critic_init, CRITIC_INITS),
               "rl.lr_schedule": (rl.lr_schedule, LR_SCHEDULES),
               "rl.outcome_baseline": (rl.outcome_baseline, OUTCOME_BASELINES),
               "rl.minibatch_order": (rl.minibatch_order, MINIBATCH_ORDERS),
               "rl.engine": (rl.engine, ENGINES),
               "rl.rollout_backend": (rl.rollout_backend, ("hf", "vllm")),
               "rl.vllm_engine": (rl.vllm_engine, ("vllm", "hf"))}
    for key, (value, allowed) in choices.items():
        if value not in allowed:
            raise ConfigError(f"{key}: {value!r} is not one of {list(allowed)}")
    check_ranges(cfg, "rl")
    if cfg.sampling.temperature <= 0:
        raise ConfigError(f"sampling.temperature: RL samples and scores log-probs at it, so it "
                          f"must be > 0, got {cfg.sampling.temperature}")
    if rl.vllm_python is not None and not os.access(rl.vllm_python, os.X_OK):
        raise ConfigError(f"rl.vllm_python: {rl.vllm_python!r} is not an executable")
    if rl.dual_clip is not None and rl.dual_clip <= 1.0:
        raise ConfigError(f"rl.dual_clip: must be > 1 (or null), got {rl.dual_clip}")
    if rl.critic_init == "prm" and cfg.prm.pretrained is not None:
        raise ConfigError(FROZEN_PRM_NO_VALUE_INIT)
    if rl.reward == "oracle" and cfg.data.name != "synthetic":
        raise ConfigError("rl.reward: 'oracle' needs data.name='synthetic' (it has the oracle)")
    if rl.engine == "deepspeed":
        _check_deepspeed_config(rl.deepspeed_config)
        try:
            on_cpu = resolve_device(cfg.model.device).type == "cpu"
        except ValueError:
            on_cpu = False                  # reported by check_device_config
        if on_cpu and torch.cuda.is_available() and os.environ.get("DS_ACCELERATOR") != "cpu":
            raise ConfigError(DEEPSPEED_ON_CPU)


def check_rl_baseline_config(cfg: Config) -> None:
    """check_rl_config on the config as given and as the named stage rl_baseline runs it; the
    stage saves the checkpoints the collect stage samples from, so it needs at least one."""
    check_rl_config(cfg)
    check_rl_config(run_config(cfg, "rl_baseline"))
    if cfg.rl.num_checkpoints < 1:
        raise ConfigError(f"rl.num_checkpoints: rl_baseline saves the checkpoints the collect "
                          f"stage samples from; must be >= 1, got {cfg.rl.num_checkpoints}")


def check_rl_prm_config(cfg: Config) -> None:
    """check_rl_config on the config as given and as the named stage rl_prm (DenseReward +
    ValueInit) runs it."""
    check_rl_config(cfg)
    check_rl_config(run_config(cfg, "rl_prm"))


def check_rl_launch(cfg: Config) -> None:
    """What an RL stage needs from how it was started, before any work: a launcher for the
    deepspeed engine, no several processes for the single-process one, and the vllm package in
    the worker's interpreter for vLLM rollouts. Raises ConfigError naming the key."""
    rl = cfg.rl
    try:
        world = int(os.environ.get("WORLD_SIZE") or 1)
    except ValueError:
        world = 1
    if rl.engine == "deepspeed" and "RANK" not in os.environ:
        raise ConfigError("rl.engine: 'deepspeed' needs a launcher: torchrun --nproc_per_node N "
                          "or deepspeed --num_gpus N (N may be 1)")
    if rl.engine == "none" and world > 1:
        raise ConfigError(f"rl.engine: 'none' trains in one process, but the launcher started "
                          f"{world}: set rl.engine to 'ddp' or 'deepspeed'")
    if rl.rollout_backend == "vllm" and rl.vllm_engine == "vllm":
        python = rl.vllm_python or sys.executable
        probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('vllm') is None)"
        try:
            found = subprocess.run([python, "-c", probe], capture_output=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ConfigError(f"rl.vllm_python: cannot run {python!r} ({exc})") from None
        if found.returncode != 0:
            raise ConfigError(f"rl.rollout_backend: 'vllm' needs the vllm package in {python} "
                              "(install it there, point rl.vllm_python at an interpreter that "
                              "has it, or set rl.vllm_engine='hf')")


def _check_deepspeed_config(path: str) -> None:
    if importlib.util.find_spec("deepspeed") is None:
        raise ConfigError("rl.engine: 'deepspeed' needs the deepspeed package, an optional "
                          "extra: pip install -e '.[deepspeed]'")
    file = deepspeed_config_path(path)
    if not file.is_file():
        raise ConfigError(f"rl.deepspeed_config: {path!r} is not a file")
    try:
        json.loads(file.read_text())
    except ValueError as exc:
        raise ConfigError(f"rl.deepspeed_config: {path!r} is not JSON: {exc}") from exc


def run_config(cfg: Config, name: str) -> Config:
    """The config of a named run: cfg with the run's fixed rl.* overrides applied."""
    run_cfg = copy.deepcopy(cfg)
    apply_overrides(run_cfg, PIPELINE_RUNS.get(name, {}), source=f"stage {name!r}")
    return run_cfg


def rl_prerequisites(cfg: Config, run_dir: Path, name: str) -> list[Path]:
    """Folders the run reads: the SFT policy, and the PRM for dense reward or ValueInit."""
    rl = run_config(cfg, name).rl
    needs = [Path(run_dir) / "sft" / "model"]
    if REWARDS[rl.reward].needs_prm or rl.critic_init == "prm":
        needs.append(Path(run_dir) / "prm" / "model")
    return needs


def check_rl_ready(cfg: Config, run_dir: Path, name: str) -> None:
    """Fail before any work when the config is invalid or an input folder is missing."""
    check_rl_config(run_config(cfg, name))
    missing = [p for p in rl_prerequisites(cfg, run_dir, name) if not p.is_dir()]
    if missing:
        raise StageError(
            f"stage {name!r} needs {', '.join(str(p) for p in missing)}: run the earlier stages "
            f"first (python -m prmfast.train all --out {run_dir})")
    prm_dir = Path(run_dir) / "prm" / "model"
    if run_config(cfg, name).rl.critic_init == "prm" and is_frozen_prm(prm_dir):
        raise StageError(f"stage {name!r}: {FROZEN_PRM_NO_VALUE_INIT} ({prm_dir})")


def run_rl(cfg: Config, run_dir: str | Path, name: str | None = None, *,
           progress: bool = True) -> Path:
    """PPO into run_dir/name (default rl_<variant_name>); skips when DONE exists, resumes from
    run_dir/name/state otherwise. Returns the run folder. Under torchrun (rl.engine=ddp or
    deepspeed) every rank runs this; rank 0 alone writes metrics, checkpoints, state and the final
    model (under DeepSpeed every rank writes its optimizer partition into state/)."""
    run_dir = Path(run_dir)
    name = name or f"rl_{variant_name(cfg.rl)}"
    cfg = run_config(cfg, name)
    out = run_dir / name
    if (out / "DONE").exists():
        print(f"{name}: {out / 'DONE'} exists, skipping")
        return out
    check_rl_ready(cfg, run_dir, name)
    from prmfast.data import split_tasks
    from prmfast.data.oracle import first_error_lines
    from prmfast.models import ValueModel, load_policy
    from prmfast.sandbox import Sandbox

    out.mkdir(parents=True, exist_ok=True)
    if is_main():
        save_config(out / "config.json", config_to_dict(cfg))
    rl = cfg.rl
    torch.manual_seed(cfg.seed)
    device = select_device(cfg.model.device)
    sft_dir = run_dir / "sft" / "model"
    policy, tokenizer = load_policy(sft_dir, cfg.model.dtype, device=device)
    reference, _ = load_policy(sft_dir, cfg.model.dtype, device=device)
    prm_dir = run_dir / "prm" / "model"
    critic = (ValueModel.from_pretrained(prm_dir, device=device) if rl.critic_init == "prm"
              else ValueModel.from_causal_lm(policy))
    prm = load_prm(prm_dir, device=device) if REWARDS[rl.reward].needs_prm else None
    trainer = PPOTrainer(
        cfg, policy=policy, reference=reference, critic=critic, prm=prm, tokenizer=tokenizer,
        tasks=split_tasks(cfg, "train"), backend=rollout_backend(cfg, policy, tokenizer, out),
        sandbox=Sandbox(workers=cfg.sandbox.workers, timeout_s=cfg.sandbox.timeout_s,
                        memory_mb=cfg.sandbox.memory_mb),
        oracle=first_error_lines if rl.reward == "oracle" else None)
    try:
        return _train(trainer, cfg, out, progress)
    finally:
        if hasattr(trainer.backend, "close"):       # the vLLM worker and its weights folder
            trainer.backend.close()
            shutil.rmtree(trainer.backend.model_dir, ignore_errors=True)


def _train(trainer: PPOTrainer, cfg: Config, out: Path, progress: bool) -> Path:
    """Resume, iterate with metrics / checkpoints / states, save the final model and DONE."""
    rl, name = cfg.rl, out.name
    state = latest_state(out / "state")
    if state is not None:
        trainer.load_state(state)
    metrics, probe_file = out / "metrics.jsonl", out / "probe.jsonl"
    if is_main():
        _truncate_metrics(metrics, trainer.step)
        _truncate_metrics(probe_file, trainer.step)
    probe = Probe(cfg) if rl.probe_every and is_main() else None
    if probe is not None and trainer.step == 0:
        _record(cfg, out, probe_file, probe.measure(trainer))
    ckpts = set(checkpoint_steps(rl.steps, rl.num_checkpoints))
    with tqdm(total=rl.steps, initial=trainer.step, desc=name, disable=not progress or not is_main(),
              unit="it", dynamic_ncols=True) as bar:
        while trainer.step < rl.steps:
            last = trainer.step == rl.steps - 1
            row = trainer.train_step(record=last)
            if is_main():
                _record(cfg, out, metrics, row)
                if last:
                    write_jsonl(out / "rollouts.jsonl", trainer.last_rollouts)
            if probe is not None and (trainer.step % rl.probe_every == 0
                                      or trainer.step == rl.steps):
                _record(cfg, out, probe_file, probe.measure(trainer))
            if trainer.step in ckpts:       # saves: every rank (ZeRO-3 gathers), rank 0 writes
                trainer.save_policy(out / f"ckpt_{trainer.step:04d}")
            if trainer.step % rl.save_every == 0 or trainer.step in ckpts:
                trainer.save_state(out / "state")
            bar.set_postfix(reward=f"{row['reward']:.3f}", pass_rate=f"{row['pass_rate']:.2f}",
                            tok_s=f"{row['tokens_per_s']:.0f}")
            bar.update(1)
    trainer.save_policy(out / "model")
    if not is_main():
        return out
    (out / "DONE").write_text("ok\n")
    for leftover in ("state", "state.old", "state.tmp"):
        shutil.rmtree(out / leftover, ignore_errors=True)
    return out


def rollout_backend(cfg: Config, policy, tokenizer, out: Path):
    """rl.rollout_backend: "hf" generates with the trainer's policy in this process; "vllm"
    starts a worker serving a copy of it (out/vllm_policy), which the trainer refreshes after
    every update (PPOTrainer.sync_rollout_weights)."""
    from prmfast.rollout import HFGenerateBackend
    rl = cfg.rl
    if rl.rollout_backend == "hf":
        return HFGenerateBackend(policy, tokenizer, batch_size=cfg.sampling.batch_size)
    from prmfast.models import save_policy
    from prmfast.rollout.vllm_backend import VLLMBackend
    folder = out / f"vllm_policy_rank{get_rank()}"
    save_policy(policy, tokenizer, folder)
    args = ({"batch_size": cfg.sampling.batch_size} if rl.vllm_engine == "hf" else
            {"gpu_memory_utilization": rl.vllm_gpu_memory_utilization,
             "dtype": cfg.model.dtype, "seed": cfg.seed})
    return VLLMBackend(folder, python=rl.vllm_python or sys.executable, engine=rl.vllm_engine,
                       engine_args=args)


class Probe:
    """What the evaluation measures, while training: pass@1 at eval.temperature (eval.samples
    per task, fixed sampling seed) on the first rl.probe_tasks training and validation tasks.
    The per-iteration metrics sample at sampling.temperature (1.0), where a rising pass rate
    mostly shows the policy sharpening; this shows whether the programs it prefers change."""

    def __init__(self, cfg: Config):
        from prmfast.data import split_tasks
        self.cfg = cfg
        n = cfg.rl.probe_tasks
        self.sets = {"train": split_tasks(cfg, "train")[:n],
                     "validation": split_tasks(cfg, "validation")[:n]}

    def measure(self, trainer: PPOTrainer) -> dict:
        """{"step", "train_pass@1", "validation_pass@1", "time_probe"} for the current policy."""
        import time

        from prmfast.eval import evaluate_policy
        start = time.perf_counter()
        row = {"step": trainer.step}
        for split, tasks in self.sets.items():
            summary = evaluate_policy(
                trainer.backend, trainer.tokenizer, tasks, trainer.sandbox,
                samples=self.cfg.eval.samples, temperature=self.cfg.eval.temperature,
                max_new_tokens=self.cfg.sampling.max_new_tokens,
                length_threshold=self.cfg.eval.length_threshold, seed=self.cfg.seed)
            row[f"{split}_pass@1"] = summary["pass@1"]
        row["time_probe"] = round(time.perf_counter() - start, 3)
        return row


def _record(cfg: Config, out: Path, path: Path, row: dict) -> None:
    """Append row to the stage's JSONL file `path` and log it to the trackers (log.backends)."""
    _append_row(path, row)
    trackers.log(cfg, out.parent, out.name, row)


def _append_row(path: Path, row: dict) -> None:
    append_jsonl(path, [row])


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop rows of a stage's JSONL file (metrics, probe) past the resumed step (iterations
    that ran after the last save) and a last line torn by a hard kill (StageError for another
    line that is no JSON row). The file is replaced atomically: a kill mid-rewrite keeps every
    row."""
    if not path.exists():
        return
    write_jsonl(path, [row for row in read_jsonl(path) if row["step"] <= step])


def run_rl_baseline(cfg: Config, run_dir: str | Path, *, progress: bool = True) -> Path:
    """Pipeline stage: PPO with the sparse unit-test reward, critic from the policy, into
    DIR/rl_baseline (its checkpoints feed the collect stage)."""
    return run_rl(cfg, run_dir, "rl_baseline", progress=progress)


def run_rl_prm(cfg: Config, run_dir: str | Path, *, progress: bool = True) -> Path:
    """Pipeline stage: PPO with the PRM dense reward and the PRM-initialised critic
    (DenseReward + ValueInit), into DIR/rl_prm."""
    return run_rl(cfg, run_dir, "rl_prm", progress=progress)
