"""The Triton backend: launchers with the raw-kernel protocol of prmfast.kernels.fused.

Inputs keep their dtype (bf16/fp16/fp32, cast to fp32 right after each load); workspaces and
outputs are fp32. On a CPU these run only under TRITON_INTERPRET=1."""
import torch
import triton

from prmfast.kernels.triton.line_scores import line_scores_bwd_kernel, line_scores_fwd_kernel
from prmfast.kernels.triton.logprobs import logprobs_bwd_chunk_kernel, logprobs_fwd_chunk_kernel
from prmfast.kernels.triton.autotune import INTERPRETING
from prmfast.kernels.triton.ppo_loss import ppo_loss_fwd_kernel
from prmfast.kernels.triton.reward_scan import reward_scan_kernel

name = "triton"
_KERNEL_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
_BLOCK_S = 32


def compute_dtype(*tensors):
    """The dtype kernels read: the inputs' own half/fp32 type, fp32 otherwise (fp64 included)."""
    dtypes = {t.dtype for t in tensors}
    return dtypes.pop() if len(dtypes) == 1 and next(iter(dtypes)) in _KERNEL_DTYPES else torch.float32


def accumulator_dtype(dtype):
    return torch.float32


def prepare(t, dtype):
    if t.device.type != "cuda" and not INTERPRETING:
        raise ValueError(f"impl='triton' needs CUDA tensors (or TRITON_INTERPRET=1), got {t.device}")
    return t.detach().to(dtype).contiguous()


def _bytes(mask):
    return mask.contiguous().view(torch.uint8)


def _scan(cu_seqlens, values, prm, line_end, kl, outcome, passed, rewards_in, gamma, lam, kl_coef,
          coef_fail, coef_pass, normalize, rewards_out, adv_out, ret_out, assemble, scan):
    n_seq = cu_seqlens.numel() - 1
    if n_seq == 0:
        return
    max_len = int((cu_seqlens[1:] - cu_seqlens[:-1]).max())
    dummy = adv_out if adv_out is not None else rewards_out
    grid = (triton.cdiv(n_seq, _BLOCK_S),)
    reward_scan_kernel[grid](
        *(dummy if t is None else t for t in (values, prm, line_end, kl, outcome, passed, rewards_in)),
        cu_seqlens.contiguous(), n_seq, max_len, gamma, lam, kl_coef, coef_fail, coef_pass,
        *(dummy if t is None else t for t in (rewards_out, adv_out, ret_out)),
        ASSEMBLE=assemble, NORMALIZE=normalize, SCAN=scan, BLOCK_S=_BLOCK_S)


def gae(rewards, values, cu_seqlens, gamma, lam, advantages, returns):
    _scan(cu_seqlens, values, None, None, None, None, None, rewards, gamma, lam, 0.0, 0.0, 0.0,
          False, None, advantages, returns, assemble=False, scan=True)


def dense_rewards(prm_scores, line_end, kl, outcome, passed, cu_seqlens, kl_coef, prm_coef_fail,
                  prm_coef_pass, normalize, rewards):
    _scan(cu_seqlens, None, prm_scores, _bytes(line_end), kl, outcome, _bytes(passed), None, 0.0,
          0.0, kl_coef, prm_coef_fail, prm_coef_pass, normalize, rewards, None, None,
          assemble=True, scan=False)


def dense_rewards_gae(values, prm_scores, line_end, kl, outcome, passed, cu_seqlens, gamma, lam,
                      kl_coef, prm_coef_fail, prm_coef_pass, normalize, rewards, advantages, returns):
    _scan(cu_seqlens, values, prm_scores, _bytes(line_end), kl, outcome, _bytes(passed), None,
          gamma, lam, kl_coef, prm_coef_fail, prm_coef_pass, normalize, rewards, advantages,
          returns, assemble=True, scan=True)


def line_scores_fwd(hidden, weight, bias, line_end, scores):
    n, h = hidden.shape
    if n == 0:
        return
    grid = lambda meta: (triton.cdiv(n, meta["BLOCK_N"]),)
    line_scores_fwd_kernel[grid](hidden, weight, bias, _bytes(line_end), scores, n, h,
                                 hidden.stride(0))


def line_scores_bwd(grad, hidden, weight, line_end, grad_hidden):
    """-> (grad_weight [H] fp32, grad_bias [] fp32); grad_hidden [N, H] written in place."""
    n, h = hidden.shape
    if n == 0:
        return weight.new_zeros(h, dtype=torch.float32), weight.new_zeros((), dtype=torch.float32)
    max_programs = triton.cdiv(n, 16)
    partial_weight = torch.zeros(max_programs, h, dtype=torch.float32, device=hidden.device)
    partial_bias = torch.zeros(max_programs, dtype=torch.float32, device=hidden.device)
    grid = lambda meta: (triton.cdiv(n, meta["BLOCK_N"]),)
    line_scores_bwd_kernel[grid](grad.contiguous(), hidden, weight, _bytes(line_end), grad_hidden,
                                 partial_weight, partial_bias, n, h, hidden.stride(0))
    return partial_weight.sum(0), partial_bias.sum()


def ppo_loss_fwd(logprobs, old_logprobs, advantages, values, old_values, returns, clip_low,
                 clip_high, dual_clip, value_clip, vf_coef, need_grad, grad_logprobs, grad_values):
    """-> sums [5] fp32 = (pg, vf, clipped count, vf clipped count, approx_kl)."""
    n = logprobs.shape[0]
    max_programs = triton.cdiv(n, 256)
    partials = torch.zeros(max_programs, 5, dtype=torch.float32, device=logprobs.device)
    grad_lp = grad_logprobs if need_grad else partials
    grad_v = grad_values if need_grad else partials
    grid = lambda meta: (triton.cdiv(n, meta["BLOCK"]),)
    ppo_loss_fwd_kernel[grid](logprobs, old_logprobs, advantages, values, old_values, returns, n,
                              n.bit_length(), clip_low, clip_high, dual_clip, value_clip, vf_coef, grad_lp, grad_v,
                              partials, NEED_GRAD=need_grad)
    return partials.sum(0)


def logprobs_fwd_chunk(logits, targets, vocab_start, row_max, row_sum, row_dot, target_logit):
    r, c = logits.shape
    grid = lambda meta: (triton.cdiv(r, meta["BLOCK_R"]),)
    logprobs_fwd_chunk_kernel[grid](logits, targets, vocab_start, row_max, row_sum, row_dot,
                                    target_logit, r, c, logits.stride(0))


def logprobs_bwd_chunk(logits, targets, vocab_start, lse, entropy, grad_logprobs, grad_entropy):
    r, c = logits.shape
    grid = lambda meta: (triton.cdiv(r, meta["BLOCK_R"]), triton.cdiv(c, meta["BLOCK_C"]))
    logprobs_bwd_chunk_kernel[grid](logits, targets, vocab_start, lse, entropy, grad_logprobs,
                                    grad_entropy, r, c, logits.stride(0))
