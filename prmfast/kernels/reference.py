"""Torch reference implementations of the ops of docs/design.md, "Kernels": exact, any float
dtype (float64 included), differentiable through plain autograd. Half-precision inputs are computed in float32.

Every function takes already-validated tensors (see api.py) and has the public signature."""
import torch

__all__ = ["gae", "dense_rewards", "dense_rewards_gae", "line_scores", "ppo_loss", "token_logprobs"]


def result_dtype(*tensors):
    """float64 if any input is float64, else float32 (half inputs are upcast)."""
    dtype = torch.float32
    for t in tensors:
        dtype = torch.promote_types(dtype, t.dtype)
    return dtype


def _lengths(cu_seqlens):
    return (cu_seqlens[1:] - cu_seqlens[:-1]).long()


def _to_padded(x, cu_seqlens):
    """[N] -> ([S, Tmax], bool mask [S, Tmax]) with each sequence left-aligned."""
    lengths = _lengths(cu_seqlens)
    s = lengths.numel()
    t_max = int(lengths.max()) if s else 0
    mask = torch.arange(t_max, device=x.device)[None, :] < lengths[:, None]
    padded = x.new_zeros(s, t_max)
    padded[mask] = x
    return padded, mask


def gae(rewards, values, cu_seqlens, *, gamma, lam):
    """rewards, values: [N]; cu_seqlens: [S+1] -> (advantages [N], returns [N]).

    delta_t = r_t + gamma * V_{t+1} * [t+1 < e_s] - V_t;  A_t = delta_t + gamma*lam*A_{t+1}*[t+1 < e_s]
    Computed with a reverse loop over time on a padded [S, Tmax] view (padding never leaks:
    the continuation factor is zero past each sequence's end)."""
    dtype = result_dtype(rewards, values)
    r, mask = _to_padded(rewards.to(dtype), cu_seqlens)
    v, _ = _to_padded(values.to(dtype), cu_seqlens)
    cont = torch.zeros_like(r)
    cont[:, :-1] = mask[:, 1:].to(dtype)
    adv = torch.zeros_like(r)
    next_adv = r.new_zeros(r.shape[0])
    for t in reversed(range(r.shape[1])):
        next_v = v[:, t + 1] if t + 1 < r.shape[1] else torch.zeros_like(next_adv)
        delta = r[:, t] + gamma * next_v * cont[:, t] - v[:, t]
        next_adv = delta + gamma * lam * next_adv * cont[:, t]
        adv[:, t] = next_adv
    advantages = adv[mask]
    return advantages, advantages + values.to(dtype)


def dense_rewards(prm_scores, line_end, kl, outcome, passed, cu_seqlens, *, kl_coef,
                  prm_coef_fail, prm_coef_pass, normalize_by_lines):
    """prm_scores, line_end (bool), kl: [N]; outcome, passed (bool): [S] -> rewards [N].

    r_t = -kl_coef*kl_t + line_end_t * c_s * prm_t / L_s + [t == e_s - 1] * outcome_s"""
    dtype = result_dtype(prm_scores, kl, outcome)
    lengths = _lengths(cu_seqlens)
    s = lengths.numel()
    seq_of_token = torch.repeat_interleave(torch.arange(s, device=kl.device), lengths)
    ends = line_end.to(dtype)
    zero = torch.zeros((), dtype=dtype, device=kl.device)
    if normalize_by_lines:
        n_lines = torch.zeros(s, dtype=dtype, device=kl.device).index_add_(0, seq_of_token, ends)
    else:
        n_lines = torch.ones(s, dtype=dtype, device=kl.device)
    coef = torch.where(passed, torch.tensor(prm_coef_pass, dtype=dtype, device=kl.device),
                       torch.tensor(prm_coef_fail, dtype=dtype, device=kl.device))
    per_line = (coef / n_lines.clamp(min=1))[seq_of_token]
    # where, not a product: a NaN or inf score off a line end must not leak (as in the fast paths)
    rewards = -kl_coef * kl.to(dtype) + torch.where(line_end, per_line * prm_scores.to(dtype), zero)
    last = cu_seqlens[1:].long() - 1
    nonempty = lengths > 0
    rewards[last[nonempty]] += outcome.to(dtype)[nonempty]
    return rewards


def dense_rewards_gae(values, prm_scores, line_end, kl, outcome, passed, cu_seqlens, *, gamma, lam,
                      kl_coef, prm_coef_fail, prm_coef_pass, normalize_by_lines):
    """dense_rewards then gae -> (rewards [N], advantages [N], returns [N])."""
    rewards = dense_rewards(prm_scores, line_end, kl, outcome, passed, cu_seqlens, kl_coef=kl_coef,
                            prm_coef_fail=prm_coef_fail, prm_coef_pass=prm_coef_pass,
                            normalize_by_lines=normalize_by_lines)
    rewards = rewards.to(result_dtype(rewards, values))
    return (rewards, *gae(rewards, values, cu_seqlens, gamma=gamma, lam=lam))


def line_scores(hidden, weight, bias, line_end):
    """hidden [N, H], weight [H], bias [] or [1], line_end [N] bool -> scores [N].

    scores_t = line_end_t * (hidden_t . weight + bias), zero elsewhere."""
    dtype = result_dtype(hidden, weight)
    zero = torch.zeros((), dtype=dtype, device=hidden.device)
    # rows off a line end are zeroed before the product, so a NaN there reaches no gradient
    rows = torch.where(line_end[:, None], hidden.to(dtype), zero)
    raw = rows @ weight.to(dtype) + bias.to(dtype).reshape(())
    return torch.where(line_end, raw, zero)


def ppo_loss(logprobs, old_logprobs, advantages, values, old_values, returns, cu_seqlens, *,
             clip_low, clip_high, dual_clip, value_clip, vf_coef):
    """All tensors [N] -> (loss [], stats dict of detached 0-d tensors). Token mean over N."""
    dtype = result_dtype(logprobs, values)
    lp, olp, adv, v, ov, ret = (t.to(dtype) for t in
                                (logprobs, old_logprobs, advantages, values, old_values, returns))
    log_ratio = lp - olp
    ratio = torch.exp(log_ratio)
    pg_unclipped = -adv * ratio
    pg_clipped = -adv * torch.clamp(ratio, 1 - clip_low, 1 + clip_high)
    pg = torch.maximum(pg_unclipped, pg_clipped)
    if dual_clip is not None:
        pg = torch.where(adv < 0, torch.minimum(pg, -adv * dual_clip), pg)
    # in range v itself (not ov + (v - ov), which rounds and would count as clipped)
    v_clipped = torch.where((v - ov).abs() <= value_clip, v,
                            ov + torch.clamp(v - ov, -value_clip, value_clip))
    vf_unclipped = (v - ret) ** 2
    vf_clipped = (v_clipped - ret) ** 2
    vf = 0.5 * torch.maximum(vf_unclipped, vf_clipped)
    pg_loss, vf_loss = pg.mean(), vf.mean()
    loss = pg_loss + vf_coef * vf_loss
    stats = {
        "pg_loss": pg_loss.detach(),
        "vf_loss": vf_loss.detach(),
        "clipfrac": (pg_clipped > pg_unclipped).to(dtype).mean(),
        "vf_clipfrac": (vf_clipped > vf_unclipped).to(dtype).mean(),
        "approx_kl": (0.5 * log_ratio.detach() ** 2).mean(),
    }
    return loss, stats


def token_logprobs(hidden, weight, targets, *, temperature=1.0, chunk_size=None):
    """hidden [N, H], weight [V, H], targets [N] int -> (logprobs [N], entropy [N]).

    The reference materialises the [N, V] logits (it is the exact yardstick, not the fast path);
    chunk_size is accepted for a uniform signature and ignored. Both outputs are differentiable."""
    dtype = result_dtype(hidden, weight)
    logits = (hidden.to(dtype) @ weight.to(dtype).T) / temperature
    log_probs = torch.log_softmax(logits, dim=-1)
    logprobs = log_probs.gather(-1, targets.long()[:, None]).squeeze(-1)
    entropy = -(log_probs.exp() * log_probs).sum(-1)
    return logprobs, entropy
