"""The "prm" stage: select the collected labels, train the PRM (fine-tuned or on a frozen
backbone, prm.pretrained), save it to DIR/prm/model and evaluate it into DIR/prm/eval.json
(held-out line metrics, reranking and within-task AUC on fresh test samples) and
DIR/prm/test_scores.jsonl (each test sample's line scores, so that reranking can be recomputed
and pooled over runs: scripts/prm_pooled.py); DONE last. The
fine-tuned kind is also saved in the standard format, DIR/prm/hf (a one-label
AutoModelForTokenClassification folder with a model card: ValuePRM.save_token_classifier).

    check_prm_config(cfg)            # the CLI's value checks of the prm.* keys
    run(cfg, run_dir) -> DIR/prm
"""
from __future__ import annotations

import dataclasses
import math
import random
from pathlib import Path

from prmfast.config import ConfigError
from prmfast.errors import StageError
from prmfast.labeling.select import SELECTIONS, keeps_passing, select
from prmfast.lines import segment
from prmfast.prm.model import PRM
from prmfast.runio import read_jsonl, save_whole, write_json, write_jsonl
from prmfast.prm.data import example, example_from_record
from prmfast.prm.metrics import (EARLY_STOPS, group_by_task, oracle_labels, ranking_metrics,
                                 response_metrics, within_task_all)


def split_by_task(records: list[dict], val_fraction: float,
                  seed: int) -> tuple[list[dict], list[dict]]:
    """Hold out a val_fraction of the tasks (all their responses) for validation."""
    ids = sorted({r["task_id"] for r in records})
    random.Random(seed).shuffle(ids)
    n_val = min(len(ids) - 1, max(1, round(len(ids) * val_fraction))) if len(ids) > 1 else 0
    val_ids = set(ids[:n_val])
    return ([r for r in records if r["task_id"] not in val_ids],
            [r for r in records if r["task_id"] in val_ids])


def check_prm_config(cfg) -> None:
    """Value checks of the prm.* keys, run by the CLI before any stage starts."""
    prm = cfg.prm
    if prm.selection not in SELECTIONS:
        raise ConfigError(f"prm.selection: {prm.selection!r} is not one of {sorted(SELECTIONS)}")
    if prm.early_stop not in EARLY_STOPS:
        raise ConfigError(f"prm.early_stop: {prm.early_stop!r} is not one of {list(EARLY_STOPS)}")
    if prm.early_stop == "within_task" and not keeps_passing(prm.selection):
        raise ConfigError(f"prm.early_stop: 'within_task' compares passing with failing "
                          f"responses, and prm.selection={prm.selection!r} keeps no passing one; "
                          "use prm.selection=full or passed_and_revised")
    for key in ("epochs", "batch_size", "rerank_n", "rerank_tasks"):
        if getattr(prm, key) < 1:
            raise ConfigError(f"prm.{key}: must be >= 1, got {getattr(prm, key)}")
    if not 0.0 < prm.val_fraction < 1.0:
        raise ConfigError(f"prm.val_fraction: must be in (0, 1), got {prm.val_fraction}")
    if prm.init not in ("sft", "rl_last") and not Path(prm.init).is_dir():
        raise ConfigError(f"prm.init: {prm.init!r} is neither 'sft', 'rl_last' nor a folder")
    if prm.pretrained is not None:
        path = Path(prm.pretrained)
        if not (path.is_dir() or (path.suffix == ".gguf" and path.is_file())):
            raise ConfigError(f"prm.pretrained: {prm.pretrained!r} is neither a model folder "
                              "nor a .gguf file")
    if prm.layer is not None and (prm.pretrained is None or prm.layer < 1):
        raise ConfigError(f"prm.layer: {prm.layer} needs prm.pretrained (a frozen backbone) and "
                          "a layer >= 1")
    if not prm.ridge or min(prm.ridge) <= 0:
        raise ConfigError(f"prm.ridge: needs one or more strengths > 0, got {prm.ridge}")


def init_path(cfg, out_dir: Path) -> Path:
    """Backbone source: "sft" = DIR/sft/model, "rl_last" = the last RL-baseline checkpoint,
    anything else a model folder."""
    from prmfast.labeling.policy import list_checkpoints
    if cfg.prm.init == "sft":
        return out_dir / "sft" / "model"
    if cfg.prm.init == "rl_last":
        ckpts = list_checkpoints(out_dir / "rl_baseline")
        return ckpts[-1] if ckpts else out_dir / "rl_baseline" / "ckpt_*"
    return Path(cfg.prm.init)


def check_prerequisites(cfg, out_dir: Path) -> None:
    """Fail early, naming what is missing."""
    done = out_dir / "prm_data" / "DONE"
    if not done.exists():
        raise StageError(f"{done} is missing: run the collect stage first, or finish it (rerun "
                         "it with the same --out); the PRM trains on its complete labels")
    if not init_path(cfg, out_dir).is_dir():
        raise StageError(f"PRM init {init_path(cfg, out_dir)} (prm.init={cfg.prm.init!r})"
                         " is missing: run the sft stage first or set prm.init")
    if not list(out_dir.glob("rl_baseline/ckpt_*")):
        raise StageError(f"no {out_dir}/rl_baseline/ckpt_*: the reranking test samples "
                         "from the last RL-baseline checkpoint")


def run(cfg, run_dir: str | Path) -> Path:
    """The "prm" stage: DIR/prm/model and DIR/prm/eval.json, DONE last; skips when DONE."""
    out_dir = Path(run_dir)
    if (out_dir / "prm" / "DONE").exists():
        print(f"prm: {out_dir / 'prm' / 'DONE'} exists, skipping")
        return out_dir / "prm"
    check_prerequisites(cfg, out_dir)
    from prmfast.data import split_tasks
    result = train_and_evaluate(cfg, out_dir, split_tasks(cfg, "test"))
    (out_dir / "prm" / "DONE").write_text("ok\n")
    test = result["test"]
    low, high = test["rerank_ci95"].get("prm_min-random", (math.nan, math.nan))
    print(f"prm: held-out AUC vs oracle {result['held_out']['oracle']['lines']['auc']:.3f}, "
          f"test AUC vs oracle {test['oracle']['lines']['auc']:.3f}; rerank pass@1 "
          f"random {test['rerank']['random']:.3f} / distinct {test['rerank']['random_distinct']:.3f}"
          f" / PRM-min {test['rerank']['prm_min']:.3f} (PRM-min - random, 95% CI "
          f"[{low:+.3f}, {high:+.3f}] over {test['rerank']['problems']} tasks)")
    print(f"prm: within-task AUC of PRM-min (a task's passing vs failing samples) "
          f"{test['within_task']['min']['auc']:.3f} on test, "
          f"{result['held_out']['within_task']['min']['auc']:.3f} on held-out responses")
    if not keeps_passing(cfg.prm.selection):
        print(f"prm: prm.selection={cfg.prm.selection} trains on failed responses only, whose "
              "last lines are all labelled -1: the PRM scores every program's last line low, so "
              "reranking by the minimum or last line score cannot pick passing programs (fine "
              "for the dense reward; to rerank use prm.selection=full or passed_and_revised)")
    return out_dir / "prm"


def evaluate_samples(prm: PRM, rows: list[dict], tokenizer,
                     scores_path: Path | None = None) -> dict:
    """Score sampled responses (rows of rerank_samples.jsonl: task_id, prompt_ids, response_ids,
    passed, oracle_m_star) and measure: line AUC / accuracy and first-error localisation against
    the oracle, best-of-N reranking per task (rerank) and how the PRM orders the responses of
    each task (within_task_auc). scores_path: also write one row per sample there (task_id,
    passed, response_ids, scores: its line scores), from which the measures can be recomputed."""
    lines = [segment(r["response_ids"], tokenizer) for r in rows]
    scores = prm.predict([example(r["prompt_ids"], r["response_ids"], ln.spans,
                                  [0.0] * len(ln.spans)) for r, ln in zip(rows, lines)],
                         progress=True)
    if scores_path is not None:
        write_jsonl(scores_path, ({"task_id": r["task_id"], "passed": r["passed"],
                                   "response_ids": r["response_ids"], "scores": sc}
                                  for r, sc in zip(rows, scores)))
    out = response_metrics(scores, [ln.is_comment for ln in lines],
                           {"oracle": [oracle_labels(ln.is_comment, r["passed"],
                                                     r.get("oracle_m_star"))
                                       for r, ln in zip(rows, lines)]})
    out.update(ranking_metrics([r["task_id"] for r in rows], [r["passed"] for r in rows],
                               [tuple(r["response_ids"]) for r in rows], scores))
    return out


def train_and_evaluate(cfg, out_dir: Path, test_tasks: list) -> dict:
    """Select, train, save (DIR/prm/model) and evaluate (DIR/prm/eval.json) the PRM."""
    from transformers import AutoTokenizer

    from prmfast.labeling.collect import sample_responses
    from prmfast.labeling.policy import Policy, list_checkpoints, make_sandbox
    from prmfast.device import select_device
    from prmfast.prm.frozen import FrozenBackbonePRM
    from prmfast.prm.model import ValuePRM
    from prmfast.prm.train import train_prm

    stage_dir = out_dir / "prm"
    stage_dir.mkdir(parents=True, exist_ok=True)
    records = read_jsonl(out_dir / "prm_data" / "labels.jsonl")
    train_recs, val_recs = split_by_task(records, cfg.prm.val_fraction, cfg.seed)
    train_sel, val_sel = (select(train_recs, cfg.prm.selection),
                          select(val_recs, cfg.prm.selection))
    if not train_sel:
        raise StageError(f"selection {cfg.prm.selection!r} keeps no training response out of "
                         f"{len(train_recs)}; collect more or choose another prm.selection")
    neutral = cfg.prm.neutral_comments
    device = select_device(cfg.model.device)
    tokenizer = AutoTokenizer.from_pretrained(init_path(cfg, out_dir))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    train_ex, val_ex = ([example_from_record(r, neutral) for r in recs]
                        for recs in (train_sel, val_sel))
    if cfg.prm.pretrained is not None:
        prm = FrozenBackbonePRM.from_backbone(cfg.prm.pretrained, tokenizer, device,
                                              cfg.prm.layer)
        history = prm.fit(train_ex, val_ex, cfg.prm)
        save_whole(stage_dir / "model", prm.save)
    else:
        prm = ValuePRM.load(init_path(cfg, out_dir), device, pad)
        history = train_prm(prm, train_ex, val_ex, cfg.prm, cfg.seed)
        save_whole(stage_dir / "model", lambda folder: prm.save_pretrained(folder, tokenizer))
        save_whole(stage_dir / "hf", lambda folder: prm.save_token_classifier(folder, tokenizer))

    if cfg.prm.early_stop == "within_task" and all(
            math.isnan(x) for x in history.get("val_within_task") or [math.nan]):
        print("prm: no validation task has both a passing and a failing response, so the "
              "validation MSE chose (prm.early_stop=within_task); more tasks "
              "(collect.num_prompts, prm.val_fraction) give it pairs")
    held_scores = prm.predict([example_from_record(r) for r in val_recs], progress=True)
    held_out = response_metrics(
        held_scores, [r["is_comment"] for r in val_recs],
        {"binary_search": [r["labels"] for r in val_recs],
         "oracle": [oracle_labels(r["is_comment"], r["passed"], r.get("oracle_m_star"))
                    for r in val_recs]})
    held_out["within_task"] = within_task_all(group_by_task(
        [r["task_id"] for r in val_recs],
        [(r["passed"], sc) for r, sc in zip(val_recs, held_scores)]))

    policy = Policy(list_checkpoints(out_dir / "rl_baseline")[-1], cfg, make_sandbox(cfg))
    rows = sample_responses(policy, test_tasks[:cfg.prm.rerank_tasks], cfg.prm.rerank_n, cfg,
                            stage_dir / "rerank_samples.jsonl", cfg.prm.rerank_temperature)
    test = evaluate_samples(prm, rows, policy.tokenizer, stage_dir / "test_scores.jsonl")
    result = {"selection": cfg.prm.selection, "neutral_comments": neutral,
              "prm_config": dataclasses.asdict(cfg.prm),
              "train_responses": len(train_sel), "val_responses": len(val_sel),
              "held_out_responses": len(val_recs), "test_samples": len(rows),
              "rerank_policy": policy.name,
              "history": {k: v for k, v in history.items() if k != "step_loss"},
              "held_out": held_out, "test": test}
    write_json(stage_dir / "eval.json", result)
    return result
