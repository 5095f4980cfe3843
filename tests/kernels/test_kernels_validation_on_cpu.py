"""Bad inputs raise ValueError naming the argument, for every impl."""
import pytest
import torch

from kernel_batches import PPO_COEFS, REWARD_COEFS, ppo_batch, reward_batch
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
        kernels.dense_rewards_gae(**b, gamma=1.0, lam=1.0, kl_coef=0.1, **REWARD_COEFS,
                                  impl="numba")


def test_scalar_arguments_are_checked_on_cpu():
    with pytest.raises(ValueError, match="gamma"):
        kernels.gae(**_gae_args(), gamma=1.5, lam=0.9)
    with pytest.raises(ValueError, match="impl"):
        kernels.gae(**_gae_args(), gamma=0.5, lam=0.9, impl="cuda")
    b = ppo_batch(0, n=10)
    with pytest.raises(ValueError, match="dual_clip"):
        kernels.ppo_loss(**b, **dict(PPO_COEFS, dual_clip=0.5))
    with pytest.raises(ValueError, match="returns must have shape"):
        kernels.ppo_loss(**dict(b, returns=b["returns"][:3]), **PPO_COEFS)
    empty = {k: (v[:0] if k != "cu_seqlens" else torch.tensor([0])) for k, v in b.items()}
    with pytest.raises(ValueError, match="at least one token"):
        kernels.ppo_loss(**empty, **PPO_COEFS)


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


def test_errors_name_the_argument_that_is_wrong_on_cpu():
    b = ppo_batch(1, n=6)
    with pytest.raises(ValueError, match="rewards must be a torch.Tensor"):
        kernels.gae([0.0] * 6, b["values"], b["cu_seqlens"], gamma=0.9, lam=0.9)
    with pytest.raises(ValueError, match=r"logprobs must have shape \(6,\)"):
        kernels.ppo_loss(**dict(b, logprobs=b["logprobs"][:4]), **PPO_COEFS)
    with pytest.raises(ValueError, match="gamma must be a number, got None"):
        kernels.gae(b["returns"], b["values"], b["cu_seqlens"], gamma=None, lam=0.9)
    r = reward_batch(2)
    with pytest.raises(ValueError, match="kl_coef must be a number"):
        kernels.dense_rewards(**{k: v for k, v in r.items() if k != "values"}, kl_coef="0.1x",
                              **REWARD_COEFS)
    h, w, ends = torch.randn(5, 4), torch.randn(4), torch.ones(5, dtype=torch.bool)
    with pytest.raises(ValueError, match="bias must be a number"):
        kernels.line_scores(h, w, None, ends)
    targets = torch.zeros(5, dtype=torch.long)
    for bad in (float("inf"), float("nan"), 2.5, 0, "4"):
        with pytest.raises(ValueError, match="chunk_size must be a positive int"):
            kernels.token_logprobs(h, torch.randn(9, 4), targets, chunk_size=bad)
    mask = torch.rand(3, 5) < 0.6
    with pytest.raises(ValueError, match="values must have the mask's shape"):
        kernels.gae_padded(torch.zeros(3, 5), torch.zeros(3, 4), mask, gamma=1.0, lam=1.0)
    with pytest.raises(ValueError, match="tensor #0 must be a torch.Tensor"):
        kernels.pack(mask, [[0.0] * 5] * 3)
    assert kernels.resolve_impl("auto", "cpu") == "numba"


def test_unpack_checks_the_mask_and_the_packed_length_on_cpu():
    mask = torch.tensor([[True, True, False], [True, True, True]])
    with pytest.raises(ValueError, match=r"packed tensor #0 must have shape \(5,\)"):
        kernels.unpack(mask, torch.tensor([7.0]))
    with pytest.raises(ValueError, match="mask must be a bool"):
        kernels.unpack(mask.int(), torch.zeros(5))
    packed = torch.randn(5)
    (full,) = kernels.unpack(mask, packed)
    assert torch.equal(full[mask], packed) and not full[~mask].any()


@pytest.mark.parametrize("impl", ["numba", "triton"])
def test_whole_float_chunk_size_is_accepted_on_cpu(impl):
    gen = torch.Generator().manual_seed(3)
    h, w = torch.randn(7, 4, generator=gen), torch.randn(11, 4, generator=gen)
    targets = torch.randint(0, 11, (7,), generator=gen)
    expected = kernels.token_logprobs(h, w, targets, impl="torch")
    actual = kernels.token_logprobs(h, w, targets, chunk_size=2.0, impl=impl)
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e, atol=1e-5, rtol=1e-5)
