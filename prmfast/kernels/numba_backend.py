"""The numba backend: adapts torch tensors (CPU, contiguous, compute dtype) to numba_kernels.

Implements the raw-kernel protocol that fused.py builds the differentiable ops from."""
import torch

from prmfast.kernels import numba_kernels as nk
from prmfast.kernels.reference import result_dtype

name = "numba"

# numba has no half types: kernels read float64 if any input is float64, else float32 --
# exactly the reference's result dtype.
compute_dtype = result_dtype


def accumulator_dtype(dtype):
    return dtype


def prepare(t, dtype):
    if t.device.type != "cpu":
        raise ValueError(f"impl='numba' needs CPU tensors, got a tensor on {t.device}")
    return t.detach().to(dtype).contiguous()


def _np(t):
    return t.detach().contiguous().numpy()


def _cu(cu_seqlens):
    return cu_seqlens.to(torch.int64).contiguous().numpy()


def _n_blocks(n, min_block=16384):
    return max(1, min(4 * torch.get_num_threads(), -(-n // min_block)))


def gae(rewards, values, cu_seqlens, gamma, lam, advantages, returns):
    nk.gae_kernel(_np(rewards), _np(values), _cu(cu_seqlens), gamma, lam, advantages.numpy(),
                  returns.numpy())


def dense_rewards(prm_scores, line_end, kl, outcome, passed, cu_seqlens, kl_coef, prm_coef_fail,
                  prm_coef_pass, normalize, rewards):
    nk.dense_rewards_kernel(_np(prm_scores), _np(line_end), _np(kl), _np(outcome), _np(passed),
                            _cu(cu_seqlens), kl_coef, prm_coef_fail, prm_coef_pass, normalize,
                            rewards.numpy())


def dense_rewards_gae(values, prm_scores, line_end, kl, outcome, passed, cu_seqlens, gamma, lam,
                      kl_coef, prm_coef_fail, prm_coef_pass, normalize, rewards, advantages, returns):
    nk.dense_rewards_gae_kernel(_np(values), _np(prm_scores), _np(line_end), _np(kl), _np(outcome),
                                _np(passed), _cu(cu_seqlens), gamma, lam, kl_coef, prm_coef_fail,
                                prm_coef_pass, normalize, rewards.numpy(), advantages.numpy(),
                                returns.numpy())


def line_scores_fwd(hidden, weight, bias, line_end, scores):
    nk.line_scores_fwd_kernel(_np(hidden), _np(weight), bias.item(), _np(line_end), scores.numpy())


def line_scores_bwd(grad, hidden, weight, line_end, grad_hidden):
    """-> (grad_weight [H], grad_bias []); grad_hidden [N, H] is written in place."""
    n_blocks = _n_blocks(hidden.shape[0], min_block=256)
    partial_weight = hidden.new_empty(n_blocks, hidden.shape[1])
    partial_bias = hidden.new_empty(n_blocks)
    nk.line_scores_bwd_kernel(_np(grad.to(hidden.dtype)), _np(hidden), _np(weight), _np(line_end),
                              n_blocks, grad_hidden.numpy(), partial_weight.numpy(),
                              partial_bias.numpy())
    return partial_weight.sum(0), partial_bias.sum()


def ppo_loss_fwd(logprobs, old_logprobs, advantages, values, old_values, returns, clip_low,
                 clip_high, dual_clip, value_clip, vf_coef, need_grad, grad_logprobs, grad_values):
    """-> sums [5] = (pg, vf, clipped count, vf clipped count, approx_kl) over all tokens."""
    n_blocks = _n_blocks(logprobs.shape[0])
    partials = logprobs.new_empty(n_blocks, 5)
    nk.ppo_loss_fwd_kernel(_np(logprobs), _np(old_logprobs), _np(advantages), _np(values),
                           _np(old_values), _np(returns), clip_low, clip_high, dual_clip,
                           value_clip, vf_coef, need_grad, n_blocks, grad_logprobs.numpy(),
                           grad_values.numpy(), partials.numpy())
    return partials.sum(0)


def logprobs_fwd_chunk(logits, targets, vocab_start, row_max, row_sum, row_dot, target_logit):
    nk.logprobs_fwd_chunk_kernel(logits.numpy(), _np(targets), vocab_start, row_max.numpy(),
                                 row_sum.numpy(), row_dot.numpy(), target_logit.numpy())


def logprobs_bwd_chunk(logits, targets, vocab_start, lse, entropy, grad_logprobs, grad_entropy):
    nk.logprobs_bwd_chunk_kernel(logits.numpy(), _np(targets), vocab_start, _np(lse), _np(entropy),
                                 _np(grad_logprobs), _np(grad_entropy))
