"""Non-finite inputs and rounding edge cases: the fast paths and the torch reference agree (the
NaN policy of docs/kernels.md: a NaN or inf reaches the outputs it feeds, and only those)."""
import os

import pytest
import torch

from kernel_batches import PPO_COEFS, REWARD_COEFS, ppo_batch, reward_batch
from prmfast import kernels

IMPLS = ["numba", pytest.param("triton", marks=pytest.mark.skipif(
    os.environ.get("TRITON_INTERPRET") != "1", reason="CPU Triton tests need TRITON_INTERPRET=1"))]


def _same(actual, expected):
    """Equal where finite, and non-finite in the same places (NaN vs NaN, inf vs inf)."""
    actual, expected = actual.double(), expected.double()
    assert torch.equal(actual.isnan(), expected.isnan())
    torch.testing.assert_close(actual.nan_to_num(), expected.nan_to_num(), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nonfinite_scores_off_line_ends_do_not_leak_on_cpu(impl, bad):
    b = reward_batch(4)
    off = (~b["line_end"]).nonzero().flatten()
    b["prm_scores"][off[torch.randperm(off.numel(), generator=torch.Generator().manual_seed(0))[:5]]] = bad
    args = {k: v for k, v in b.items() if k != "values"}
    expected = kernels.dense_rewards(**args, kl_coef=0.1, **REWARD_COEFS, impl="torch")
    assert expected.isfinite().all()
    _same(kernels.dense_rewards(**args, kl_coef=0.1, **REWARD_COEFS, impl=impl), expected)
    _same(kernels.dense_rewards_gae(**b, gamma=1.0, lam=0.95, kl_coef=0.1, **REWARD_COEFS, impl=impl)[2],
          kernels.dense_rewards_gae(**b, gamma=1.0, lam=0.95, kl_coef=0.1, **REWARD_COEFS, impl="torch")[2])


@pytest.mark.parametrize("impl", ["torch", *IMPLS])
def test_nonfinite_hidden_rows_off_line_ends_reach_no_gradient_on_cpu(impl):
    gen = torch.Generator().manual_seed(5)
    hidden = torch.randn(9, 4, generator=gen, dtype=torch.float64)
    line_end = torch.tensor([0, 1, 0, 0, 1, 1, 0, 0, 1], dtype=torch.bool)
    hidden[~line_end] = float("nan")
    hidden.requires_grad_(True)
    weight = torch.randn(4, generator=gen, dtype=torch.float64, requires_grad=True)
    scores = kernels.line_scores(hidden, weight, 0.5, line_end, impl=impl)
    scores.sum().backward()
    assert scores.isfinite().all() and weight.grad.isfinite().all()
    assert hidden.grad[line_end].isfinite().all()


@pytest.mark.parametrize("impl", IMPLS)
def test_ppo_loss_nan_tokens_keep_their_nan_gradient_and_are_not_counted_clipped_on_cpu(impl):
    results = {}
    for name in ("torch", impl):
        b = ppo_batch(6, n=40)
        b["logprobs"][[3, 17]] = float("nan")
        b["values"][[5, 17]] = float("nan")
        lp, v = b["logprobs"].requires_grad_(True), b["values"].requires_grad_(True)
        loss, stats = kernels.ppo_loss(**b, **PPO_COEFS, impl=name)
        loss.backward()
        results[name] = (lp.grad, v.grad, stats)
    (lp_ref, v_ref, st_ref), (lp_g, v_g, st) = results["torch"], results[impl]
    _same(lp_g, lp_ref)
    _same(v_g, v_ref)
    for key in ("clipfrac", "vf_clipfrac"):
        assert abs(float(st[key]) - float(st_ref[key])) < 1e-6, key


@pytest.mark.parametrize("impl", ["torch", *IMPLS])
def test_values_inside_the_clip_range_are_never_counted_clipped_on_cpu(impl):
    gen = torch.Generator().manual_seed(7)
    n = 20000
    # drawn apart in [-0.099, 0.099] (|v - old| < 0.2): old + (v - old) rounds away from v
    old_values, values = ((torch.rand(n, generator=gen) - 0.5) * 0.198 for _ in range(2))
    zeros = torch.zeros(n)
    _, stats = kernels.ppo_loss(zeros, zeros, zeros, values, old_values,
                                torch.randn(n, generator=gen), torch.tensor([0, n]),
                                **PPO_COEFS, impl=impl)
    assert float(stats["vf_clipfrac"]) == 0.0
