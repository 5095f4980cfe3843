"""pass@k, best-of-K, buckets and evaluate_policy with a scripted backend and sandbox."""
import itertools
from math import comb

import pytest

from prmfast.data import Task
from prmfast.eval import (best_of_k_curve, bucket_rates, evaluate_policy, length_bucket,
                          mean_pass_at_k, pass_at_k)
from prmfast.rollout import Sample
from prmfast.sandbox import CallTests, Result


@pytest.mark.parametrize("n,c,k,want", [
    (10, 0, 1, 0.0), (10, 10, 1, 1.0), (10, 3, 1, 0.3), (5, 2, 2, 1 - comb(3, 2) / comb(5, 2)),
    (4, 1, 3, 0.75), (5, 4, 2, 1.0), (1, 1, 1, 1.0), (30, 1, 30, 1.0),
])
def test_pass_at_k_hand_cases_on_cpu(n, c, k, want):
    assert pass_at_k(n, c, k) == pytest.approx(want)


def test_pass_at_k_equals_subset_enumeration_on_cpu():
    for n in range(1, 7):
        for c in range(n + 1):
            outcomes = [True] * c + [False] * (n - c)
            for k in range(1, n + 1):
                subsets = list(itertools.combinations(outcomes, k))
                assert pass_at_k(n, c, k) == pytest.approx(sum(map(any, subsets)) / len(subsets))


def test_pass_at_k_rejects_bad_counts_on_cpu():
    with pytest.raises(ValueError):
        pass_at_k(3, 4, 1)
    with pytest.raises(ValueError):
        pass_at_k(3, 1, 4)


def test_curve_and_buckets_on_cpu():
    counts = [(4, 1), (4, 0), (2, 2)]
    assert mean_pass_at_k(counts, 1) == pytest.approx((0.25 + 0 + 1) / 3)
    curve = best_of_k_curve(counts, max_k=30)
    assert len(curve) == 2 and curve[0] == pytest.approx(mean_pass_at_k(counts, 1))
    assert curve == sorted(curve)
    assert length_bucket(100, 100) == "short" and length_bucket(101, 100) == "long"
    assert bucket_rates(["a", "b", "a"], [True, False, False]) == {
        "a": {"pass@1": 0.5, "n": 2}, "b": {"pass@1": 0.0, "n": 1}}


class ScriptedBackend:
    """Sample j of every prompt has j + 1 tokens and text "ok" when j is even."""

    def generate(self, prompt_ids, *, n, max_new_tokens, temperature, top_p=1.0, seed=None,
                 progress=False):
        return [[Sample(p, [0] * (j + 1), [0.0] * (j + 1), "stop" if j else "length",
                        "    return 1\n" if j % 2 == 0 else "    return 0\n")
                 for j in range(n)] for p in prompt_ids]


class ScriptedSandbox:
    def run(self, jobs):
        return [Result(passed="return 1" in job.program, status="passed") for job in jobs]


class CharTokenizer:
    def __call__(self, text, add_special_tokens=False, split_special_tokens=False):
        return {"input_ids": [ord(ch) for ch in text]}


def test_evaluate_policy_on_cpu():
    tests = CallTests("f", [([[1]], 1)])
    tasks = [Task(f"t{h}", "def f(xs):\n", tests, "f", None, {"horizon": h}) for h in (1, 4, 7)]
    tasks.append(Task("nohorizon", "def f(xs):\n", tests, "f", None, {}))
    out = evaluate_policy(ScriptedBackend(), CharTokenizer(), tasks, ScriptedSandbox(),
                          samples=4, temperature=0.2, max_new_tokens=8, length_threshold=2,
                          max_k=3)
    assert out["pass@1"] == pytest.approx(0.5) and out["n_tasks"] == 4
    assert set(out["by_horizon"]) == {"short", "medium", "long"}
    assert all(b == {"pass@1": 0.5, "n": 4} for b in out["by_horizon"].values())
    # samples 0, 1 (1 and 2 tokens) are short: one passes; samples 2, 3 are long: one passes
    assert out["by_length"] == {"short": {"pass@1": 0.5, "n": 8}, "long": {"pass@1": 0.5, "n": 8}}
    assert out["best_of_k"] == pytest.approx([0.5, 1 - 1 / 6, 1.0])
    assert out["stop_rate"] == 0.75 and out["mean_response_tokens"] == 2.5
    assert out["tasks"][0]["passed"] == [True, False, True, False]


def test_paired_bootstrap_hand_cases_on_cpu():
    from prmfast.eval import paired_bootstrap
    same = paired_bootstrap([0.25] * 7, n_boot=200)
    assert same == {"mean": 0.25, "low": 0.25, "high": 0.25, "n": 7}
    # two tasks, differences 0 and 1: resampled means are 0, 0.5, 1 with probabilities
    # 1/4, 1/2, 1/4, so the 2.5 % and 97.5 % percentiles are 0 and 1
    two = paired_bootstrap([0.0, 1.0], n_boot=20_000, seed=1)
    assert (two["mean"], two["low"], two["high"]) == (0.5, 0.0, 1.0)
    # 400 tasks, half +0.1 and half -0.1 around +0.02: mean 0.02, interval about
    # 0.02 +- 1.96 * 0.1 / sqrt(400) = [0.0102, 0.0298]
    many = paired_bootstrap([0.12, -0.08] * 200, n_boot=20_000)
    assert abs(many["mean"] - 0.02) < 1e-12
    assert abs(many["low"] - 0.0102) < 0.002 and abs(many["high"] - 0.0298) < 0.002


def test_paired_bootstrap_rejects_bad_input_on_cpu():
    from prmfast.eval import paired_bootstrap
    for bad in ([], [[0.1, 0.2]], [0.1, float("nan")]):
        with pytest.raises(ValueError):
            paired_bootstrap(bad)
    with pytest.raises(ValueError):
        paired_bootstrap([0.1], n_boot=0)
