"""Fused clipped PPO policy + value loss: per-token loss terms, their gradients and per-program
partial sums in one pass."""
import triton
import triton.language as tl

from prmfast.kernels.triton.autotune import configs


@triton.autotune(configs([{"BLOCK": 1024}, {"BLOCK": 4096, "num_warps": 8}], {"BLOCK": 256}),
                 key=["N_LOG2"], reset_to_zero=["partials_ptr"])
@triton.jit
def ppo_loss_fwd_kernel(lp_ptr, old_lp_ptr, adv_ptr, v_ptr, old_v_ptr, ret_ptr, N, N_LOG2, clip_low,
                        clip_high, dual_clip, value_clip, vf_coef, grad_lp_ptr, grad_v_ptr,
                        partials_ptr, NEED_GRAD: tl.constexpr, BLOCK: tl.constexpr):
    """Token tensors [N]. partials [programs, 5] = sums of (pg, vf, clipped, vf_clipped,
    approx_kl). Gradients are d loss / d input (divided by N, value term scaled by vf_coef).
    dual_clip <= 0 means off. N_LOG2 (N's bit length) is the autotuning key, so a new N of
    similar size reuses the tuned config. partials holds rows for the smallest BLOCK and is
    zeroed again after autotuning."""
    pid = tl.program_id(0)
    idx = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    ok = idx < N
    lp = tl.load(lp_ptr + idx, mask=ok, other=0.0).to(tl.float32)
    old_lp = tl.load(old_lp_ptr + idx, mask=ok, other=0.0).to(tl.float32)
    adv = tl.load(adv_ptr + idx, mask=ok, other=0.0).to(tl.float32)
    v = tl.load(v_ptr + idx, mask=ok, other=0.0).to(tl.float32)
    old_v = tl.load(old_v_ptr + idx, mask=ok, other=0.0).to(tl.float32)
    ret = tl.load(ret_ptr + idx, mask=ok, other=0.0).to(tl.float32)
    log_ratio = lp - old_lp
    ratio = tl.exp(log_ratio)
    clipped_ratio = tl.minimum(tl.maximum(ratio, 1.0 - clip_low), 1.0 + clip_high)
    pg1 = -adv * ratio
    pg2 = -adv * clipped_ratio
    # in range, both branches are the same function of ratio: take it unclipped (NaN too, so
    # that it reaches the loss and the gradient as in the reference)
    use_unclipped = (ratio == clipped_ratio) | ~(pg2 > pg1)
    pg = tl.where(use_unclipped, pg1, pg2)
    d_ratio = tl.where(use_unclipped, -adv, 0.0)
    dual = (dual_clip > 0.0) & (adv < 0.0) & (pg > -adv * dual_clip)
    pg = tl.where(dual, -adv * dual_clip, pg)
    d_ratio = tl.where(dual, 0.0, d_ratio)
    dv = v - old_v
    v_clip = old_v + tl.minimum(tl.maximum(dv, -value_clip), value_clip)
    sq1 = (v - ret) * (v - ret)
    sq2 = tl.where(tl.abs(dv) <= value_clip, sq1, (v_clip - ret) * (v_clip - ret))
    keep_unclipped = ~(sq2 > sq1)
    vf = 0.5 * tl.where(keep_unclipped, sq1, sq2)
    zero = tl.zeros([BLOCK], dtype=tl.float32)
    base = partials_ptr + pid.to(tl.int64) * 5
    tl.store(base + 0, tl.sum(tl.where(ok, pg, zero), axis=0))
    tl.store(base + 1, tl.sum(tl.where(ok, vf, zero), axis=0))
    tl.store(base + 2, tl.sum(tl.where(ok & (~use_unclipped), 1.0, zero), axis=0))
    tl.store(base + 3, tl.sum(tl.where(ok & (~keep_unclipped), 1.0, zero), axis=0))
    tl.store(base + 4, tl.sum(tl.where(ok, 0.5 * log_ratio * log_ratio, zero), axis=0))
    if NEED_GRAD:
        inv_n = 1.0 / N
        tl.store(grad_lp_ptr + idx, d_ratio * ratio * inv_n, mask=ok)
        tl.store(grad_v_ptr + idx, tl.where(keep_unclipped, v - ret, 0.0) * (vf_coef * inv_n),
                 mask=ok)
