"""One policy on a list of tasks: sample, run in the sandbox, summarise.

Paper protocol (docs/design.md, "Evaluation"): pass@1 at temperature 0.2 with 10 samples per
problem, best-of-K for K up to 30, results split by response length (<= / > 100 tokens).
"""
from __future__ import annotations

import numpy as np

from prmfast.data import build_program, horizon_bucket
from prmfast.eval.estimators import best_of_k_curve, bucket_rates, length_bucket, mean_pass_at_k
from prmfast.models import encode
from prmfast.sandbox import Job


def evaluate_policy(backend, tokenizer, tasks, sandbox, *, samples: int, temperature: float,
                    max_new_tokens: int, length_threshold: int, top_p: float = 1.0,
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
    jobs = [Job(build_program(task, s.text), task.tests, stop_on_failure=True)
            for task, group in zip(tasks, groups) for s in group]  # only the verdicts are kept
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
