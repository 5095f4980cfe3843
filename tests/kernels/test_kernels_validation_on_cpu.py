"""Bad inputs raise ValueError naming the argument, for every impl."""
import pytest
import torch

from kernel_batches import ppo_batch, reward_batch
from prmfast import kernels

IMPLS = ["torch", "numba", "triton"]


def _gae_args(**override):
    b = reward_batch(0)
    args = dict(rewards=b["prm_scores"], values=b["values"], cu_seqlens=b["cu_seqlens"])
    args.update(override)
    return args


def _with_cu(cu, index, value):
    cu = cu.clone()
    cu[index] = value
    return cu


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("override,match", [
    (lambda a: dict(cu_seqlens=_with_cu(a["cu_seqlens"], 0, 1)), "cu_seqlens must start at 0"),
    (lambda a: dict(cu_seqlens=_with_cu(a["cu_seqlens"], 1, a["cu_seqlens"][-1])), "non-decreasing"),
    (lambda a: dict(cu_seqlens=_with_cu(a["cu_seqlens"], -1, a["cu_seqlens"][-1] + 1)),
     "cu_seqlens must end at N"),
    (lambda a: dict(cu_seqlens=a["cu_seqlens"].float()), "cu_seqlens must be an int"),
    (lambda a: dict(values=a["values"][:-1]), "values must have shape"),
    (lambda a: dict(rewards=a["rewards"].long()), "rewards must be a floating-point"),
    (lambda a: dict(rewards=a["rewards"][:, None]), "rewards must be 1-D"),
])
def test_gae_rejects_bad_input_on_cpu(impl, override, match):
    args = _gae_args()
    args.update(override(args))
    with pytest.raises(ValueError, match=match):
        kernels.gae(**args, gamma=0.9, lam=0.9, impl=impl)


@pytest.mark.parametrize("field,bad,match", [
    ("line_end", lambda t: t.float(), "line_end must be a bool"),
    ("passed", lambda t: t[:-1], "passed must have shape"),
    ("outcome", lambda t: t.int(), "outcome must be a floating-point"),
    ("kl", lambda t: t[1:], "kl must have shape"),
])
def test_dense_rewards_gae_rejects_bad_input_on_cpu(field, bad, match):
    b = reward_batch(1)
    b[field] = bad(b[field])
    with pytest.raises(ValueError, match=match):
        kernels.dense_rewards_gae(**b, gamma=1.0, lam=1.0, kl_coef=0.1, impl="numba")


def test_scalar_arguments_are_checked_on_cpu():
    with pytest.raises(ValueError, match="gamma"):
        kernels.gae(**_gae_args(), gamma=1.5, lam=0.9)
    with pytest.raises(ValueError, match="impl"):
        kernels.gae(**_gae_args(), gamma=0.5, lam=0.9, impl="cuda")
    b = ppo_batch(0, n=10)
    with pytest.raises(ValueError, match="dual_clip"):
        kernels.ppo_loss(**b, dual_clip=0.5)
    with pytest.raises(ValueError, match="returns must have shape"):
        kernels.ppo_loss(**dict(b, returns=b["returns"][:3]))
    empty = {k: (v[:0] if k != "cu_seqlens" else torch.tensor([0])) for k, v in b.items()}
    with pytest.raises(ValueError, match="at least one token"):
        kernels.ppo_loss(**empty)


def test_line_scores_and_token_logprobs_reject_bad_input_on_cpu():
    h, w, ends = torch.randn(5, 4), torch.randn(4), torch.ones(5, dtype=torch.bool)
    with pytest.raises(ValueError, match="weight must have shape"):
        kernels.line_scores(h, torch.randn(3), 0.0, ends)
    with pytest.raises(ValueError, match="line_end must have shape"):
        kernels.line_scores(h, w, 0.0, ends[:4])
    with pytest.raises(ValueError, match="bias must be a scalar"):
        kernels.line_scores(h, w, torch.zeros(2), ends)
    lm = torch.randn(9, 4)
    with pytest.raises(ValueError, match="targets must be in"):
        kernels.token_logprobs(h, lm, torch.tensor([0, 1, 2, 3, 9]))
    with pytest.raises(ValueError, match="targets must be an int"):
        kernels.token_logprobs(h, lm, torch.zeros(5))
    with pytest.raises(ValueError, match="weight must be"):
        kernels.token_logprobs(h, torch.randn(9, 3), torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="temperature"):
        kernels.token_logprobs(h, lm, torch.zeros(5, dtype=torch.long), temperature=0.0)
