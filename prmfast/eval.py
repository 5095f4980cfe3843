"""Evaluation: the unbiased pass@k estimator, best-of-K curves, buckets, and one policy evaluator.

Paper protocol (DESIGN 1, step 6): pass@1 at temperature 0.2 with 10 samples per problem,
best-of-K for K up to 30, results split by response length (<= / > 100 tokens).
"""
from __future__ import annotations

import sys
from collections import defaultdict

import numpy as np

from prmfast.data import build_program, horizon_bucket
from prmfast.models import encode
from prmfast.sandbox import Job


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


def evaluate_policy(backend, tokenizer, tasks, sandbox, *, samples: int, temperature: float,
                    max_new_tokens: int, top_p: float = 1.0, length_threshold: int = 100,
                    max_k: int | None = None, seed: int = 0, progress: bool = False) -> dict:
    """Sample `samples` completions per task, run them in the sandbox, and summarise.

    Returns {"pass@1", "n_tasks", "samples", "temperature", "by_horizon" (tasks with
    meta["horizon"] only), "by_length" (threshold in "length_threshold"), "best_of_k" (when
    max_k), "stop_rate", "mean_response_tokens", "tasks": [{"task_id", "horizon", "passed",
    "n_tokens", "finish"}]}. With equal samples per task a bucket's pass@1 is the mean of its
    tasks' pass@1.
    """
    prompts = [encode(tokenizer, t.prompt) for t in tasks]
    groups = backend.generate(prompts, n=samples, max_new_tokens=max_new_tokens,
                              temperature=temperature, top_p=top_p, seed=seed, progress=progress)
    jobs = [Job(build_program(task, s.text), task.tests) for task, group in zip(tasks, groups)
            for s in group]
    results = iter(sandbox.run(jobs))
    per_task = []
    for task, group in zip(tasks, groups):
        per_task.append({"task_id": task.task_id, "horizon": task.meta.get("horizon"),
                         "passed": [next(results).passed for _ in group],
                         "n_tokens": [len(s.response_ids) for s in group],
                         "finish": [s.finish_reason for s in group]})
    flat = [(t, ok, n, f) for t in per_task for ok, n, f in zip(t["passed"], t["n_tokens"], t["finish"])]
    counts = [(len(t["passed"]), sum(t["passed"])) for t in per_task]
    with_h = [(t, ok) for t, ok, _, _ in flat if t["horizon"] is not None]
    summary = {
        "pass@1": mean_pass_at_k(counts, 1),
        "n_tasks": len(tasks),
        "samples": samples,
        "temperature": temperature,
        "by_horizon": bucket_rates([horizon_bucket(t["horizon"]) for t, _ in with_h],
                                   [ok for _, ok in with_h]),
        "length_threshold": length_threshold,
        "by_length": bucket_rates([length_bucket(n, length_threshold) for _, _, n, _ in flat],
                                  [ok for _, ok, _, _ in flat]),
        "stop_rate": float(np.mean([f == "stop" for *_, f in flat])) if flat else 0.0,
        "mean_response_tokens": float(np.mean([n for _, _, n, _ in flat])) if flat else 0.0,
        "tasks": per_task,
    }
    if max_k:
        summary["best_of_k"] = best_of_k_curve(counts, max_k)
    return summary


def main(argv=None) -> int:
    """`python -m prmfast.eval --model PATH --tasks ...`: the benchmark CLI (prmfast.bench_eval);
    returns its exit code."""
    from prmfast.bench_eval import main as bench_main
    return bench_main(argv)


if __name__ == "__main__":
    sys.exit(main())
