"""The fast ops of docs/design.md, "Kernels", built once from a backend of raw kernels (numba or
Triton).

A backend module provides: name, compute_dtype(*tensors) (the dtype kernels read),
accumulator_dtype(dtype) (the dtype kernels write), prepare(tensor, dtype), and the raw
kernels gae, dense_rewards, dense_rewards_gae, line_scores_fwd, line_scores_bwd, ppo_loss_fwd,
logprobs_fwd_chunk, logprobs_bwd_chunk (see numba_backend.py for their signatures).
`make_ops(backend)` returns a namespace with the public signatures (inputs already validated)."""
from types import SimpleNamespace

import torch

from prmfast.kernels.reference import result_dtype

DEFAULT_ROW_CHUNK = 1024
DEFAULT_CHUNK_ELEMENTS = 1 << 22  # logits elements held at once (16 MiB in float32)
CUDA_CHUNK_SCALE = 8  # on a GPU: 8x the rows and elements (larger matmuls, fewer accumulations)


def new_buffer(shape, dtype, device):
    """Uninitialised output / gradient buffer (tests poison it to catch unwritten elements)."""
    return torch.empty(shape, dtype=dtype, device=device)


class LineScoresFunction(torch.autograd.Function):
    """scores = line_end * (hidden @ weight + bias); fused backward writes grad_hidden once and
    reduces grad_weight / grad_bias over line-end rows only."""

    @staticmethod
    def forward(ctx, backend, hidden, weight, bias, line_end):
        dtype = backend.compute_dtype(hidden, weight)
        h, w = backend.prepare(hidden, dtype), backend.prepare(weight, dtype)
        b = backend.prepare(bias.reshape(()), dtype)
        scores = new_buffer(h.shape[0], backend.accumulator_dtype(dtype), h.device)
        backend.line_scores_fwd(h, w, b, line_end, scores)
        ctx.backend = backend
        ctx.save_for_backward(h, w, line_end)
        ctx.input_dtypes = (hidden.dtype, weight.dtype, bias.dtype, bias.shape)
        return scores.to(result_dtype(hidden, weight))

    @staticmethod
    def backward(ctx, grad_scores):
        h, w, line_end = ctx.saved_tensors
        hidden_dtype, weight_dtype, bias_dtype, bias_shape = ctx.input_dtypes
        acc = ctx.backend.accumulator_dtype(h.dtype)
        grad_hidden = new_buffer(h.shape, acc, h.device)
        grad_weight, grad_bias = ctx.backend.line_scores_bwd(
            ctx.backend.prepare(grad_scores, acc), h, w, line_end, grad_hidden)
        return (None, grad_hidden.to(hidden_dtype), grad_weight.to(weight_dtype),
                grad_bias.to(bias_dtype).reshape(bias_shape), None)


class PPOLossFunction(torch.autograd.Function):
    """loss = mean(pg) + vf_coef * mean(vf). The forward computes d loss / d logprobs and
    d loss / d values per token in the same pass and saves only those two [N] tensors."""

    @staticmethod
    def forward(ctx, backend, logprobs, values, others, clip_low, clip_high, dual_clip,
                value_clip, vf_coef):
        dtype = backend.compute_dtype(logprobs, values)
        old_logprobs, advantages, old_values, returns = (backend.prepare(t, dtype) for t in others)
        lp, v = backend.prepare(logprobs, dtype), backend.prepare(values, dtype)
        need_grad = any(ctx.needs_input_grad[1:3])
        acc = backend.accumulator_dtype(dtype)
        grad_lp, grad_v = (new_buffer(lp.shape[0] if need_grad else 0, acc, lp.device)
                           for _ in range(2))
        sums = backend.ppo_loss_fwd(lp, old_logprobs, advantages, v, old_values, returns,
                                    clip_low, clip_high, dual_clip, value_clip, vf_coef,
                                    need_grad, grad_lp, grad_v)
        ctx.save_for_backward(grad_lp, grad_v)
        ctx.input_dtypes = (logprobs.dtype, values.dtype)
        means = sums / lp.shape[0]
        loss = means[0] + vf_coef * means[1]
        ctx.mark_non_differentiable(means)
        return loss.to(result_dtype(logprobs, values)), means

    @staticmethod
    def backward(ctx, grad_loss, _grad_means):
        grad_lp, grad_v = ctx.saved_tensors
        lp_dtype, v_dtype = ctx.input_dtypes
        return (None, (grad_lp * grad_loss).to(lp_dtype), (grad_v * grad_loss).to(v_dtype),
                None, None, None, None, None, None)


def _chunk_plan(n_rows, vocab, chunk_size, device):
    """-> (rows, cols) of one logits chunk: chunk_size rows (default DEFAULT_ROW_CHUNK, never
    more than there are), and as many vocabulary columns as DEFAULT_CHUNK_ELEMENTS allows; both
    defaults times CUDA_CHUNK_SCALE on a GPU."""
    scale = CUDA_CHUNK_SCALE if device.type == "cuda" else 1
    rows = max(1, min(n_rows, chunk_size or DEFAULT_ROW_CHUNK * scale))
    cols = max(1, min(vocab, DEFAULT_CHUNK_ELEMENTS * scale // rows))
    return rows, cols


def _chunks(total, size):
    return [(start, min(total, start + size)) for start in range(0, total, size)]


def _matmul(a, b, dtype, out=None):
    """a @ b in `dtype` (float32 / float64, the accumulator). Half-precision CUDA inputs stay half:
    cuBLAS runs them on tensor cores with float32 accumulation and output. Other inputs are
    upcast (exact for float32; the CPU and interpreter path)."""
    if a.is_cuda and a.dtype != dtype:
        return torch.mm(a, b, out_dtype=dtype, out=out)
    return torch.mm(a.to(dtype), b.to(dtype), out=out)


def _logits_chunk(buffer, h, w, rows, cols, inv_temperature):
    """buffer (flat, accumulator dtype) -> contiguous [rows, cols] view holding
    (h[rows] @ w[cols].T) / temperature."""
    out = buffer[: (rows[1] - rows[0]) * (cols[1] - cols[0])].view(rows[1] - rows[0], cols[1] - cols[0])
    _matmul(h[rows[0]:rows[1]], w[cols[0]:cols[1]].T, buffer.dtype, out=out)
    if inv_temperature != 1.0:
        out.mul_(inv_temperature)
    return out


class TokenLogprobsFunction(torch.autograd.Function):
    """Per-token log p(target) and entropy under softmax(hidden @ weight.T / temperature) without
    the [N, V] logits: row chunks x vocabulary chunks with an online log-sum-exp. Saves hidden,
    weight, targets and two floats per token (lse, entropy); the backward recomputes each logits
    chunk, turns it into d logits in place and accumulates both matmul gradients. Logits chunks
    are in the accumulator dtype; the gradient matmuls read d logits in the input dtype (bf16 on
    tensor cores for bf16 models) and accumulate in float32."""

    @staticmethod
    def forward(ctx, backend, hidden, weight, targets, temperature, chunk_size):
        dtype = backend.compute_dtype(hidden, weight)
        h, w = backend.prepare(hidden, dtype), backend.prepare(weight, dtype)
        tgt = targets.to(torch.int64).contiguous()
        n, vocab = h.shape[0], w.shape[0]
        acc = backend.accumulator_dtype(dtype)
        row_max = torch.full((n,), float("-inf"), dtype=acc, device=h.device)
        row_sum, row_dot, target_logit = (torch.zeros(n, dtype=acc, device=h.device) for _ in range(3))
        row_step, col_step = _chunk_plan(n, vocab, chunk_size, h.device)
        buffer = new_buffer(min(n, row_step) * min(vocab, col_step), acc, h.device)
        inv_t = 1.0 / temperature
        for rows in _chunks(n, row_step):
            for cols in _chunks(vocab, col_step):
                logits = _logits_chunk(buffer, h, w, rows, cols, inv_t)
                r = slice(*rows)
                backend.logprobs_fwd_chunk(logits, tgt[r], cols[0], row_max[r], row_sum[r],
                                           row_dot[r], target_logit[r])
        lse = row_max + row_sum.log()
        entropy = lse - row_dot / row_sum
        ctx.backend, ctx.inv_t, ctx.plan = backend, inv_t, (row_step, col_step)
        ctx.input_dtypes = (hidden.dtype, weight.dtype)
        ctx.save_for_backward(h, w, tgt, lse, entropy)
        out_dtype = result_dtype(hidden, weight)
        return (target_logit - lse).to(out_dtype), entropy.to(out_dtype)

    @staticmethod
    def backward(ctx, grad_logprobs, grad_entropy):
        h, w, tgt, lse, entropy = ctx.saved_tensors
        backend, inv_t = ctx.backend, ctx.inv_t
        n, vocab = h.shape[0], w.shape[0]
        g_lp = torch.zeros_like(lse) if grad_logprobs is None else grad_logprobs.to(lse.dtype).contiguous()
        g_ent = torch.zeros_like(lse) if grad_entropy is None else grad_entropy.to(lse.dtype).contiguous()
        grad_h = torch.zeros_like(h, dtype=lse.dtype) if ctx.needs_input_grad[1] else None
        grad_w = torch.zeros_like(w, dtype=lse.dtype) if ctx.needs_input_grad[2] else None
        row_step, col_step = ctx.plan
        buffer = new_buffer(min(n, row_step) * min(vocab, col_step), lse.dtype, h.device)
        for rows in _chunks(n, row_step):
            r = slice(*rows)
            for cols in _chunks(vocab, col_step):
                c = slice(*cols)
                d_logits = _logits_chunk(buffer, h, w, rows, cols, inv_t)
                backend.logprobs_bwd_chunk(d_logits, tgt[r], cols[0], lse[r], entropy[r],
                                           g_lp[r], g_ent[r])
                d_in = d_logits.to(h.dtype)
                if grad_h is not None:
                    grad_h[r].add_(_matmul(d_in, w[c], lse.dtype), alpha=inv_t)
                if grad_w is not None:
                    grad_w[c].add_(_matmul(d_in.T, h[r], lse.dtype), alpha=inv_t)
        hidden_dtype, weight_dtype = ctx.input_dtypes
        return (None, None if grad_h is None else grad_h.to(hidden_dtype),
                None if grad_w is None else grad_w.to(weight_dtype), None, None, None)


def make_ops(backend):
    """-> namespace of gae, dense_rewards, dense_rewards_gae, line_scores, ppo_loss,
    token_logprobs running on `backend` (inputs already validated by api.py)."""

    def _outputs(like, dtype, count):
        acc = backend.accumulator_dtype(dtype)
        return [new_buffer(like.shape[0], acc, like.device) for _ in range(count)]

    def gae(rewards, values, cu_seqlens, *, gamma, lam):
        dtype = backend.compute_dtype(rewards, values)
        advantages, returns = _outputs(values, dtype, 2)
        backend.gae(backend.prepare(rewards, dtype), backend.prepare(values, dtype), cu_seqlens,
                    float(gamma), float(lam), advantages, returns)
        out = result_dtype(rewards, values)
        return advantages.to(out), returns.to(out)

    def dense_rewards(prm_scores, line_end, kl, outcome, passed, cu_seqlens, *, kl_coef,
                      prm_coef_fail, prm_coef_pass, normalize_by_lines):
        dtype = backend.compute_dtype(prm_scores, kl, outcome)
        (rewards,) = _outputs(kl, dtype, 1)
        prm, k, o = (backend.prepare(t, dtype) for t in (prm_scores, kl, outcome))
        backend.dense_rewards(prm, line_end, k, o, passed,
                              cu_seqlens, float(kl_coef), float(prm_coef_fail),
                              float(prm_coef_pass), bool(normalize_by_lines), rewards)
        return rewards.to(result_dtype(prm_scores, kl, outcome))

    def dense_rewards_gae(values, prm_scores, line_end, kl, outcome, passed, cu_seqlens, *, gamma,
                          lam, kl_coef, prm_coef_fail, prm_coef_pass, normalize_by_lines):
        dtype = backend.compute_dtype(values, prm_scores, kl, outcome)
        rewards, advantages, returns = _outputs(values, dtype, 3)
        v, prm, k, o = (backend.prepare(t, dtype) for t in (values, prm_scores, kl, outcome))
        backend.dense_rewards_gae(v, prm, line_end, k, o, passed, cu_seqlens, float(gamma),
                                  float(lam), float(kl_coef), float(prm_coef_fail),
                                  float(prm_coef_pass), bool(normalize_by_lines), rewards,
                                  advantages, returns)
        out = result_dtype(values, prm_scores, kl, outcome)
        return rewards.to(out), advantages.to(out), returns.to(out)

    def line_scores(hidden, weight, bias, line_end):
        return LineScoresFunction.apply(backend, hidden, weight, bias, line_end)

    def ppo_loss(logprobs, old_logprobs, advantages, values, old_values, returns, cu_seqlens, *,
                 clip_low, clip_high, dual_clip, value_clip, vf_coef):
        loss, means = PPOLossFunction.apply(backend, logprobs, values,
                                            (old_logprobs, advantages, old_values, returns),
                                            float(clip_low), float(clip_high),
                                            -1.0 if dual_clip is None else float(dual_clip),
                                            float(value_clip), float(vf_coef))
        names = ("pg_loss", "vf_loss", "clipfrac", "vf_clipfrac", "approx_kl")
        return loss, {name: means[i].detach() for i, name in enumerate(names)}

    def token_logprobs(hidden, weight, targets, *, temperature=1.0, chunk_size=None):
        return TokenLogprobsFunction.apply(backend, hidden, weight, targets, float(temperature),
                                           chunk_size)

    return SimpleNamespace(name=backend.name, gae=gae, dense_rewards=dense_rewards,
                           dense_rewards_gae=dense_rewards_gae, line_scores=line_scores,
                           ppo_loss=ppo_loss, token_logprobs=token_logprobs)
