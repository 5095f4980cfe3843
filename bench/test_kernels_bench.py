"""Kernel benchmarks: each fast path against a named baseline written from its published
description, same run, ratio reported (and the results compared, so no baseline is a strawman).

Run: .venv/bin/python -m pytest bench/test_kernels_bench.py --benchmark-only"""
import pytest
import torch

from conftest import best_time, peak_rss_mib, saved_for_backward_mib
from prmfast import kernels

GAMMA, LAM, KL_COEF = 0.99, 0.95, 0.05


# ---- 1. dense_rewards_gae vs the per-timestep Python loop (TRL / OpenRLHF / verl) ----------

def padded_reward_batch(b, t, seed=0):
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(t // 4, t + 1, (b,), generator=gen)
    mask = torch.arange(t)[None, :] < lengths[:, None]
    f = lambda: torch.randn(b, t, generator=gen) * mask
    return dict(values=f(), prm_scores=f(), kl=f().abs(),
                line_end=(torch.rand(b, t, generator=gen) < 0.1) & mask,
                outcome=(torch.rand(b, generator=gen) < 0.5).float(),
                passed=torch.rand(b, generator=gen) < 0.5, mask=mask, lengths=lengths)


def loop_rewards_gae(values, prm_scores, kl, line_end, outcome, passed, mask, lengths):
    """Baseline: eager torch reward assembly on [B, T], then GAE as a Python loop over time steps
    (`for t in reversed(range(T))`), as TRL, OpenRLHF and verl compute it."""
    coef = torch.where(passed, 0.025, 0.25) / line_end.sum(1).clamp(min=1)
    rewards = -KL_COEF * kl + line_end * coef[:, None] * prm_scores
    rewards[torch.arange(len(lengths)), lengths - 1] += outcome
    rewards = rewards * mask
    values = values * mask
    last, steps = torch.zeros(values.shape[0]), values.shape[1]
    reversed_adv = []
    for t in reversed(range(steps)):
        next_values = values[:, t + 1] if t + 1 < steps else 0.0
        delta = rewards[:, t] + GAMMA * next_values - values[:, t]
        last = delta + GAMMA * LAM * last
        reversed_adv.append(last)
    advantages = torch.stack(reversed_adv[::-1], dim=1) * mask
    return rewards, advantages, advantages + values


@pytest.mark.parametrize("b,t", [(256, 2048), (64, 1024)])
def test_dense_rewards_gae_numba_vs_python_loop(benchmark, report, b, t):
    batch = padded_reward_batch(b, t)
    mask = batch["mask"]
    cu, values, prm, kl, ends = kernels.pack(mask, batch["values"], batch["prm_scores"],
                                             batch["kl"], batch["line_end"])
    fast = lambda: kernels.dense_rewards_gae(values, prm, ends, kl, batch["outcome"],
                                             batch["passed"], cu, gamma=GAMMA, lam=LAM,
                                             kl_coef=KL_COEF, prm_coef_fail=0.25,
                                             prm_coef_pass=0.025, normalize_by_lines=True,
                                             impl="numba")
    base = lambda: loop_rewards_gae(**batch)
    for got, expected in zip(fast(), base()):
        torch.testing.assert_close(got, expected[mask], rtol=1e-4, atol=1e-4)
    base_s = best_time(base, rounds=3)
    benchmark.pedantic(fast, rounds=20, warmup_rounds=2)
    fast_s = benchmark.stats.stats.min
    benchmark.extra_info.update(baseline_s=base_s, speedup=base_s / fast_s)
    report(f"dense_rewards_gae numba vs python loop B={b} T={t}", baseline_s=base_s,
           fast_s=fast_s, speedup=base_s / fast_s)


# ---- 2. ppo_loss fwd+bwd vs the eager torch composition ------------------------------------

def ppo_inputs(n, seed=0):
    gen = torch.Generator().manual_seed(seed)
    r = lambda s=1.0: torch.randn(n, generator=gen) * s
    old_lp, old_v = -torch.rand(n, generator=gen) * 3, r()
    return dict(logprobs=old_lp + r(0.2), old_logprobs=old_lp, advantages=r(),
                values=old_v + r(0.3), old_values=old_v, returns=r(),
                cu_seqlens=torch.tensor([0, n // 2, n]))


def eager_ppo_loss(logprobs, old_logprobs, advantages, values, old_values, returns, cu_seqlens):
    """Baseline: the clipped PPO + clipped value loss as plain eager torch ops (verl core_algos
    style compute_policy_loss + compute_value_loss), token mean."""
    ratio = torch.exp(logprobs - old_logprobs)
    pg = torch.maximum(-advantages * ratio, -advantages * ratio.clamp(0.8, 1.2))
    v_clipped = old_values + (values - old_values).clamp(-0.2, 0.2)
    vf = 0.5 * torch.maximum((values - returns) ** 2, (v_clipped - returns) ** 2)
    return pg.mean() + 0.5 * vf.mean()


def ppo_forward(kind, inputs):
    """-> (loss, logprobs leaf, values leaf) of `kind` ("fused" or "eager"), graph built."""
    lp = inputs["logprobs"].clone().requires_grad_(True)
    v = inputs["values"].clone().requires_grad_(True)
    args = dict(inputs, logprobs=lp, values=v)
    if kind == "fused":
        return kernels.ppo_loss(**args, clip_low=0.2, clip_high=0.2, dual_clip=None,
                                value_clip=0.2, vf_coef=0.5, impl="numba")[0], lp, v
    return eager_ppo_loss(**args), lp, v


def ppo_step(kind, n):
    """-> a closure running one forward + backward of `kind` ("fused" or "eager")."""
    inputs = ppo_inputs(n)
    def step():
        loss, lp, v = ppo_forward(kind, inputs)
        loss.backward()
        return loss.detach(), lp.grad, v.grad
    return step


def test_ppo_loss_numba_vs_eager_torch(benchmark, report):
    n = 512 * 1024
    fast, base = ppo_step("fused", n), ppo_step("eager", n)
    for got, expected in zip(fast(), base()):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-9)
    base_s = best_time(base, rounds=10)
    benchmark.pedantic(fast, rounds=10, warmup_rounds=2)
    fast_s = benchmark.stats.stats.min
    fast_mib = peak_rss_mib("test_kernels_bench", "ppo_step", "fused", n)
    base_mib = peak_rss_mib("test_kernels_bench", "ppo_step", "eager", n)
    inputs = ppo_inputs(n)
    fast_saved = saved_for_backward_mib(lambda: ppo_forward("fused", inputs), inputs.values())
    base_saved = saved_for_backward_mib(lambda: ppo_forward("eager", inputs), inputs.values())
    figures = dict(baseline_s=base_s, fast_s=fast_s, speedup=base_s / fast_s, peak_mib=fast_mib,
                   baseline_peak_mib=base_mib, saved_mib=fast_saved, baseline_saved_mib=base_saved)
    benchmark.extra_info.update(figures)
    report("ppo_loss fwd+bwd numba vs eager torch N=512k", **figures)


# ---- 3. token_logprobs fwd+bwd vs full-logits log_softmax + gather -------------------------

def logprobs_step(kind, n, h, v):
    gen = torch.Generator().manual_seed(0)
    hidden, weight = torch.randn(n, h, generator=gen), torch.randn(v, h, generator=gen) / h ** 0.5
    targets = torch.randint(0, v, (n,), generator=gen)
    def step():
        hl, wl = hidden.clone().requires_grad_(True), weight.clone().requires_grad_(True)
        if kind == "fused":
            lp = kernels.token_logprobs(hl, wl, targets, impl="numba")[0]
        else:  # baseline: materialise [N, V] logits, log_softmax, gather
            lp = torch.log_softmax(hl @ wl.T, dim=-1).gather(-1, targets[:, None]).squeeze(-1)
        lp.sum().backward()
        return lp.detach(), hl.grad, wl.grad
    return step


@pytest.mark.slow
def test_token_logprobs_numba_vs_full_logits(benchmark, report):
    shape = (8192, 512, 32768)
    fast, base = logprobs_step("fused", *shape), logprobs_step("full", *shape)
    for got, expected in zip(fast(), base()):
        torch.testing.assert_close(got, expected, rtol=1e-3, atol=1e-3)
    base_s = best_time(base, rounds=2)
    benchmark.pedantic(fast, rounds=2, warmup_rounds=0)
    fast_s = benchmark.stats.stats.min
    fast_mib = peak_rss_mib("test_kernels_bench", "logprobs_step", "fused", *shape)
    base_mib = peak_rss_mib("test_kernels_bench", "logprobs_step", "full", *shape)
    benchmark.extra_info.update(baseline_s=base_s, time_ratio=fast_s / base_s,
                                peak_mib=fast_mib, baseline_peak_mib=base_mib)
    report("token_logprobs fwd+bwd numba vs full logits N=8192 H=512 V=32768",
           baseline_s=base_s, fast_s=fast_s, time_ratio=fast_s / base_s, peak_mib=fast_mib,
           baseline_peak_mib=base_mib, memory_reduction=base_mib / max(fast_mib, 1e-9))


# ---- 4. line_scores fwd+bwd vs eager matmul + mask -----------------------------------------

def test_line_scores_numba_vs_eager(benchmark, report):
    n, h = 32768, 1024
    gen = torch.Generator().manual_seed(0)
    hidden, weight = torch.randn(n, h, generator=gen), torch.randn(h, generator=gen)
    bias, ends = torch.zeros(1), torch.rand(n, generator=gen) < 0.1

    def step(fused):
        hl, wl, bl = (t.clone().requires_grad_(True) for t in (hidden, weight, bias))
        if fused:
            scores = kernels.line_scores(hl, wl, bl, ends, impl="numba")
        else:  # baseline: full matmul, then mask
            scores = (hl @ wl + bl) * ends
        scores.sum().backward()
        return scores.detach(), hl.grad, wl.grad, bl.grad

    for got, expected in zip(step(True), step(False)):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-3)
    base_s = best_time(lambda: step(False), rounds=5)
    benchmark.pedantic(lambda: step(True), rounds=5, warmup_rounds=1)
    fast_s = benchmark.stats.stats.min
    benchmark.extra_info.update(baseline_s=base_s, speedup=base_s / fast_s)
    report("line_scores fwd+bwd numba vs eager matmul+mask N=32768 H=1024", baseline_s=base_s,
           fast_s=fast_s, speedup=base_s / fast_s)
