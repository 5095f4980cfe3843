"""Step-time breakdown of full RL iterations, for BENCHMARKS.md.

    python -m prmfast.rl.bench RUN_DIR [--preset P] [--steps 3] [--set key=value ...]
                               [--profile PROF [--profile-skip 1] [--profile-steps 2]]

Runs `--steps` PPO iterations of the dense + ValueInit variant (every forward of the method:
policy, reference, critic, PRM) from RUN_DIR's SFT policy and PRM, writing nothing to RUN_DIR,
and prints the mean time per part, the kernels' share of the iteration and response tokens per
second. The first iteration is dropped from the means when there are more than one (numba
compilation and allocator warm-up). `--profile PROF` records a torch profiler trace of a few
iterations into PROF/trace_rank0_rl_prm.json.gz (docs/scale.md, "Profiling").
bench/test_rl_iteration_bench.py builds its trainers with `build_trainer` too.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from prmfast import profiling
from prmfast.config import Config, load_config
from prmfast.rl.trainer import PPOTrainer

RUN = "rl_prm"


def bench_config(preset: str = "default", steps: int = 3, sets: list[str] | None = None) -> Config:
    """The rl_prm stage's config under `preset` and `sets`, for `steps` iterations with no
    checkpoints."""
    from prmfast.rl.stage import run_config
    return run_config(load_config(preset, sets=[*(sets or []), f"rl.steps={steps}",
                                                "rl.num_checkpoints=0"]), RUN)


def build_trainer(cfg: Config, run_dir: str | Path) -> PPOTrainer:
    """The trainer prmfast.rl.stage.run_rl builds for rl_prm on run_dir's sft/model and
    prm/model (HF rollouts in this process, a fresh sandbox); nothing is written. Close its
    sandbox (`trainer.sandbox.close()`) when done. StageError when a folder is missing."""
    from prmfast.data import split_tasks
    from prmfast.device import select_device
    from prmfast.models import ValueModel, load_policy
    from prmfast.prm import load_prm
    from prmfast.rl.stage import check_rl_ready
    from prmfast.rollout import HFGenerateBackend
    from prmfast.sandbox import Sandbox
    run_dir = Path(run_dir)
    check_rl_ready(cfg, run_dir, RUN)
    torch.manual_seed(cfg.seed)
    device = select_device(cfg.model.device)
    sft, prm_dir = run_dir / "sft" / "model", run_dir / "prm" / "model"
    policy, tokenizer = load_policy(sft, cfg.model.dtype, device=device)
    reference, _ = load_policy(sft, cfg.model.dtype, device=device)
    return PPOTrainer(
        cfg, policy=policy, reference=reference,
        critic=ValueModel.from_pretrained(prm_dir, device=device),
        prm=load_prm(prm_dir, device=device), tokenizer=tokenizer,
        tasks=split_tasks(cfg, "train"),
        backend=HFGenerateBackend(policy, tokenizer, batch_size=cfg.sampling.batch_size),
        sandbox=Sandbox(workers=cfg.sandbox.workers, timeout_s=cfg.sandbox.timeout_s,
                        memory_mb=cfg.sandbox.memory_mb))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m prmfast.rl.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", help="a run folder with sft/model and prm/model")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    profiling.add_cli_flags(parser)
    args = parser.parse_args(argv)
    from prmfast.report import timing_table
    cfg = bench_config(args.preset, args.steps, args.set)
    trainer = build_trainer(cfg, args.run_dir)
    profiling.configure(nvtx=args.nvtx)
    try:
        with profiling.profile_trace(args.profile) as traces, profiling.nvtx_range(RUN):
            rows = [trainer.train_step() for _ in range(args.steps)]
    finally:
        trainer.sandbox.close()
    rows = rows[1:] if len(rows) > 1 else rows
    print(timing_table({f"{RUN} ({cfg.rl.prompts_per_step}x{cfg.rl.samples_per_prompt} "
                        f"samples/iter)": rows}))
    print(json.dumps({"mean_response_tokens": sum(r["response_tokens"] for r in rows) / len(rows),
                      "iterations_measured": len(rows),
                      "traces": [str(p) for p in traces or []]}))


if __name__ == "__main__":
    main()
