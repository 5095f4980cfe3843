"""PRM metrics: line AUC and accuracy, first-error localisation, best-of-N reranking, the
within-task AUC, and how validation ranks candidate PRMs (epochs, ridge strengths).

Scores are per response, per line (lists of floats); groups are per task, (passed, line scores)
per sampled response. Pure Python on lists: no model, no tensors.
"""
from __future__ import annotations

import math
import random
from collections.abc import Hashable, Sequence

from prmfast.labeling.search import labels_from_line
from prmfast.prm.data import PRMExample


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


def ranking_metrics(task_ids: Sequence[Hashable], passed: Sequence[bool],
                    keys: Sequence[Hashable], scores: Sequence[Sequence[float]]) -> dict:
    """How a PRM ranks the samples of each task, from one entry per sample (its task, whether it
    passed, a key equal for identical responses, its line scores): {"rerank": rerank(...),
    "rerank_ci95": rerank_margins(...), "within_task": within_task_all(...)}. Samples of
    different runs pool by giving their tasks distinct ids (e.g. (run, task_id))."""
    if not len(task_ids) == len(passed) == len(keys) == len(scores):
        raise ValueError(f"one entry per sample: {len(task_ids)} task ids, {len(passed)} "
                         f"outcomes, {len(keys)} keys, {len(scores)} score lists")
    groups = group_by_task(task_ids, list(zip(passed, scores)))
    key_groups = group_by_task(task_ids, keys)
    return {"rerank": rerank(groups, key_groups), "rerank_ci95": rerank_margins(groups, key_groups),
            "within_task": within_task_all(groups)}


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

