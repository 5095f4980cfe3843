"""Raw numba CPU kernels (cache=True). Arrays are contiguous numpy views of torch tensors in the
compute dtype (float32 or float64); outputs are written into caller-provided buffers.

Sequence kernels run one sequence per prange iteration; token-wise kernels run one block of tokens
(or one row) per iteration. No kernel allocates per token."""
import math

import numpy as np
from numba import njit, prange

_OPTS = dict(cache=True, nogil=True, fastmath=False)


@njit(inline="always")
def _reward_at(t, end, line_end, prm_scores, kl, kl_coef, per_line, outcome_s):
    r = -kl_coef * kl[t]
    if line_end[t]:
        r += per_line * prm_scores[t]
    if t == end - 1:
        r += outcome_s
    return r


@njit(inline="always")
def _per_line_coef(line_end, begin, end, passed_s, prm_coef_fail, prm_coef_pass, normalize):
    coef = prm_coef_pass if passed_s else prm_coef_fail
    if not normalize:
        return coef
    n_lines = 0
    for t in range(begin, end):
        n_lines += line_end[t]
    return coef / n_lines if n_lines > 0 else 0.0


@njit(parallel=True, **_OPTS)
def gae_kernel(rewards, values, cu_seqlens, gamma, lam, advantages, returns):
    """rewards, values, advantages, returns: [N]; cu_seqlens [S+1]. Reverse scan per sequence."""
    for s in prange(cu_seqlens.shape[0] - 1):
        begin, end = cu_seqlens[s], cu_seqlens[s + 1]
        next_adv = 0.0
        next_value = 0.0
        for t in range(end - 1, begin - 1, -1):
            v = values[t]
            next_adv = rewards[t] + gamma * next_value - v + gamma * lam * next_adv
            advantages[t] = next_adv
            returns[t] = next_adv + v
            next_value = v


@njit(parallel=True, **_OPTS)
def dense_rewards_kernel(prm_scores, line_end, kl, outcome, passed, cu_seqlens, kl_coef,
                         prm_coef_fail, prm_coef_pass, normalize, rewards):
    """Token tensors [N], outcome/passed [S]; writes rewards [N]."""
    for s in prange(cu_seqlens.shape[0] - 1):
        begin, end = cu_seqlens[s], cu_seqlens[s + 1]
        per_line = _per_line_coef(line_end, begin, end, passed[s], prm_coef_fail, prm_coef_pass,
                                  normalize)
        for t in range(begin, end):
            rewards[t] = _reward_at(t, end, line_end, prm_scores, kl, kl_coef, per_line, outcome[s])


@njit(parallel=True, **_OPTS)
def dense_rewards_gae_kernel(values, prm_scores, line_end, kl, outcome, passed, cu_seqlens, gamma,
                             lam, kl_coef, prm_coef_fail, prm_coef_pass, normalize, rewards,
                             advantages, returns):
    """One pass per sequence: count its line ends (bytes), then one reverse scan that assembles
    each reward and advances GAE; rewards are written, never re-read."""
    for s in prange(cu_seqlens.shape[0] - 1):
        begin, end = cu_seqlens[s], cu_seqlens[s + 1]
        per_line = _per_line_coef(line_end, begin, end, passed[s], prm_coef_fail, prm_coef_pass,
                                  normalize)
        next_adv = 0.0
        next_value = 0.0
        for t in range(end - 1, begin - 1, -1):
            r = _reward_at(t, end, line_end, prm_scores, kl, kl_coef, per_line, outcome[s])
            v = values[t]
            next_adv = r + gamma * next_value - v + gamma * lam * next_adv
            rewards[t] = r
            advantages[t] = next_adv
            returns[t] = next_adv + v
            next_value = v


@njit(parallel=True, **_OPTS)
def line_scores_fwd_kernel(hidden, weight, bias, line_end, scores):
    """hidden [N, H], weight [H], line_end [N] -> scores [N] (dot products only on line ends)."""
    for t in prange(hidden.shape[0]):
        acc = 0.0
        if line_end[t]:
            acc = bias
            for h in range(hidden.shape[1]):
                acc += hidden[t, h] * weight[h]
        scores[t] = acc


@njit(parallel=True, **_OPTS)
def line_scores_bwd_kernel(grad, hidden, weight, line_end, n_blocks, grad_hidden, partial_weight,
                           partial_bias):
    """grad [N] -> grad_hidden [N, H] (every row written), per-block grad_weight partials
    [n_blocks, H] and grad_bias partials [n_blocks]; the caller sums the partials."""
    n, width = hidden.shape
    block = (n + n_blocks - 1) // n_blocks
    for b in prange(n_blocks):
        pw = partial_weight[b]
        pw[:] = 0.0
        pb = 0.0
        for t in range(b * block, min(n, (b + 1) * block)):
            g = grad[t] if line_end[t] else 0.0
            for h in range(width):
                grad_hidden[t, h] = g * weight[h]
            if g != 0.0:
                for h in range(width):
                    pw[h] += g * hidden[t, h]
                pb += g
        partial_bias[b] = pb


@njit(parallel=True, **_OPTS)
def ppo_loss_fwd_kernel(logprobs, old_logprobs, advantages, values, old_values, returns,
                        clip_low, clip_high, dual_clip, value_clip, vf_coef, need_grad, n_blocks,
                        grad_logprobs, grad_values, partials):
    """Token tensors [N]. Writes per-block sums partials [n_blocks, 5] = (pg, vf, clipped,
    vf_clipped, approx_kl) and, if need_grad, d loss / d logprobs and d loss / d values
    (already divided by N and scaled by vf_coef). dual_clip <= 0 means off."""
    n = logprobs.shape[0]
    block = (n + n_blocks - 1) // n_blocks
    inv_n = 1.0 / n
    for b in prange(n_blocks):
        pg_sum = vf_sum = clipped = vf_clipped = kl_sum = 0.0
        for t in range(b * block, min(n, (b + 1) * block)):
            log_ratio = logprobs[t] - old_logprobs[t]
            ratio = math.exp(log_ratio)
            a = advantages[t]
            clipped_ratio = min(max(ratio, 1.0 - clip_low), 1.0 + clip_high)
            pg1 = -a * ratio
            pg2 = -a * clipped_ratio
            # in range, both branches are the same function of ratio: take it unclipped (NaN
            # too, so that it reaches the loss and the gradient as in the reference)
            unclipped = ratio == clipped_ratio or not (pg2 > pg1)
            pg = pg1 if unclipped else pg2
            d_ratio = -a if unclipped else 0.0
            if not unclipped:
                clipped += 1.0
            if dual_clip > 0.0 and a < 0.0 and pg > -a * dual_clip:
                pg = -a * dual_clip
                d_ratio = 0.0
            v, r = values[t], returns[t]
            dv = v - old_values[t]
            sq1 = (v - r) * (v - r)
            if abs(dv) <= value_clip:
                sq2 = sq1
            else:
                v_clip = old_values[t] + min(max(dv, -value_clip), value_clip)
                sq2 = (v_clip - r) * (v_clip - r)
            if not (sq2 > sq1):
                vf_sum += 0.5 * sq1
                d_v = v - r
            else:
                vf_sum += 0.5 * sq2
                vf_clipped += 1.0
                d_v = 0.0
            pg_sum += pg
            kl_sum += 0.5 * log_ratio * log_ratio
            if need_grad:
                grad_logprobs[t] = d_ratio * ratio * inv_n
                grad_values[t] = vf_coef * d_v * inv_n
        partials[b, 0] = pg_sum
        partials[b, 1] = vf_sum
        partials[b, 2] = clipped
        partials[b, 3] = vf_clipped
        partials[b, 4] = kl_sum


@njit(parallel=True, **_OPTS)
def logprobs_fwd_chunk_kernel(logits, targets, vocab_start, row_max, row_sum, row_dot, target_logit):
    """One vocabulary chunk of the online log-sum-exp. logits [R, C] (already / temperature),
    targets [R]; running per-row state [R]: max m, sum exp(l - m), sum exp(l - m) * l, and the
    target's logit once its chunk is seen."""
    width = logits.shape[1]
    for i in prange(logits.shape[0]):
        row = logits[i]
        chunk_max = -np.inf
        for j in range(width):
            chunk_max = max(chunk_max, row[j])
        m = max(row_max[i], chunk_max)
        scale = math.exp(row_max[i] - m) if row_max[i] > -np.inf else 0.0
        acc_sum = row_sum[i] * scale
        acc_dot = row_dot[i] * scale
        for j in range(width):
            e = math.exp(row[j] - m)
            acc_sum += e
            acc_dot += e * row[j]
        row_max[i], row_sum[i], row_dot[i] = m, acc_sum, acc_dot
        col = targets[i] - vocab_start
        if 0 <= col < width:
            target_logit[i] = row[col]


@njit(parallel=True, **_OPTS)
def logprobs_bwd_chunk_kernel(logits, targets, vocab_start, lse, entropy, grad_logprobs,
                              grad_entropy):
    """In place: logits [R, C] -> d loss / d logits for one chunk, with p = exp(l - lse):
    grad_lp * (onehot - p) - grad_ent * p * (l - lse + entropy)."""
    width = logits.shape[1]
    for i in prange(logits.shape[0]):
        row = logits[i]
        g_lp, g_ent, row_lse, shift = grad_logprobs[i], grad_entropy[i], lse[i], entropy[i] - lse[i]
        for j in range(width):
            p = math.exp(row[j] - row_lse)
            row[j] = -p * (g_lp + g_ent * (row[j] + shift))
        col = targets[i] - vocab_start
        if 0 <= col < width:
            row[col] += g_lp
