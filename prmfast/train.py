"""The CLI: `python -m prmfast.train [STAGE] [--preset P] [--out DIR] [--config FILE] [--set k=v]`.

STAGE is one of STAGES or "all" (every stage of PIPELINE in order; the default). Each stage is a
function (cfg, run_dir) that writes run_dir/<stage>/ and skips itself when its DONE file exists,
so rerunning a command resumes the run. The config is resolved and checked before any work:
a bad key or value, or settings other than those the run folder's outputs were made with
(check_rerun), exits with code 2 and a message naming the key. See docs/training.md.
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

from prmfast.config import (PRESETS, Config, ConfigError, check_ranges, config_to_dict, flatten,
                            load_config, save_config)
from prmfast.data import DataError
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
    "prm": _lazy("prmfast.prm.stage", "run"),
    "rl_prm": _lazy("prmfast.rl.stage", "run_rl_prm"),
    "eval": _lazy("prmfast.eval.stage", "run_eval"),
    "report": _lazy("prmfast.report", "run_report"),
}
PIPELINE = ("sft", "rl_baseline", "collect", "prm", "rl_prm", "eval", "report")
# value checks run before any stage starts: check_ranges on the sections the stages read, then
# (module, function(cfg)) for every run and per stage
COMMON_SECTIONS = ("model", "sampling", "sandbox")   # read by every stage that loads a model
SECTIONS: dict[str, tuple[str, ...]] = {
    "sft": ("sft", "eval"),                           # eval.length_threshold
    "rl": ("rl",), "rl_baseline": ("rl",), "rl_prm": ("rl",),
    "collect": ("collect",), "prm": ("prm",), "eval": ("eval",), "report": (),
}
DATA_CHECK = ("prmfast.data.load", "check_data_config")
DEVICE_CHECK = ("prmfast.device", "check_device_config")
MODEL_CHECK = ("prmfast.config", "check_model_config")
LOG_CHECK = ("prmfast.trackers", "check_log_config")
CHECKS: dict[str, tuple[str, str]] = {
    "sft": ("prmfast.config", "check_sft_config"),
    "collect": ("prmfast.labeling.collect", "check_collect_config"),
    "prm": ("prmfast.prm.stage", "check_prm_config"),
    "rl": ("prmfast.rl.stage", "check_rl_config"),
    "rl_baseline": ("prmfast.rl.stage", "check_rl_baseline_config"),
    "rl_prm": ("prmfast.rl.stage", "check_rl_prm_config"),
}
RL_LAUNCH_CHECK = ("prmfast.rl.stage", "check_rl_launch")  # how the process was started
# Rerunning a command on a run folder resumes it, so the settings must be those its outputs were
# made with (check_rerun). Keys that cannot change results may differ:
NEUTRAL_KEYS = ("out", "model.device", "sandbox.workers", "rl.vllm_python", "log.backends")
# The sections only one stage's outputs depend on (named like the stage; rl: the RL stages) may
# differ between commands on one folder (`rl --set rl.reward=partial` next to rl_baseline, a PRM
# variant) until the stage's folder exists; DIR/config.json keeps them as their stage last ran.
# An RL stage compares rl.* with the config its own folder records (DIR/rl_*/config.json).
STAGE_FOLDERS = {"collect": "prm_data", "prm": "prm", "eval": "eval"}
RL_STAGES = ("rl", "rl_baseline", "rl_prm")
STAGE_OWNED = ("rl", *STAGE_FOLDERS)
# Keys of a stage-owned section that another stage reads too: compared when that stage runs on
# a folder where it has outputs (the SFT evaluation's length buckets).
READ_ACROSS = {"sft": ("eval.length_threshold",)}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m prmfast.train",
        description="Train a code policy with PPO and a line-level PRM, stage by stage.")
    parser.add_argument("stage", nargs="?", default="all", choices=["all", *STAGES],
                        help="stage to run (default: all, the whole pipeline)")
    parser.add_argument("--preset", default="default", choices=sorted(PRESETS),
                        help="named set of overrides on the defaults (default: default)")
    parser.add_argument("--out", help="run folder (default: runs/<timestamp>)")
    parser.add_argument("--config", help="JSON, TOML or YAML file of overrides, applied after "
                        "the preset")
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


def check_config(cfg: Config, stages: tuple[str, ...]) -> None:
    """Every value check of the stages, before any work; ConfigError names the key."""
    check_ranges(cfg, *COMMON_SECTIONS, *(s for name in stages for s in SECTIONS[name]))
    checks = [DATA_CHECK, DEVICE_CHECK, MODEL_CHECK, LOG_CHECK]
    checks += [CHECKS[n] for n in stages if n in CHECKS]
    if any(n in RL_STAGES for n in stages):
        checks.append(RL_LAUNCH_CHECK)
    for module, function in checks:
        getattr(importlib.import_module(module), function)(cfg)


def run_folder(args: argparse.Namespace, cfg: Config) -> Path:
    """--out, else the config's `out`, else runs/<timestamp>; an empty path is a ConfigError."""
    out = args.out if args.out is not None else cfg.out
    if out == "":
        raise ConfigError(f"{'--out' if args.out is not None else 'out'}: empty path; name a run "
                          "folder (or leave it out for runs/<timestamp>)")
    return Path(out) if out is not None else Path("runs") / time.strftime("%Y%m%d-%H%M%S")


def saved_config(path: Path) -> dict | None:
    """The nested config a run folder recorded at `path`; None when there is none."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path} is not a readable saved config ({exc}); use a new "
                          "--out") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is not a saved config (a JSON object); use a new --out")
    return data


def config_changes(old: dict, new: dict, keys, where: str = "") -> list[str]:
    """"key: old -> new" for each of `keys` (dotted) both flat configs hold with other values,
    NEUTRAL_KEYS aside."""
    return [f"{key}: {json.dumps(old[key])} -> {json.dumps(new[key])}{where}" for key in keys
            if key in old and key not in NEUTRAL_KEYS and old[key] != new[key]]


def rl_changes(cfg: Config, run_dir: Path, stage: str) -> list[str]:
    """config_changes of rl.* against the config the RL stage's folder recorded (if any)."""
    from prmfast.rl.stage import run_config, variant_name
    name = f"rl_{variant_name(cfg.rl)}" if stage == "rl" else stage
    saved = saved_config(run_dir / name / "config.json")
    if saved is None:
        return []
    new = flatten(config_to_dict(run_config(cfg, name)))
    return config_changes(flatten(saved), new, [k for k in new if k.startswith("rl.")],
                          f" ({name})")


def has_outputs(run_dir: Path) -> bool:
    """Whether run_dir holds anything besides config.json (a command that failed before any
    stage wrote leaves only config.json: its settings may still be fixed)."""
    return run_dir.is_dir() and any(p.name != "config.json" for p in run_dir.iterdir())


def check_rerun(cfg: Config, run_dir: Path, stages: tuple[str, ...]) -> dict:
    """The config to record in DIR/config.json. ConfigError when the folder's outputs were made
    with other settings: the run's shared keys, the section of a stage that runs and whose folder
    exists, rl.* against an RL folder's own record (NEUTRAL_KEYS aside)."""
    old = (saved_config(run_dir / "config.json") if has_outputs(run_dir) else None) or {}
    new = flatten(config_to_dict(cfg))
    compared = {section for section in old if section not in STAGE_OWNED}
    compared |= {name for name in stages
                 if name in STAGE_FOLDERS and (run_dir / STAGE_FOLDERS[name]).exists()}
    keys = [k for k in new if k.split(".")[0] in compared]
    keys += [k for name in stages if (run_dir / name).exists()
             for k in READ_ACROSS.get(name, ()) if k not in keys]
    changes = config_changes(flatten(old), new, keys)
    changes += [c for name in stages if name in RL_STAGES for c in rl_changes(cfg, run_dir, name)]
    if changes:
        raise ConfigError(f"--out {run_dir} was run with other settings ({'; '.join(changes)}): "
                          "rerun with the same settings to resume it, or use a new --out")
    ran = {"rl" if name in RL_STAGES else name for name in stages}
    record = config_to_dict(cfg)
    for section in set(STAGE_OWNED) - ran:      # kept as the stage that owns it last ran
        if isinstance(old.get(section), dict):
            record[section].update({k: v for k, v in old[section].items() if k in record[section]})
    return record


def make_run_folder(run_dir: Path, record: dict) -> None:
    """Create run_dir and write its config.json, atomically (OSError when the path cannot be a
    folder)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(run_dir / "config.json", record)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stages = PIPELINE if args.stage == "all" else (args.stage,)
    try:
        cfg = load_config(args.preset, args.config, args.set)
        check_config(cfg, stages)
        run_dir = run_folder(args, cfg)
        cfg.out = str(run_dir)
        record = check_rerun(cfg, run_dir, stages)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    try:
        make_run_folder(run_dir, record)
    except OSError as exc:
        reason = "exists and is not a folder" if isinstance(exc, FileExistsError) else exc.strerror
        print(f"error: --out {run_dir}: {reason or exc}", file=sys.stderr)
        return 2
    import torch
    from transformers.utils import logging as hf_logging
    torch.set_num_threads(torch_threads())
    hf_logging.disable_progress_bar()  # a bar per model load / save would bury the stage bars
    from prmfast import profiling, trackers
    profiling.configure(nvtx=args.nvtx)
    try:
        with profiling.profile_trace(args.profile):
            for name in stages:
                with profiling.nvtx_range(name):
                    pending = trackers.summary_pending(run_dir, name)
                    try:
                        STAGES[name](cfg, run_dir)
                        if pending:             # its eval.json, to the trackers (log.backends)
                            trackers.log_summary(cfg, run_dir, name)
                    finally:
                        trackers.close_all()    # the stage's tracker runs
    except (StageError, DataError) as exc:
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
