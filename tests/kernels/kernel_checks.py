"""Equivalence checks of a fast impl against the float64 torch reference, shared by the numba
and Triton test files. Inputs are drawn on the CPU from a seeded generator and moved to `device`
(the reference runs there too). Output and gradient buffers of the fast path are poisoned with
NaN."""
import pytest
import torch

from kernel_batches import as_float64, ppo_batch, reward_batch
from prmfast import kernels
from prmfast.kernels import fused

REWARD_KW = dict(kl_coef=0.05, prm_coef_fail=0.25, prm_coef_pass=0.025)


@pytest.fixture
def poisoned_buffers(monkeypatch):
    """Every output / gradient / logits buffer the fast paths allocate starts as NaN."""
    def nan_buffer(shape, dtype, device):
        return torch.full(shape if isinstance(shape, tuple) else (shape,), float("nan"),
                          dtype=dtype, device=device)
    monkeypatch.setattr(fused, "new_buffer", nan_buffer)


def assert_close(actual, expected, tol):
    torch.testing.assert_close(actual.double(), expected.double(), rtol=tol, atol=tol, equal_nan=False)


def _to(batch, device):
    return {k: v.to(device) for k, v in batch.items()}


def check_gae(impl, seed, gamma, lam, dtype, tol, device="cpu", **shape):
    batch = _to(reward_batch(seed, dtype=dtype, **shape), device)
    ref = as_float64(batch)
    rewards = batch["prm_scores"]
    expected = kernels.gae(ref["prm_scores"], ref["values"], ref["cu_seqlens"], gamma=gamma, lam=lam,
                           impl="torch")
    got = kernels.gae(rewards, batch["values"], batch["cu_seqlens"], gamma=gamma, lam=lam, impl=impl)
    for g, e in zip(got, expected):
        assert_close(g, e, tol)


def check_dense_rewards_gae(impl, seed, gamma, lam, normalize, dtype, tol, device="cpu", **shape):
    batch = _to(reward_batch(seed, dtype=dtype, **shape), device)
    ref = as_float64(batch)
    kw = dict(REWARD_KW, normalize_by_lines=normalize)
    expected = kernels.dense_rewards_gae(**ref, gamma=gamma, lam=lam, impl="torch", **kw)
    got = kernels.dense_rewards_gae(**batch, gamma=gamma, lam=lam, impl=impl, **kw)
    for g, e in zip(got, expected):
        assert_close(g, e, tol)
    only_rewards = {k: v for k, v in batch.items() if k != "values"}
    assert_close(kernels.dense_rewards(**only_rewards, impl=impl, **kw), expected[0], tol)


def _leaf(t, dtype=None):
    return t.detach().to(dtype or t.dtype).requires_grad_(True)


def check_line_scores(impl, seed, n, h, dtype, tol, device="cpu"):
    gen = torch.Generator().manual_seed(seed)
    hidden, weight, bias, line_end, upstream = (t.to(device) for t in (
        torch.randn(n, h, generator=gen, dtype=torch.float64),
        torch.randn(h, generator=gen, dtype=torch.float64),
        torch.randn(1, generator=gen, dtype=torch.float64),
        torch.rand(n, generator=gen) < 0.3,
        torch.randn(n, generator=gen, dtype=torch.float64)))
    results = []
    for run_impl, run_dtype in (("torch", torch.float64), (impl, dtype)):
        leaves = [_leaf(t.to(dtype).double(), run_dtype) for t in (hidden, weight, bias)]
        scores = kernels.line_scores(*leaves, line_end, impl=run_impl)
        (scores.double() * upstream).sum().backward()
        results.append([scores] + [t.grad for t in leaves])
    for got, expected in zip(results[1], results[0]):
        assert_close(got, expected, tol)
    assert not results[1][0][~line_end].any()


def check_ppo_loss(impl, seed, dual_clip, dtype, tol, n=300, device="cpu"):
    batch = _to(ppo_batch(seed, n=n, dtype=dtype), device)
    results = []
    for run_impl, run_batch in (("torch", as_float64(batch)), (impl, batch)):
        lp, v = _leaf(run_batch["logprobs"]), _leaf(run_batch["values"])
        inputs = dict(run_batch, logprobs=lp, values=v)
        loss, stats = kernels.ppo_loss(**inputs, dual_clip=dual_clip, clip_low=0.2, clip_high=0.28,
                                       value_clip=0.2, vf_coef=0.5, impl=run_impl)
        (2.5 * loss).backward()
        results.append((loss, stats, lp.grad, v.grad))
    (loss, stats, g_lp, g_v), (e_loss, e_stats, e_lp, e_v) = results[1], results[0]
    assert_close(loss, e_loss, tol)
    assert_close(g_lp, e_lp, tol)
    assert_close(g_v, e_v, tol)
    assert set(stats) >= {"pg_loss", "vf_loss", "clipfrac", "vf_clipfrac", "approx_kl"}
    for name, value in e_stats.items():
        assert not stats[name].requires_grad
        assert_close(stats[name], value, tol)
    assert 0 < float(e_stats["clipfrac"]) < 1 and 0 < float(e_stats["vf_clipfrac"]) < 1


def check_token_logprobs(impl, seed, n, h, vocab, temperature, chunk_size, dtype, tol, monkeypatch,
                         chunk_elements=None, device="cpu"):
    if chunk_elements:
        monkeypatch.setattr(fused, "DEFAULT_CHUNK_ELEMENTS", chunk_elements)
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, h, generator=gen, dtype=torch.float64).to(device, dtype)
    weight = (torch.randn(vocab, h, generator=gen, dtype=torch.float64) / h ** 0.5 * 3).to(device, dtype)
    targets = torch.randint(0, vocab, (n,), generator=gen).to(device)
    up_lp, up_ent = (torch.randn(n, generator=gen, dtype=torch.float64).to(device) for _ in range(2))
    results = []
    for run_impl, run_dtype in (("torch", torch.float64), (impl, dtype)):
        hl, wl = _leaf(hidden, run_dtype), _leaf(weight, run_dtype)
        lp, ent = kernels.token_logprobs(hl, wl, targets, temperature=temperature,
                                         chunk_size=chunk_size, impl=run_impl)
        ((lp.double() * up_lp).sum() + (ent.double() * up_ent).sum()).backward()
        results.append((lp, ent, hl.grad, wl.grad))
    for got, expected in zip(results[1], results[0]):
        assert_close(got, expected, tol)
