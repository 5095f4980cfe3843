"""The Process Reward Model: training by MSE on line labels, line scoring, evaluation.

PRM = prmfast.models.ValueModel (backbone initialised from the SFT policy by default, zero head);
the score of line m of a response is the head's output at the line's last token (the token that
holds its newline, prmfast.lines), computed by kernels.line_scores through ValueModel.line_scores.
With prm.pretrained the PRM is a prmfast.prm_frozen.FrozenBackbonePRM instead (a frozen
pretrained backbone with its own tokenizer and a ridge-fitted head); predict and the stage take
either.

Batches are padded [B, T] (right padding) and length-grouped to limit padding; the head and the
loss touch only line-end tokens (the packed line-end subset). On CPU with sdpa attention a padded
forward is what HF supports; a packed forward needs varlen attention (flash-attn, GPU only).
The PRM trains on model.device (prmfast.device); batches are built on the CPU and moved to the
PRM's device once.

Public API (the RL stage calls score_lines for dense rewards):
    PRMBatch(input_ids [B, T] long, attention_mask [B, T] long, line_end [B, T] bool,
             targets [B, T] float, zero off line ends)
    make_batch(prompts: list[list[int]], responses: list[list[int]], tokenizer,
               targets: list[list[float]] | None = None) -> PRMBatch
    score_lines(prm, batch) -> scores [B, T]: R_phi at line-end tokens, 0 elsewhere
    line_values(scores, batch) -> list[list[float]]: per response, per line
"""
from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from prmfast.config import ConfigError, PRMConfig
from prmfast.device import module_device
from prmfast.errors import StageError
from prmfast.labeling.search import labels_from_line
from prmfast.labeling.select import SELECTIONS, keeps_passing, select
from prmfast.lines import segment


# ---------------------------------------------------------------- examples and batches

@dataclass
class PRMExample:
    input_ids: list[int]        # prompt + response
    line_ends: list[int]        # per line: position of its last token in input_ids
    targets: list[float]        # per line
    weights: list[float] | None = None   # per line loss weight (None: all 1)
    task: str | None = None     # task id and outcome: validation's within-task AUC needs them
    passed: bool | None = None


@dataclass
class PRMBatch:
    input_ids: torch.Tensor     # [B, T] long
    attention_mask: torch.Tensor  # [B, T] long
    line_end: torch.Tensor      # [B, T] bool
    targets: torch.Tensor       # [B, T] float, 0 off line ends
    weights: torch.Tensor | None = None  # [B, T] float loss weights, 0 off line ends (None: 1)

    def to(self, device: torch.device | str) -> "PRMBatch":
        """The batch on `device` (itself when it is there already)."""
        return PRMBatch(*(None if t is None else t.to(device)
                          for t in (getattr(self, f.name) for f in dataclasses.fields(self))))


def comment_targets(labels: Sequence[int], is_comment: Sequence[bool],
                    neutral: bool = True) -> list[float]:
    """Training targets per line: the labels, with comment lines 0 (neutral) or, for the
    comment-hack experiment, the label of the nearest code line before (else after) them."""
    if len(labels) != len(is_comment):
        raise ValueError(f"labels has {len(labels)} values but is_comment has {len(is_comment)}")
    if neutral:
        return [0.0 if c else float(x) for x, c in zip(labels, is_comment)]
    out, last = [], None
    for x, c in zip(labels, is_comment):
        last = last if c else float(x)
        out.append(last)
    nxt = next((float(x) for x, c in zip(labels, is_comment) if not c), 0.0)
    return [nxt if v is None else v for v in out]


def example(prompt_ids: list[int], response_ids: list[int], spans: Sequence[Sequence[int]],
            targets: Sequence[float], task: str | None = None,
            passed: bool | None = None) -> PRMExample:
    """One PRM example: a target per line span (ValueError on a count mismatch); empty targets
    mark an unlabelled example (prediction only)."""
    if targets and len(targets) != len(spans):
        raise ValueError(f"targets has {len(targets)} values for {len(spans)} line spans")
    base = len(prompt_ids)
    return PRMExample(list(prompt_ids) + list(response_ids),
                      [base + end - 1 for _, end in spans], list(map(float, targets)),
                      task=task, passed=passed)


def example_from_record(rec: dict, neutral_comments: bool = True) -> PRMExample:
    """A labels.jsonl record -> PRMExample on its binary-search labels."""
    return example(rec["prompt_ids"], rec["response_ids"], rec["line_spans"],
                   comment_targets(rec["labels"], rec["is_comment"], neutral_comments),
                   rec["task_id"], rec["passed"])


def collate(examples: Sequence[PRMExample], pad_id: int,
            device: torch.device | str = "cpu") -> PRMBatch:
    """Right-padded batch [B, T_max] on `device` (built on the CPU, moved once)."""
    if not examples:
        raise ValueError("the batch is empty: collate needs at least one example")
    cpu = torch.device("cpu")
    width = max(1, max(len(e.input_ids) for e in examples))
    b = len(examples)
    ids = torch.full((b, width), pad_id, dtype=torch.long, device=cpu)
    mask = torch.zeros((b, width), dtype=torch.long, device=cpu)
    line_end = torch.zeros((b, width), dtype=torch.bool, device=cpu)
    targets = torch.zeros((b, width), device=cpu)
    weighted = any(e.weights is not None for e in examples)
    weights = torch.zeros((b, width), device=cpu) if weighted else None
    for i, e in enumerate(examples):
        if len(e.targets) != len(e.line_ends):
            raise ValueError(f"examples[{i}]: targets has {len(e.targets)} values for "
                             f"{len(e.line_ends)} line ends")
        if any(not 0 <= end < len(e.input_ids) for end in e.line_ends):
            raise ValueError(f"examples[{i}]: a line end lies outside its {len(e.input_ids)} "
                             f"tokens (line_ends {e.line_ends})")
        ids[i, :len(e.input_ids)] = torch.tensor(e.input_ids, dtype=torch.long, device=cpu)
        mask[i, :len(e.input_ids)] = 1
        if e.line_ends:
            line_end[i, e.line_ends] = True
            targets[i, e.line_ends] = torch.tensor(e.targets, device=cpu)
            if weighted:
                weights[i, e.line_ends] = (torch.tensor(e.weights, device=cpu)
                                           if e.weights is not None else 1.0)
    return PRMBatch(ids, mask, line_end, targets, weights).to(device)


def make_batch(prompts: list[list[int]], responses: list[list[int]], tokenizer,
               targets: list[list[float]] | None = None,
               device: torch.device | str = "cpu") -> PRMBatch:
    """Segment the responses (prmfast.lines) and build a padded batch on `device`; targets
    default to 0."""
    if len(prompts) != len(responses):
        raise ValueError(f"prompts has {len(prompts)} rows but responses has {len(responses)}")
    if targets is not None and len(targets) != len(responses):
        raise ValueError(f"targets has {len(targets)} rows but responses has {len(responses)}")
    exs = []
    for i, (p, r) in enumerate(zip(prompts, responses)):
        spans = segment(r, tokenizer).spans
        exs.append(example(p, r, spans, targets[i] if targets is not None else [0.0] * len(spans)))
    return collate(exs, tokenizer.pad_token_id, device)


def score_lines(prm, batch: PRMBatch) -> torch.Tensor:
    """PRM scores [B, T]: the head at line-end tokens, 0 elsewhere (differentiable)."""
    return prm.line_scores(batch.input_ids, batch.line_end, batch.attention_mask)


def line_values(scores: torch.Tensor, batch: PRMBatch) -> list[list[float]]:
    """Per response, the scores of its lines in order (one copy to the CPU)."""
    scores, line_end = scores.detach().float().cpu(), batch.line_end.cpu()
    return [row[mask].tolist() for row, mask in zip(scores, line_end)]


def mse_loss(scores: torch.Tensor, batch: PRMBatch) -> torch.Tensor:
    """Mean squared error over line-end tokens; weighted mean when the batch has weights."""
    w = batch.line_end.to(scores.dtype)
    if batch.weights is not None:
        w = w * batch.weights.to(scores.dtype)
    return ((scores - batch.targets) ** 2 * w).sum() / w.sum().clamp(min=1e-8)


def loss_weights(targets: Sequence[Sequence[float]], class_balance: bool = True,
                 response_norm: bool = False) -> list[list[float]]:
    """Per-line MSE weights for a training set (targets per response, per line).

    class_balance: +1 and -1 lines get weights (n+ + n-) / (2 n+) and (n+ + n-) / (2 n-), so the
    two classes carry equal total weight (mean weight over +-1 lines stays 1); neutral (0) lines
    keep weight 1. response_norm: each response's weights are rescaled to sum to the mean number
    of lines per response, so every response counts the same whatever its length. Both off: all 1.
    """
    pos = sum(t > 0 for ts in targets for t in ts)
    neg = sum(t < 0 for ts in targets for t in ts)
    w_pos = w_neg = 1.0
    if class_balance and pos and neg:
        w_pos, w_neg = (pos + neg) / (2 * pos), (pos + neg) / (2 * neg)
    out = [[w_pos if t > 0 else w_neg if t < 0 else 1.0 for t in ts] for ts in targets]
    if response_norm:
        lengths = [len(ts) for ts in targets if ts]
        mean_len = sum(lengths) / max(1, len(lengths))
        out = [[x * mean_len / sum(ws) for x in ws] if sum(ws) > 0 else ws for ws in out]
    return out


def with_weights(examples: Sequence[PRMExample], cfg: PRMConfig) -> list[PRMExample]:
    """Copies of the examples carrying the loss weights that cfg (class_balance, response_norm)
    asks for."""
    ws = loss_weights([e.targets for e in examples], cfg.class_balance, cfg.response_norm)
    return [dataclasses.replace(e, weights=w) for e, w in zip(examples, ws)]


def length_batches(examples: Sequence[PRMExample], batch_size: int,
                   rng: random.Random | None = None) -> list[list[PRMExample]]:
    """Batches of similar length (less padding); shuffled batch order when rng is given."""
    batches = [[examples[i] for i in group] for group in _length_groups(examples, batch_size)]
    if rng is not None:
        rng.shuffle(batches)
    return batches


def _length_groups(examples: Sequence[PRMExample], batch_size: int) -> list[list[int]]:
    """Positions of the examples in batches of similar length (sorted by length)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].input_ids))
    return [order[s:s + batch_size] for s in range(0, len(order), batch_size)]


@torch.no_grad()
def predict(prm, examples: Sequence[PRMExample], pad_id: int,
            batch_size: int = 64) -> list[list[float]]:
    """Per-line scores for each example (same order). prm: a ValueModel or a
    prmfast.prm_frozen.FrozenBackbonePRM (which re-tokenizes; pad_id is the policy's)."""
    from prmfast.prm_frozen import FrozenBackbonePRM
    if isinstance(prm, FrozenBackbonePRM):
        return prm.predict(examples, min(batch_size, 16), progress=True)
    was = prm.training
    prm.eval()
    device = module_device(prm)
    out: list[list[float] | None] = [None] * len(examples)
    for group in _length_groups(examples, batch_size):
        batch = collate([examples[i] for i in group], pad_id, device)
        for i, vals in zip(group, line_values(score_lines(prm, batch), batch)):
            out[i] = vals                             # by position: repeated objects are fine
    prm.train(was)
    return out


# ---------------------------------------------------------------- training

def train_prm(prm, train: Sequence[PRMExample], val: Sequence[PRMExample], cfg: PRMConfig,
              pad_id: int, seed: int = 0, progress: bool = True) -> dict:
    """AdamW on the (weighted, see loss_weights) MSE; the head may have its own learning rate
    (cfg.head_lr). After each epoch the validation set is scored (validation_metrics); early
    stopping (patience in epochs) ranks epochs by selection_key on cfg.early_stop. The best
    epoch's weights are loaded back into prm. Returns the history (per-step and per-epoch)."""
    if cfg.early_stop not in EARLY_STOPS:
        raise ValueError(f"prm.early_stop must be one of {EARLY_STOPS}, got {cfg.early_stop!r}")
    if cfg.batch_size < 1:
        raise ValueError(f"prm.batch_size must be >= 1, got {cfg.batch_size}")
    if not train:
        raise ValueError("there are no training examples to train the PRM on")
    rng = random.Random(seed)
    train, val = with_weights(train, cfg), with_weights(val, cfg)
    head = list(prm.head.parameters())
    head_ids = {id(q) for q in head}
    groups = [{"params": [q for q in prm.parameters() if id(q) not in head_ids], "lr": cfg.lr},
              {"params": head, "lr": cfg.head_lr if cfg.head_lr is not None else cfg.lr}]
    opt = torch.optim.AdamW(groups, weight_decay=0.0)
    device = module_device(prm)
    history = {"step_loss": [], "train_loss": [], "val_loss": [], "val_auc": [],
               "val_within_task": []}
    best, best_state, bad_epochs = None, None, 0
    for epoch in range(cfg.epochs):
        prm.train()
        batches = length_batches(train, cfg.batch_size, rng)
        losses = []
        for group in tqdm(batches, desc=f"prm epoch {epoch + 1}", disable=not progress):
            batch = collate(group, pad_id, device)
            loss = mse_loss(score_lines(prm, batch), batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(prm.parameters(), 1.0)
            opt.step()
            losses.append(loss.item())
        history["step_loss"] += losses
        history["train_loss"].append(sum(losses) / max(1, len(losses)))
        if val:
            metrics = validation_metrics(val, predict(prm, val, pad_id, cfg.batch_size))
        else:
            metrics = {"loss": history["train_loss"][-1], "auc": math.nan,
                       "within_task": math.nan}
        for name, value in metrics.items():
            history[f"val_{name}"].append(value)
        key = selection_key(metrics, cfg.early_stop)
        if best is None or key > best:               # the best weights, kept on the CPU
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in prm.state_dict().items()}
            best, bad_epochs = key, 0
            history["best_epoch"] = epoch + 1
        else:
            bad_epochs += 1
            if bad_epochs > cfg.patience:
                break
    if best_state is not None:
        prm.load_state_dict(best_state)
    history["epochs_run"] = len(history["train_loss"])
    if "best_epoch" in history:
        for name in ("loss", "auc", "within_task"):
            history[f"best_val_{name}"] = history[f"val_{name}"][history["best_epoch"] - 1]
    return history


EARLY_STOPS = ("loss", "auc", "within_task")


def selection_key(metrics: dict[str, float], early_stop: str) -> tuple[float, float]:
    """How validation ranks candidate PRMs (epochs, ridge strengths); higher is better.
    metrics: as validation_metrics returns. "loss": the validation MSE. "auc": the line AUC
    first; "within_task": the within-task AUC of PRM-min first (what reranking needs). For both
    the validation MSE breaks ties and stands in when the metric is undefined (validation lacks
    a class, or a task with both passing and failing responses)."""
    first = math.nan if early_stop == "loss" else metrics[early_stop]
    return (-math.inf if math.isnan(first) else first, -metrics["loss"])


def validation_metrics(examples: Sequence[PRMExample],
                       scores: Sequence[Sequence[float]]) -> dict[str, float]:
    """{"loss": weighted MSE over lines, "auc": line AUC against the targets' signs (0-target
    lines skipped), "within_task": within_task_auc of PRM-min (nan unless every example has its
    task and outcome)} for per-example, per-line scores."""
    if len(scores) != len(examples):
        raise ValueError(f"scores has {len(scores)} rows for {len(examples)} examples")
    total = count = 0.0
    flat, positive = [], []
    for i, (e, sc) in enumerate(zip(examples, scores)):
        if len(sc) != len(e.targets):
            raise ValueError(f"scores[{i}] has {len(sc)} values for {len(e.targets)} line targets")
        for s, t, w in zip(sc, e.targets, e.weights or [1.0] * len(sc)):
            total, count = total + w * (s - t) ** 2, count + w
            if t != 0:
                flat.append(s)
                positive.append(t > 0)
    within = math.nan
    if examples and all(e.task is not None and e.passed is not None for e in examples):
        within = within_task_auc(group_by_task([e.task for e in examples],
                                               [(e.passed, sc) for e, sc in
                                                zip(examples, scores)]))["auc"]
    return {"loss": total / max(1e-8, count), "auc": roc_auc(flat, positive),
            "within_task": within}


# ---------------------------------------------------------------- metrics

def roc_auc(scores: Sequence[float], positive: Sequence[bool]) -> float:
    """Area under the ROC curve (Mann-Whitney, ties count half); nan without both classes."""
    if len(scores) != len(positive):
        raise ValueError(f"scores has {len(scores)} values but positive has {len(positive)}")
    if not all(math.isfinite(v) for v in scores):
        raise ValueError("scores has a non-finite value (an AUC of NaN scores has no order)")
    pos = sum(map(bool, positive))
    neg = len(positive) - pos
    if pos == 0 or neg == 0:
        return float("nan")
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    rank_sum, i = 0.0, 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        mid_rank = (i + j) / 2 + 1
        rank_sum += mid_rank * sum(bool(positive[order[t]]) for t in range(i, j + 1))
        i = j + 1
    return (rank_sum - pos * (pos + 1) / 2) / (pos * neg)


def line_metrics(scores: Sequence[Sequence[float]],
                 labels: Sequence[Sequence[int] | None]) -> dict:
    """Line-level AUC and sign accuracy over lines labelled +-1 (label 0 / None skipped)."""
    s, y = [], []
    for sc, lab in zip(scores, labels):
        if lab is None:
            continue
        for v, t in zip(sc, lab):
            if t != 0:
                s.append(v)
                y.append(t > 0)
    acc = sum((v >= 0) == t for v, t in zip(s, y)) / len(s) if s else float("nan")
    return {"auc": roc_auc(s, y), "accuracy": acc, "lines": len(s), "positive": sum(y)}


def first_negative_line(scores: Sequence[float], is_comment: Sequence[bool]) -> int | None:
    """0-based index of the first code line the PRM scores below 0; None if none."""
    return next((i for i, (v, c) in enumerate(zip(scores, is_comment)) if not c and v < 0), None)


def localisation(scores: Sequence[Sequence[float]], is_comment: Sequence[Sequence[bool]],
                 first_errors: Sequence[int | None]) -> dict:
    """Accuracy of first_negative_line against the true first error line (0-based), over the
    responses that have one; also within one line."""
    hits = near = n = 0
    for sc, com, err in zip(scores, is_comment, first_errors):
        if err is None:
            continue
        got = first_negative_line(sc, com)
        n += 1
        hits += got == err
        near += got is not None and abs(got - err) <= 1
    return {"accuracy": hits / n if n else float("nan"),
            "within_one": near / n if n else float("nan"), "responses": n}


AGGREGATES = ("min", "last", "mean")


def aggregate(scores: Sequence[float], how: str) -> float:
    """A response's score from its line scores: min / last / mean; -inf without lines (an empty
    response is never picked over one with lines)."""
    if how not in AGGREGATES:
        raise ValueError(f"unknown aggregate {how!r}; choose one of {AGGREGATES}")
    if not scores:
        return -math.inf
    if how == "min":
        return min(scores)
    if how == "last":
        return scores[-1]
    if how == "mean":
        return sum(scores) / len(scores)
    raise ValueError(f"unknown aggregate {how!r}; choose one of {AGGREGATES}")


def rerank(groups: Sequence[Sequence[tuple[bool, Sequence[float]]]],
           keys: Sequence[Sequence[Hashable]] | None = None) -> dict:
    """Best-of-N by the PRM as pass@1. groups: per problem, N (passed, line scores) samples.
    random = expected pass rate of a uniform pick; prm_min / prm_last / prm_mean = pass rate of
    the sample with the highest minimum / last / mean line score (ties share the pick: the
    expected pass rate of a uniform choice among the tied samples); oracle = any passes.
    keys (per problem, one hashable per sample, equal for identical responses) add two
    score-free baselines: random_distinct = a uniform pick among the distinct responses (what a
    scorer that cannot tell them apart does, whatever it ranks first), majority = the most
    frequent response (ties share the pick)."""
    _check_groups(groups)
    n = len(groups)
    if n == 0:
        return {}
    out = {"problems": n, "n": max(len(g) for g in groups),
           "random": sum(sum(p for p, _ in g) / len(g) for g in groups) / n,
           "oracle": sum(any(p for p, _ in g) for g in groups) / n}
    for how in AGGREGATES:
        out[f"prm_{how}"] = sum(_best_pass_rate([p for p, _ in g],
                                                [aggregate(sc, how) for _, sc in g])
                                for g in groups) / n
    if keys is not None:
        _check_keys(groups, keys)
        distinct, majority = 0.0, 0.0
        for g, k in zip(groups, keys):
            by_key: dict[Hashable, list[bool]] = {}
            for (passed, _), key in zip(g, k):
                by_key.setdefault(key, []).append(passed)
            rates = [sum(v) / len(v) for v in by_key.values()]
            distinct += sum(rates) / len(rates)
            majority += _best_pass_rate(rates, [len(v) for v in by_key.values()])
        out["random_distinct"], out["majority"] = distinct / n, majority / n
    return out


def within_task_auc(groups: Sequence[Sequence[tuple[bool, Sequence[float]]]],
                    how: str = "min") -> dict:
    """How well response scores (the `how` aggregate of the line scores) order the responses of
    one task: the probability that a passing response outscores a failing one of the same task
    (ties count half), over every such pair of every task. Unlike a line AUC over all
    responses, task difficulty cannot raise it: it measures what best-of-N reranking and a
    dense reward within a prompt's samples rely on. groups: per task, (passed, line scores) per
    response. {"auc": float (nan without a pair), "pairs": int}."""
    if how not in AGGREGATES:
        raise ValueError(f"unknown aggregate {how!r}; choose one of {AGGREGATES}")
    _check_groups(groups)
    wins, pairs = 0.0, 0
    for g in groups:
        good = [aggregate(sc, how) for passed, sc in g if passed]
        bad = [aggregate(sc, how) for passed, sc in g if not passed]
        for a in good:
            wins += sum(1.0 if a > b else 0.5 if a == b else 0.0 for b in bad)
        pairs += len(good) * len(bad)
    return {"auc": wins / pairs if pairs else math.nan, "pairs": pairs}


def _check_groups(groups: Sequence[Sequence[tuple[bool, Sequence[float]]]]) -> None:
    """ValueError for an empty group or a non-finite line score (names the task index)."""
    for t, g in enumerate(groups):
        if not g:
            raise ValueError(f"groups[{t}] (task {t}) has no samples")
        if not all(math.isfinite(v) for _, sc in g for v in sc):
            raise ValueError(f"groups[{t}] (task {t}) has a non-finite line score")


def _check_keys(groups: Sequence[Sequence], keys: Sequence[Sequence[Hashable]]) -> None:
    """ValueError unless keys has one key per sample of every group."""
    if len(keys) != len(groups):
        raise ValueError(f"keys has {len(keys)} groups but groups has {len(groups)}")
    for t, (g, k) in enumerate(zip(groups, keys)):
        if len(k) != len(g):
            raise ValueError(f"keys[{t}] has {len(k)} keys for the {len(g)} samples of groups[{t}]")


def within_task_all(groups: Sequence[Sequence[tuple[bool, Sequence[float]]]]) -> dict:
    """within_task_auc for every aggregate: {"min": {...}, "last": {...}, "mean": {...}}."""
    return {how: within_task_auc(groups, how) for how in AGGREGATES}


def group_by_task(task_ids: Sequence[str], items: Sequence) -> list[list]:
    """items grouped by their task, tasks in first-seen order (e.g. the (passed, line scores)
    per response that rerank and within_task_auc take)."""
    if len(task_ids) != len(items):
        raise ValueError(f"task_ids has {len(task_ids)} values but items has {len(items)}")
    groups: dict[str, list] = {}
    for t, item in zip(task_ids, items):
        groups.setdefault(t, []).append(item)
    return list(groups.values())


def rerank_margins(groups: Sequence[Sequence[tuple[bool, Sequence[float]]]],
                   keys: Sequence[Sequence[Hashable]] | None = None, n_boot: int = 2000,
                   seed: int = 0) -> dict[str, list[float]]:
    """95 % paired-bootstrap intervals, over problems, of PRM-min reranking minus each score-free
    baseline (random; majority when keys are given): {"prm_min-random": [low, high], ...}.
    Arguments as rerank; an interval above 0 means the PRM picks better than the baseline."""
    _check_groups(groups)                              # names the task index, not 0
    if keys is not None:
        _check_keys(groups, keys)
    if not groups:
        return {}
    per = [rerank([g], None if keys is None else [keys[i]]) for i, g in enumerate(groups)]
    rng = random.Random(seed)
    out = {}
    for base in ("random", "majority"):
        if base not in per[0]:
            continue
        diffs = [p["prm_min"] - p[base] for p in per]
        means = sorted(sum(rng.choice(diffs) for _ in diffs) / len(diffs) for _ in range(n_boot))
        out[f"prm_min-{base}"] = [means[int(0.025 * n_boot)], means[int(0.975 * n_boot) - 1]]
    return out


def _best_pass_rate(pass_rates: Sequence[float], values: Sequence[float]) -> float:
    """Expected pass rate of picking the highest value, ties picked uniformly."""
    top = max(values)
    tied = [p for p, v in zip(pass_rates, values) if v == top]
    return sum(tied) / len(tied)


def oracle_labels(is_comment: Sequence[bool], passed: bool,
                  oracle_m_star: int | None) -> list[int] | None:
    """Per-line labels by the synthetic oracle; None for a failing response the oracle has no
    first error for (unusable)."""
    if passed:
        return labels_from_line(is_comment, None)
    return None if oracle_m_star is None else labels_from_line(is_comment, oracle_m_star)


def first_bad_index(labels: Sequence[int] | None) -> int | None:
    """0-based index of the first line labelled -1 (None if none or unlabelled)."""
    return None if labels is None else next((i for i, x in enumerate(labels) if x < 0), None)


def response_metrics(scores: Sequence[Sequence[float]], is_comment: Sequence[Sequence[bool]],
                     truth: dict[str, Sequence[Sequence[int] | None]]) -> dict:
    """Line AUC/accuracy and first-error localisation against each named set of labels."""
    return {name: {"lines": line_metrics(scores, labels),
                   "first_error": localisation(scores, is_comment,
                                               [first_bad_index(x) for x in labels])}
            for name, labels in truth.items()}


# ---------------------------------------------------------------- the "prm" stage

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


def evaluate_samples(prm, rows: list[dict], tokenizer, pad_id: int) -> dict:
    """Score sampled responses (rows of rerank_samples.jsonl: task_id, prompt_ids, response_ids,
    passed, oracle_m_star) and measure: line AUC / accuracy and first-error localisation against
    the oracle, best-of-N reranking per task (rerank) and how the PRM orders the responses of
    each task (within_task_auc)."""
    lines = [segment(r["response_ids"], tokenizer) for r in rows]
    scores = predict(prm, [example(r["prompt_ids"], r["response_ids"], ln.spans,
                                   [0.0] * len(ln.spans)) for r, ln in zip(rows, lines)], pad_id)
    task_ids = [r["task_id"] for r in rows]
    groups = group_by_task(task_ids, [(r["passed"], sc) for r, sc in zip(rows, scores)])
    keys = group_by_task(task_ids, [tuple(r["response_ids"]) for r in rows])
    out = response_metrics(scores, [ln.is_comment for ln in lines],
                           {"oracle": [oracle_labels(ln.is_comment, r["passed"],
                                                     r.get("oracle_m_star"))
                                       for r, ln in zip(rows, lines)]})
    out["rerank"] = rerank(groups, keys)
    out["rerank_ci95"] = rerank_margins(groups, keys)
    out["within_task"] = within_task_all(groups)
    return out


def train_and_evaluate(cfg, out_dir: Path, test_tasks: list) -> dict:
    """Select, train, save (DIR/prm/model) and evaluate (DIR/prm/eval.json) the PRM."""
    from transformers import AutoTokenizer

    from prmfast.labeling.collect import sample_responses
    from prmfast.labeling.policy import Policy, list_checkpoints, make_sandbox
    from prmfast.device import select_device
    from prmfast.labeling.store import read_jsonl, write_json
    from prmfast.models import ValueModel
    from prmfast.prm_frozen import FrozenBackbonePRM
    from prmfast.sft import save_whole

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
        prm = ValueModel.from_pretrained(init_path(cfg, out_dir), device=device)
        history = train_prm(prm, train_ex, val_ex, cfg.prm, pad, cfg.seed)
        save_whole(stage_dir / "model", lambda folder: prm.save_pretrained(folder, tokenizer))

    if cfg.prm.early_stop == "within_task" and all(
            math.isnan(x) for x in history.get("val_within_task") or [math.nan]):
        print("prm: no validation task has both a passing and a failing response, so the "
              "validation MSE chose (prm.early_stop=within_task); more tasks "
              "(collect.num_prompts, prm.val_fraction) give it pairs")
    held_scores = predict(prm, [example_from_record(r) for r in val_recs], pad)
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
    test = evaluate_samples(prm, rows, policy.tokenizer, pad)
    result = {"selection": cfg.prm.selection, "neutral_comments": neutral,
              "prm_config": dataclasses.asdict(cfg.prm),
              "train_responses": len(train_sel), "val_responses": len(val_sel),
              "held_out_responses": len(val_recs), "test_samples": len(rows),
              "rerank_policy": policy.name,
              "history": {k: v for k, v in history.items() if k != "step_loss"},
              "held_out": held_out, "test": test}
    write_json(stage_dir / "eval.json", result)
    return result
