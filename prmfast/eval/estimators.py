"""Estimators: the unbiased pass@k, best-of-K curves, pass rates per bucket, and the paired
bootstrap over tasks that compares two variants. Pure numpy on counts: no model, no sandbox.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c pass (Chen et al. 2021, "Evaluating Large
    Language Models Trained on Code"): 1 - C(n-c, k) / C(n, k), computed as a stable product."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def mean_pass_at_k(counts: list[tuple[int, int]], k: int) -> float:
    """Mean pass@k over tasks given (n, c) per task."""
    return float(np.mean([pass_at_k(n, c, k) for n, c in counts])) if counts else 0.0


def best_of_k_curve(counts: list[tuple[int, int]], max_k: int) -> list[float]:
    """[pass@1, ..., pass@K] for K = min(max_k, fewest samples of any task)."""
    top = min([max_k] + [n for n, _ in counts])
    return [mean_pass_at_k(counts, k) for k in range(1, top + 1)]


def paired_bootstrap(diffs, *, n_boot: int = 10_000, seed: int = 0, level: float = 0.95) -> dict:
    """Mean of paired per-task differences (e.g. pass@1 of variant A minus B on the same task,
    averaged over seeds) with a percentile bootstrap interval over tasks: the tasks are
    resampled with replacement n_boot times. diffs: [T] floats.
    {"mean": float, "low": float, "high": float, "n": T}; an interval above 0 means A beats B
    on tasks like these."""
    d = np.asarray(diffs, dtype=np.float64)
    if d.ndim != 1 or d.size == 0:
        raise ValueError(f"diffs must be a non-empty 1-D sequence, got shape {d.shape}")
    if not np.isfinite(d).all():
        raise ValueError("diffs has a non-finite value")
    if n_boot < 1 or not 0 < level < 1:
        raise ValueError(f"need n_boot >= 1 and 0 < level < 1, got {n_boot}, {level}")
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(n_boot, d.size))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return {"mean": float(d.mean()), "low": float(low), "high": float(high), "n": int(d.size)}


def length_bucket(n_tokens: int, threshold: int) -> str:
    """"short" for responses of at most `threshold` tokens, else "long"."""
    return "short" if n_tokens <= threshold else "long"


def bucket_rates(keys: list[str], passed: list[bool]) -> dict[str, dict]:
    """Pass rate per key over samples: {key: {"pass@1": float, "n": samples}}."""
    groups: dict[str, list[bool]] = defaultdict(list)
    for key, ok in zip(keys, passed):
        groups[key].append(ok)
    return {key: {"pass@1": float(np.mean(v)), "n": len(v)} for key, v in sorted(groups.items())}
