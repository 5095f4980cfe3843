"""Public ops of docs/design.md, "Kernels": validate the inputs, then dispatch to an implementation.

Implementations are a small registry, resolved lazily (numba compiles and Triton imports only
when first used): "torch" (reference), "numba" (CPU), "triton" (GPU, or CPU under
TRITON_INTERPRET=1); "auto" picks triton for CUDA tensors and numba otherwise."""
import importlib
from functools import cache

import torch

from prmfast.kernels import validation as check

IMPLS = ("auto", "torch", "numba", "triton")
_LOADERS = {
    "torch": lambda: importlib.import_module("prmfast.kernels.reference"),
    "numba": lambda: _fused_ops("prmfast.kernels.numba_backend"),
    "triton": lambda: _fused_ops("prmfast.kernels.triton.backend"),
}


def _fused_ops(backend_module):
    from prmfast.kernels.fused import make_ops
    return make_ops(importlib.import_module(backend_module))


@cache
def _ops(impl):
    return _LOADERS[impl]()


def resolve_impl(impl, device):
    """-> the concrete impl name for `impl` on tensors living on `device`."""
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    if impl == "auto":
        return "triton" if torch.device(device).type == "cuda" else "numba"
    return impl


def _dispatch(op, impl, device):
    return getattr(_ops(resolve_impl(impl, device)), op)


def gae(rewards, values, cu_seqlens, *, gamma, lam, impl="auto"):
    """Generalised advantage estimation per packed sequence.

    rewards, values: [N] float; cu_seqlens: [S+1] int -> (advantages [N], returns [N])."""
    check.check_packed(cu_seqlens, floats=[("rewards", rewards), ("values", values)])
    gamma = check.check_coefficient("gamma", gamma, 0.0, 1.0)
    lam = check.check_coefficient("lam", lam, 0.0, 1.0)
    return _dispatch("gae", impl, values.device)(rewards, values, cu_seqlens, gamma=gamma, lam=lam)


def _check_reward_inputs(cu_seqlens, prm_scores, line_end, kl, outcome, passed, extra_floats=(),
                         **coefficients):
    """Checks the tensors; returns the coefficients (kl_coef, prm_coef_*) as floats."""
    check.check_packed(cu_seqlens, floats=[*extra_floats, ("prm_scores", prm_scores), ("kl", kl)],
                       bools=[("line_end", line_end)], per_seq_floats=[("outcome", outcome)],
                       per_seq_bools=[("passed", passed)])
    return {name: check.check_coefficient(name, value) for name, value in coefficients.items()}


def dense_rewards(prm_scores, line_end, kl, outcome, passed, cu_seqlens, *, kl_coef,
                  prm_coef_fail, prm_coef_pass, normalize_by_lines, impl="auto"):
    """Dense PRM rewards (docs/design.md, "Kernels").

    prm_scores, kl: [N] float; line_end: [N] bool; outcome: [S] float; passed: [S] bool
    -> rewards [N]:  -kl_coef*kl_t + line_end_t*c_s*prm_t/L_s + [t == e_s - 1]*outcome_s."""
    coefficients = _check_reward_inputs(cu_seqlens, prm_scores, line_end, kl, outcome, passed,
                                        kl_coef=kl_coef, prm_coef_fail=prm_coef_fail,
                                        prm_coef_pass=prm_coef_pass)
    return _dispatch("dense_rewards", impl, kl.device)(
        prm_scores, line_end, kl, outcome, passed, cu_seqlens, **coefficients,
        normalize_by_lines=bool(normalize_by_lines))


def dense_rewards_gae(values, prm_scores, line_end, kl, outcome, passed, cu_seqlens, *, gamma, lam,
                      kl_coef, prm_coef_fail, prm_coef_pass, normalize_by_lines, impl="auto"):
    """dense_rewards and gae in one pass per sequence.

    values, prm_scores, kl: [N]; line_end: [N] bool; outcome: [S]; passed: [S] bool
    -> (rewards [N], advantages [N], returns [N])."""
    coefficients = _check_reward_inputs(cu_seqlens, prm_scores, line_end, kl, outcome, passed,
                                        extra_floats=[("values", values)], kl_coef=kl_coef,
                                        prm_coef_fail=prm_coef_fail, prm_coef_pass=prm_coef_pass)
    gamma = check.check_coefficient("gamma", gamma, 0.0, 1.0)
    lam = check.check_coefficient("lam", lam, 0.0, 1.0)
    return _dispatch("dense_rewards_gae", impl, values.device)(
        values, prm_scores, line_end, kl, outcome, passed, cu_seqlens, gamma=gamma, lam=lam,
        **coefficients, normalize_by_lines=bool(normalize_by_lines))


def line_scores(hidden, weight, bias, line_end, *, impl="auto"):
    """PRM scores at line ends; differentiable w.r.t. hidden, weight and bias.

    hidden [N, H], weight [H], bias [] or [1] (float or tensor), line_end [N] bool -> scores [N]."""
    check.check_float("hidden", hidden)
    if hidden.dim() != 2:
        raise ValueError(f"hidden must be 2-D [N, H], got shape {tuple(hidden.shape)}")
    check.check_float("weight", weight)
    check.check_shape("weight", weight, (hidden.shape[1],))
    if not isinstance(bias, torch.Tensor):
        bias = torch.tensor(check.check_coefficient("bias", bias), dtype=weight.dtype,
                            device=weight.device)
    check.check_float("bias", bias)
    if bias.numel() != 1 or bias.dim() > 1:
        raise ValueError(f"bias must be a scalar or shape (1,), got shape {tuple(bias.shape)}")
    check.check_bool("line_end", line_end)
    check.check_shape("line_end", line_end, (hidden.shape[0],))
    check.check_same_device("hidden", hidden, weight=weight, bias=bias, line_end=line_end)
    return _dispatch("line_scores", impl, hidden.device)(hidden, weight, bias, line_end)


def ppo_loss(logprobs, old_logprobs, advantages, values, old_values, returns, cu_seqlens, *,
             clip_low, clip_high, dual_clip, value_clip, vf_coef, impl="auto"):
    """Clipped PPO policy loss + clipped value loss, token mean over all N tokens.

    All tensors [N] float; cu_seqlens [S+1] -> (loss [], stats: pg_loss, vf_loss, clipfrac,
    vf_clipfrac, approx_kl as detached 0-d tensors). Differentiable w.r.t. logprobs and values."""
    n, _ = check.check_packed(cu_seqlens, floats=[
        ("logprobs", logprobs), ("old_logprobs", old_logprobs), ("advantages", advantages),
        ("values", values), ("old_values", old_values), ("returns", returns)])
    if n == 0:
        raise ValueError("logprobs must hold at least one token (the loss is a token mean)")
    check.check_coefficient("clip_low", clip_low, 0.0, 1.0)
    check.check_coefficient("clip_high", clip_high, 0.0, None)
    check.check_coefficient("value_clip", value_clip, 0.0, None)
    if dual_clip is not None and check.check_coefficient("dual_clip", dual_clip, 0.0) <= 1.0:
        raise ValueError(f"dual_clip must be > 1 (or None), got {dual_clip}")
    return _dispatch("ppo_loss", impl, logprobs.device)(
        logprobs, old_logprobs, advantages, values, old_values, returns, cu_seqlens,
        clip_low=float(clip_low), clip_high=float(clip_high), dual_clip=dual_clip,
        value_clip=float(value_clip), vf_coef=check.check_coefficient("vf_coef", vf_coef))


def token_logprobs(hidden, weight, targets, *, temperature=1.0, chunk_size=None, impl="auto"):
    """Per-token log-probs of targets and entropies under the LM head, without [N, V] logits.

    hidden [N, H], weight [V, H], targets [N] int -> (logprobs [N], entropy [N]); both
    differentiable w.r.t. hidden and weight. chunk_size: rows per chunk (fast paths)."""
    check.check_float("hidden", hidden)
    check.check_float("weight", weight)
    if hidden.dim() != 2:
        raise ValueError(f"hidden must be 2-D [N, H], got shape {tuple(hidden.shape)}")
    if weight.dim() != 2 or weight.shape[1] != hidden.shape[1]:
        raise ValueError(f"weight must be [V, {hidden.shape[1]}], got shape {tuple(weight.shape)}")
    check.check_int("targets", targets)
    check.check_shape("targets", targets, (hidden.shape[0],))
    check.check_same_device("hidden", hidden, weight=weight, targets=targets)
    if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= weight.shape[0]):
        raise ValueError(f"targets must be in [0, V = {weight.shape[0]})")
    temperature = check.check_coefficient("temperature", temperature)
    if not temperature > 0.0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if chunk_size is not None:
        chunk_size = check.check_count("chunk_size", chunk_size)
    return _dispatch("token_logprobs", impl, hidden.device)(
        hidden, weight, targets, temperature=temperature, chunk_size=chunk_size)
