"""Padded [B, T] + mask convenience wrappers: pack the masked tokens (row by row, in order),
run the packed op, scatter back (zeros at padding). Each row's masked tokens form one sequence."""
import torch

from prmfast.kernels import api
from prmfast.kernels.validation import check_bool

__all__ = ["pack", "unpack", "gae_padded", "dense_rewards_padded", "dense_rewards_gae_padded",
           "ppo_loss_padded"]


def pack(mask, *tensors):
    """mask [B, T] bool, tensors [B, T] -> (cu_seqlens [B+1] int64, *packed [N])."""
    check_bool("mask", mask)
    if mask.dim() != 2:
        raise ValueError(f"mask must be 2-D [B, T], got shape {tuple(mask.shape)}")
    for i, t in enumerate(tensors):
        if t.shape != mask.shape:
            raise ValueError(f"padded tensor #{i} must have the mask's shape {tuple(mask.shape)}, "
                             f"got {tuple(t.shape)}")
    cu_seqlens = torch.zeros(mask.shape[0] + 1, dtype=torch.int64, device=mask.device)
    torch.cumsum(mask.sum(1), 0, out=cu_seqlens[1:])
    return (cu_seqlens, *(t[mask] for t in tensors))


def unpack(mask, *packed):
    """mask [B, T], packed [N] -> [B, T] each (zeros where mask is False)."""
    out = []
    for p in packed:
        full = p.new_zeros(mask.shape)
        full[mask] = p
        out.append(full)
    return tuple(out)


def gae_padded(rewards, values, mask, *, gamma, lam, impl="auto"):
    """rewards, values, mask: [B, T] -> (advantages [B, T], returns [B, T])."""
    cu_seqlens, r, v = pack(mask, rewards, values)
    return unpack(mask, *api.gae(r, v, cu_seqlens, gamma=gamma, lam=lam, impl=impl))


def dense_rewards_padded(prm_scores, line_end, kl, outcome, passed, mask, **kwargs):
    """[B, T] token tensors, outcome/passed [B] -> rewards [B, T] (kwargs as dense_rewards)."""
    cu_seqlens, prm, ends, k = pack(mask, prm_scores, line_end, kl)
    return unpack(mask, api.dense_rewards(prm, ends, k, outcome, passed, cu_seqlens, **kwargs))[0]


def dense_rewards_gae_padded(values, prm_scores, line_end, kl, outcome, passed, mask, **kwargs):
    """[B, T] token tensors, outcome/passed [B] -> (rewards, advantages, returns) each [B, T]."""
    cu_seqlens, v, prm, ends, k = pack(mask, values, prm_scores, line_end, kl)
    return unpack(mask, *api.dense_rewards_gae(v, prm, ends, k, outcome, passed, cu_seqlens,
                                               **kwargs))


def ppo_loss_padded(logprobs, old_logprobs, advantages, values, old_values, returns, mask,
                    **kwargs):
    """[B, T] tensors -> (loss, stats), token mean over the masked tokens (kwargs as ppo_loss)."""
    cu_seqlens, *packed = pack(mask, logprobs, old_logprobs, advantages, values, old_values,
                               returns)
    return api.ppo_loss(*packed, cu_seqlens, **kwargs)
