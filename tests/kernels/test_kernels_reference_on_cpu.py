"""The torch reference against a plain per-token Python reading of docs/design.md, "Kernels",
plus gradcheck of its differentiable ops."""
import math

import pytest
import torch

from kernel_batches import PPO_COEFS, REWARD_COEFS, ppo_batch, reward_batch
from prmfast import kernels


def naive_rewards_gae(b, gamma, lam, kl_coef, normalize):
    cu = b["cu_seqlens"].tolist()
    n = cu[-1]
    rewards, adv = [0.0] * n, [0.0] * n
    for s in range(len(cu) - 1):
        begin, end = cu[s], cu[s + 1]
        lines = sum(bool(b["line_end"][t]) for t in range(begin, end)) if normalize else 1
        coef = 0.025 if b["passed"][s] else 0.25
        for t in range(begin, end):
            r = -kl_coef * float(b["kl"][t])
            if b["line_end"][t] and lines > 0:
                r += coef * float(b["prm_scores"][t]) / lines
            if t == end - 1:
                r += float(b["outcome"][s])
            rewards[t] = r
        nxt_a = nxt_v = 0.0
        for t in reversed(range(begin, end)):
            v = float(b["values"][t])
            nxt_a = rewards[t] + gamma * nxt_v - v + gamma * lam * nxt_a
            adv[t], nxt_v = nxt_a, v
    return torch.tensor(rewards, dtype=torch.float64), torch.tensor(adv, dtype=torch.float64)


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("gamma,lam", [(0.0, 0.0), (1.0, 1.0), (0.95, 0.9)])
def test_reference_rewards_gae_match_definition_on_cpu(gamma, lam, normalize):
    b = reward_batch(11)
    rewards, adv, ret = kernels.dense_rewards_gae(**b, gamma=gamma, lam=lam, kl_coef=0.1,
                                                  **dict(REWARD_COEFS, normalize_by_lines=normalize),
                                                  impl="torch")
    exp_r, exp_a = naive_rewards_gae(b, gamma, lam, 0.1, normalize)
    torch.testing.assert_close(rewards, exp_r, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(adv, exp_a, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ret, exp_a + b["values"], rtol=1e-12, atol=1e-12)


def test_reference_ppo_loss_matches_definition_on_cpu():
    b = ppo_batch(5, n=50)
    loss, stats = kernels.ppo_loss(**b, **dict(PPO_COEFS, dual_clip=2.0), impl="torch")
    total = 0.0
    for lp, olp, a, v, ov, r in zip(*(b[k].tolist() for k in
                                      ("logprobs", "old_logprobs", "advantages", "values",
                                       "old_values", "returns"))):
        ratio = math.exp(lp - olp)
        pg = max(-a * ratio, -a * min(max(ratio, 0.8), 1.2))
        if a < 0:
            pg = min(pg, -a * 2.0)
        vclip = ov + min(max(v - ov, -0.2), 0.2)
        total += pg + 0.5 * 0.5 * max((v - r) ** 2, (vclip - r) ** 2)
    assert math.isclose(float(loss), total / 50, rel_tol=1e-12)


def test_reference_gradcheck_line_scores_on_cpu():
    gen = torch.Generator().manual_seed(0)
    h = torch.randn(6, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    w = torch.randn(5, dtype=torch.float64, generator=gen, requires_grad=True)
    bias = torch.randn(1, dtype=torch.float64, generator=gen, requires_grad=True)
    ends = torch.tensor([True, False, True, True, False, False])
    assert torch.autograd.gradcheck(lambda *x: kernels.line_scores(*x, ends, impl="torch"),
                                    (h, w, bias))


@pytest.mark.parametrize("dual_clip", [None, 2.0])
def test_reference_gradcheck_ppo_loss_on_cpu(dual_clip):
    b = ppo_batch(6, n=30)
    lp, v = b["logprobs"].requires_grad_(True), b["values"].requires_grad_(True)

    def loss(lp, v):
        return kernels.ppo_loss(**dict(b, logprobs=lp, values=v),
                                **dict(PPO_COEFS, dual_clip=dual_clip), impl="torch")[0]
    assert torch.autograd.gradcheck(loss, (lp, v))


def test_reference_gradcheck_token_logprobs_on_cpu():
    gen = torch.Generator().manual_seed(1)
    h = torch.randn(4, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    w = torch.randn(7, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    targets = torch.tensor([0, 6, 3, 3])
    assert torch.autograd.gradcheck(
        lambda h, w: kernels.token_logprobs(h, w, targets, temperature=0.8, impl="torch"), (h, w))
