"""The pipeline's "eval" stage: every finished model of a run on the test split.

    run_eval(cfg, DIR)    pass@1 (eval.temperature, eval.samples per task) overall, per horizon
                          bucket and per response-length bucket, best-of-K up to eval.max_k, for
                          each model present (sft, rl_baseline, rl_prm, any other rl_* run) ->
                          DIR/eval/<model>.json, DIR/eval.json

eval.json schema (one entry per model):
    {"models": {name: {"pass@1": float, "by_horizon": {"short"|"medium"|"long": float},
                       "by_length": {"<=100"|">100": float}, "best_of_k": {"1": float, ...},
                       "n_tasks": int, "path": str}}, "settings": {...}}
"""
from __future__ import annotations

import json
from pathlib import Path

from prmfast.errors import StageError
from prmfast.runio import write_json


def model_dirs(run_dir: Path) -> dict[str, Path]:
    """Models to evaluate, in report order: sft, rl_baseline, rl_prm, then other rl_* runs."""
    run_dir = Path(run_dir)
    found = {"sft": run_dir / "sft" / "model"}
    for stage in sorted(run_dir.glob("rl_*"), key=lambda p: (p.name not in ("rl_baseline",
                                                                             "rl_prm"), p.name)):
        found[stage.name] = stage / "model"
    return {name: path for name, path in found.items()
            if path.is_dir() and (path.parent / "DONE").exists()}


def run_eval(cfg, run_dir: str | Path, *, progress: bool = True) -> Path:
    """Evaluate every finished model of the run on the test split (one JSON per model, so an
    interrupted stage resumes with the models still missing). Returns DIR/eval.json."""
    run_dir = Path(run_dir)
    models = model_dirs(run_dir)
    if not models:
        raise StageError(f"no finished model under {run_dir} (run the sft stage first)")
    out = run_dir / "eval"
    out.mkdir(parents=True, exist_ok=True)
    evaluator = Evaluator(cfg)
    results = {name: evaluator.evaluate(path, out / f"{name}.json", progress=progress)
               for name, path in models.items()}
    summary = {"models": results, "settings": evaluator.settings()}
    write_json(run_dir / "eval.json", summary)
    (out / "DONE").write_text("ok\n")
    return run_dir / "eval.json"


class Evaluator:
    """The test split and a sandbox, loaded once; evaluate(model folder) per model. One sampling
    run per model with n = max(eval.samples, eval.max_k) completions per task at
    eval.temperature gives both the pass@1 estimate and the best-of-K curve."""

    def __init__(self, cfg):
        from prmfast.data import split_tasks
        from prmfast.sandbox import Sandbox
        self.cfg = cfg
        self.tasks = split_tasks(cfg, "test")[:cfg.eval.max_tasks]
        self.sandbox = Sandbox(workers=cfg.sandbox.workers, timeout_s=cfg.sandbox.timeout_s,
                               memory_mb=cfg.sandbox.memory_mb)

    def settings(self) -> dict:
        ev = self.cfg.eval
        return {"samples": max(ev.samples, ev.max_k), "temperature": ev.temperature,
                "max_k": ev.max_k, "length_threshold": ev.length_threshold,
                "n_tasks": len(self.tasks)}

    def evaluate(self, model_dir: Path, cache: Path, *, progress: bool = True) -> dict:
        """The eval.json entry of the policy in model_dir; cached in `cache` (with the raw
        per-task results), so a rerun only evaluates what is missing."""
        from prmfast.device import select_device
        from prmfast.eval import evaluate_policy
        from prmfast.models import load_policy
        from prmfast.rollout import HFGenerateBackend
        if not cache.exists():
            cfg, ev = self.cfg, self.cfg.eval
            policy, tokenizer = load_policy(model_dir, cfg.model.dtype,
                                            device=select_device(cfg.model.device))
            raw = evaluate_policy(
                HFGenerateBackend(policy, tokenizer, batch_size=cfg.sampling.batch_size),
                tokenizer, self.tasks, self.sandbox, samples=max(ev.samples, ev.max_k),
                temperature=ev.temperature, max_new_tokens=cfg.sampling.max_new_tokens,
                length_threshold=ev.length_threshold, max_k=ev.max_k, seed=cfg.seed,
                progress=progress)
            write_json(cache, {**summarise(raw, ev.length_threshold), "path": str(model_dir),
                               "raw": raw}, indent=1)
        return {k: v for k, v in json.loads(cache.read_text()).items() if k != "raw"}


def summarise(raw: dict, length_threshold: int) -> dict:
    """The eval.json entry of a model from prmfast.eval.evaluate_policy's result."""
    names = {"short": f"<={length_threshold}", "long": f">{length_threshold}"}
    return {"pass@1": raw["pass@1"],
            "by_horizon": {k: v["pass@1"] for k, v in raw.get("by_horizon", {}).items()},
            "by_length": {names.get(k, k): v["pass@1"] for k, v in raw.get("by_length", {}).items()},
            "best_of_k": {str(k + 1): v for k, v in enumerate(raw.get("best_of_k", []))},
            "n_tasks": raw.get("n_tasks"), "stop_rate": raw.get("stop_rate"),
            "mean_response_tokens": raw.get("mean_response_tokens")}
