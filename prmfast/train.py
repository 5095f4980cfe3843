"""The CLI: `python -m prmfast.train [STAGE] [--preset P] [--out DIR] [--config FILE] [--set k=v]`.

STAGE is one of STAGES or "all" (every stage of PIPELINE in order; the default). Each stage is a
function (cfg, run_dir) that writes run_dir/<stage>/ and skips itself when its DONE file exists,
so rerunning a command resumes the run. The config is resolved and checked before any work:
a bad key or value exits with code 2 and a message naming it. See docs/training.md.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from prmfast.config import PRESETS, Config, ConfigError, config_to_dict, load_config
from prmfast.errors import StageError

Stage = Callable[[Config, Path], object]


def _lazy(module: str, attr: str) -> Stage:
    """A stage whose module (torch, transformers, ...) is imported only when it runs."""
    def stage(cfg: Config, run_dir: Path):
        return getattr(importlib.import_module(module), attr)(cfg, run_dir)
    return stage



STAGES: dict[str, Stage] = {
    "sft": _lazy("prmfast.sft", "run"),
    "rl": _lazy("prmfast.rl.stage", "run_rl"),
    "rl_baseline": _lazy("prmfast.rl.stage", "run_rl_baseline"),
    "collect": _lazy("prmfast.labeling.collect", "run"),
    "prm": _lazy("prmfast.prm", "run"),
    "rl_prm": _lazy("prmfast.rl.stage", "run_rl_prm"),
    "eval": _lazy("prmfast.report", "run_eval"),
    "report": _lazy("prmfast.report", "run_report"),
}
PIPELINE = ("sft", "rl_baseline", "collect", "prm", "rl_prm", "eval", "report")
# value checks run before any stage starts: (module, function(cfg)), for every run and per stage
DATA_CHECK = ("prmfast.data.load", "check_data_config")
DEVICE_CHECK = ("prmfast.device", "check_device_config")
CHECKS: dict[str, tuple[str, str]] = {
    "collect": ("prmfast.labeling.collect", "check_collect_config"),
    "prm": ("prmfast.prm", "check_prm_config"),
    "rl": ("prmfast.rl.stage", "check_rl_config"),
    "rl_baseline": ("prmfast.rl.stage", "check_rl_baseline_config"),
    "rl_prm": ("prmfast.rl.stage", "check_rl_prm_config"),
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m prmfast.train",
        description="Train a code policy with PPO and a line-level PRM, stage by stage.")
    parser.add_argument("stage", nargs="?", default="all", choices=["all", *STAGES],
                        help="stage to run (default: all, the whole pipeline)")
    parser.add_argument("--preset", default="default", choices=sorted(PRESETS),
                        help="named set of overrides on the defaults (default: default)")
    parser.add_argument("--out", help="run folder (default: runs/<timestamp>)")
    parser.add_argument("--config", help="JSON or TOML file of overrides, applied after the preset")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one key, e.g. --set rl.steps=10 (repeatable; last wins)")
    parser.add_argument("--local_rank", "--local-rank", type=int, help=argparse.SUPPRESS)
    # ^ passed by the deepspeed launcher (the trainer reads LOCAL_RANK from the environment)
    from prmfast.profiling import add_cli_flags
    add_cli_flags(parser)                       # --nvtx, --profile DIR (docs/scale.md)
    return parser.parse_args(argv)


def torch_threads() -> int:
    """CPU threads for torch: the cores not already busy (1-minute load average), at least 1.
    On a shared machine oversubscribed OpenMP threads spin against each other (a tiny model's
    SFT step measured 0.7 s with 1 thread and 4-9 s with 2 on a loaded 2-core box)."""
    cores = os.cpu_count() or 1
    return max(1, min(cores, round(cores - os.getloadavg()[0])))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        cfg = load_config(args.preset, args.config, args.set)
        stages = PIPELINE if args.stage == "all" else (args.stage,)
        checks = [DATA_CHECK, DEVICE_CHECK] + [CHECKS[name] for name in stages if name in CHECKS]
        for module, function in checks:
            getattr(importlib.import_module(module), function)(cfg)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    run_dir = Path(args.out or cfg.out or Path("runs") / time.strftime("%Y%m%d-%H%M%S"))
    cfg.out = str(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    import torch
    from transformers.utils import logging as hf_logging
    torch.set_num_threads(torch_threads())
    hf_logging.disable_progress_bar()  # a bar per model load / save would bury the stage bars
    (run_dir / "config.json").write_text(json.dumps(config_to_dict(cfg), indent=2) + "\n")
    from prmfast import profiling
    profiling.configure(nvtx=args.nvtx)
    try:
        with profiling.profile_trace(args.profile):
            for name in stages:
                with profiling.nvtx_range(name):
                    STAGES[name](cfg, run_dir)
    except StageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\ninterrupted; rerun the same command with --out {run_dir} to resume",
              file=sys.stderr)
        return 130
    print(f"run folder: {run_dir}")
    from prmfast.distributed import exit_rank
    exit_rank(0)                      # under a launcher: leave the group together, then exit
    return 0


if __name__ == "__main__":
    sys.exit(main())
