"""Row kernels for chunked token log-probs: the online log-sum-exp over one vocabulary chunk of
logits, and the in-place turn of a recomputed logits chunk into d logits. Both update buffers in
place, so autotuning restores them after each benchmarked config (restore_value)."""
import triton
import triton.language as tl

from prmfast.kernels.triton.autotune import configs


@triton.autotune(configs([{"BLOCK_R": 4, "BLOCK_C": 1024}, {"BLOCK_R": 8, "BLOCK_C": 512}],
                         {"BLOCK_R": 16, "BLOCK_C": 128}), key=["C"],
                 restore_value=["row_max_ptr", "row_sum_ptr", "row_dot_ptr", "target_logit_ptr"])
@triton.jit
def logprobs_fwd_chunk_kernel(logits_ptr, targets_ptr, vocab_start, row_max_ptr, row_sum_ptr,
                              row_dot_ptr, target_logit_ptr, R, C, stride_r,
                              BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
    """logits [R, C] (row stride stride_r), per-row running state [R] (fp32): max, sum exp(l-m),
    sum exp(l-m)*l, target logit."""
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    row_ok = rows < R
    m = tl.load(row_max_ptr + rows, mask=row_ok, other=0.0)
    s = tl.load(row_sum_ptr + rows, mask=row_ok, other=0.0)
    d = tl.load(row_dot_ptr + rows, mask=row_ok, other=0.0)
    found = tl.load(target_logit_ptr + rows, mask=row_ok, other=0.0)
    target_col = tl.load(targets_ptr + rows, mask=row_ok, other=-1) - vocab_start
    for c0 in range(0, C, BLOCK_C):
        cols = c0 + tl.arange(0, BLOCK_C)
        ok = row_ok[:, None] & (cols < C)[None, :]
        x = tl.load(logits_ptr + rows[:, None].to(tl.int64) * stride_r + cols[None, :], mask=ok,
                    other=float("-inf")).to(tl.float32)
        m_new = tl.maximum(m, tl.max(x, axis=1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        scale = tl.exp(m - m_safe)
        e = tl.where(ok, tl.exp(x - m_safe[:, None]), 0.0)
        s = s * scale + tl.sum(e, axis=1)
        d = d * scale + tl.sum(e * tl.where(ok, x, 0.0), axis=1)
        m = m_new
        is_target = ok & (cols[None, :] == target_col[:, None])
        hit = tl.sum(is_target.to(tl.float32), axis=1) > 0
        found = tl.where(hit, tl.sum(tl.where(is_target, x, 0.0), axis=1), found)
    tl.store(row_max_ptr + rows, m, mask=row_ok)
    tl.store(row_sum_ptr + rows, s, mask=row_ok)
    tl.store(row_dot_ptr + rows, d, mask=row_ok)
    tl.store(target_logit_ptr + rows, found, mask=row_ok)


@triton.autotune(configs([{"BLOCK_R": 4, "BLOCK_C": 1024}, {"BLOCK_R": 8, "BLOCK_C": 512}],
                         {"BLOCK_R": 16, "BLOCK_C": 128}), key=["C"], restore_value=["logits_ptr"])
@triton.jit
def logprobs_bwd_chunk_kernel(logits_ptr, targets_ptr, vocab_start, lse_ptr, entropy_ptr,
                              grad_lp_ptr, grad_ent_ptr, R, C, stride_r,
                              BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
    """In place: logits [R, C] -> d logits = g_lp * (onehot - p) - g_ent * p * (l - lse + H)."""
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    row_ok = rows < R
    ok = row_ok[:, None] & (cols < C)[None, :]
    lse = tl.load(lse_ptr + rows, mask=row_ok, other=0.0).to(tl.float32)
    shift = tl.load(entropy_ptr + rows, mask=row_ok, other=0.0).to(tl.float32) - lse
    g_lp = tl.load(grad_lp_ptr + rows, mask=row_ok, other=0.0).to(tl.float32)
    g_ent = tl.load(grad_ent_ptr + rows, mask=row_ok, other=0.0).to(tl.float32)
    target_col = tl.load(targets_ptr + rows, mask=row_ok, other=-1) - vocab_start
    offsets = rows[:, None].to(tl.int64) * stride_r + cols[None, :]
    x = tl.load(logits_ptr + offsets, mask=ok, other=0.0).to(tl.float32)
    p = tl.exp(x - lse[:, None])
    d = -p * (g_lp[:, None] + g_ent[:, None] * (x + shift[:, None]))
    d += tl.where(cols[None, :] == target_col[:, None], g_lp[:, None], 0.0)
    tl.store(logits_ptr + offsets, d, mask=ok)
