"""Fused PRM head on line ends: scores = line_end * (hidden @ weight + bias) and its backward."""
import triton
import triton.language as tl

from prmfast.kernels.triton.autotune import configs


@triton.autotune(configs([{"BLOCK_N": 32, "BLOCK_H": 128}, {"BLOCK_N": 64, "BLOCK_H": 64}],
                         {"BLOCK_N": 16, "BLOCK_H": 64}), key=["H"])
@triton.jit
def line_scores_fwd_kernel(hidden_ptr, weight_ptr, bias_ptr, line_end_ptr, scores_ptr, N, H,
                           stride_n, BLOCK_N: tl.constexpr, BLOCK_H: tl.constexpr):
    """hidden [N, H] (row stride stride_n) -> scores [N] fp32; rows off line ends are not read."""
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_ok = rows < N
    ends = tl.load(line_end_ptr + rows, mask=row_ok, other=0) != 0
    acc = tl.zeros([BLOCK_N], dtype=tl.float32)
    for h0 in range(0, H, BLOCK_H):
        cols = h0 + tl.arange(0, BLOCK_H)
        col_ok = cols < H
        w = tl.load(weight_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)
        x = tl.load(hidden_ptr + rows[:, None].to(tl.int64) * stride_n + cols[None, :],
                    mask=(ends & row_ok)[:, None] & col_ok[None, :], other=0.0).to(tl.float32)
        acc += tl.sum(x * w[None, :], axis=1)
    bias = tl.load(bias_ptr).to(tl.float32)
    tl.store(scores_ptr + rows, tl.where(ends, acc + bias, 0.0), mask=row_ok)


@triton.autotune(configs([{"BLOCK_N": 32, "BLOCK_H": 128}, {"BLOCK_N": 64, "BLOCK_H": 64}],
                         {"BLOCK_N": 16, "BLOCK_H": 64}), key=["H"],
                 reset_to_zero=["partial_weight_ptr", "partial_bias_ptr"])
@triton.jit
def line_scores_bwd_kernel(grad_ptr, hidden_ptr, weight_ptr, line_end_ptr, grad_hidden_ptr,
                           partial_weight_ptr, partial_bias_ptr, N, H, stride_n,
                           BLOCK_N: tl.constexpr, BLOCK_H: tl.constexpr):
    """grad [N] -> grad_hidden [N, H] (all rows written), per-program partial grad_weight
    [programs, H] and grad_bias [programs] (summed on the host; the buffers hold rows for the
    smallest BLOCK_N, zeroed again after autotuning so a config's leftovers never count)."""
    pid = tl.program_id(0)
    rows = pid * BLOCK_N + tl.arange(0, BLOCK_N)
    row_ok = rows < N
    ends = tl.load(line_end_ptr + rows, mask=row_ok, other=0) != 0
    g = tl.where(ends, tl.load(grad_ptr + rows, mask=row_ok, other=0.0).to(tl.float32), 0.0)
    for h0 in range(0, H, BLOCK_H):
        cols = h0 + tl.arange(0, BLOCK_H)
        col_ok = cols < H
        offsets = rows[:, None].to(tl.int64) * stride_n + cols[None, :]
        w = tl.load(weight_ptr + cols, mask=col_ok, other=0.0).to(tl.float32)
        tl.store(grad_hidden_ptr + offsets, g[:, None] * w[None, :],
                 mask=row_ok[:, None] & col_ok[None, :])
        x = tl.load(hidden_ptr + offsets, mask=(ends & row_ok)[:, None] & col_ok[None, :],
                    other=0.0).to(tl.float32)
        tl.store(partial_weight_ptr + pid.to(tl.int64) * H + cols, tl.sum(g[:, None] * x, axis=0),
                 mask=col_ok)
    tl.store(partial_bias_ptr + pid, tl.sum(g, axis=0))
