"""Padded [B, T] + mask convenience wrappers: pack the masked tokens (row by row, in order),
run the packed op, scatter back (zeros at padding). Each row's masked tokens form one sequence."""
import torch

from prmfast.kernels import api
from prmfast.kernels.validation import check_bool

__all__ = ["pack", "unpack", "gae_padded", "dense_rewards_padded", "dense_rewards_gae_padded",
           "ppo_loss_padded"]


def pack(mask, *tensors):
    """mask [B, T] bool, tensors [B, T] -> (cu_seqlens [B+1] int64, *packed [N])."""
    return _pack(mask, **{f"tensor #{i}": t for i, t in enumerate(tensors)})


def _pack(mask, **named):
    """pack, with the tensors named as their errors should call them."""
    check_bool("mask", mask)
    if mask.dim() != 2:
        raise ValueError(f"mask must be 2-D [B, T], got shape {tuple(mask.shape)}")
    for name, t in named.items():
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.shape != mask.shape:
            raise ValueError(f"{name} must have the mask's shape {tuple(mask.shape)}, "
                             f"got {tuple(t.shape)}")
    cu_seqlens = torch.zeros(mask.shape[0] + 1, dtype=torch.int64, device=mask.device)
    torch.cumsum(mask.sum(1), 0, out=cu_seqlens[1:])
    return (cu_seqlens, *(t[mask] for t in named.values()))


def unpack(mask, *packed):
    """mask [B, T] bool, packed [N] (N = mask.sum()) -> [B, T] each (zeros where mask is False)."""
    check_bool("mask", mask)
    n = int(mask.sum())
    out = []
    for i, p in enumerate(packed):
        if not isinstance(p, torch.Tensor) or tuple(p.shape) != (n,):
            got = tuple(p.shape) if isinstance(p, torch.Tensor) else type(p).__name__
            raise ValueError(f"packed tensor #{i} must have shape ({n},) (the mask's True "
                             f"count), got {got}")
        full = p.new_zeros(mask.shape)
        full[mask] = p
        out.append(full)
    return tuple(out)


def gae_padded(rewards, values, mask, *, gamma, lam, impl="auto"):
    """rewards, values, mask: [B, T] -> (advantages [B, T], returns [B, T])."""
    cu_seqlens, r, v = _pack(mask, rewards=rewards, values=values)
    return unpack(mask, *api.gae(r, v, cu_seqlens, gamma=gamma, lam=lam, impl=impl))


def dense_rewards_padded(prm_scores, line_end, kl, outcome, passed, mask, **kwargs):
    """[B, T] token tensors, outcome/passed [B] -> rewards [B, T] (kwargs as dense_rewards)."""
    cu_seqlens, prm, ends, k = _pack(mask, prm_scores=prm_scores, line_end=line_end, kl=kl)
    return unpack(mask, api.dense_rewards(prm, ends, k, outcome, passed, cu_seqlens, **kwargs))[0]


def dense_rewards_gae_padded(values, prm_scores, line_end, kl, outcome, passed, mask, **kwargs):
    """[B, T] token tensors, outcome/passed [B] -> (rewards, advantages, returns) each [B, T]."""
    cu_seqlens, v, prm, ends, k = _pack(mask, values=values, prm_scores=prm_scores,
                                         line_end=line_end, kl=kl)
    return unpack(mask, *api.dense_rewards_gae(v, prm, ends, k, outcome, passed, cu_seqlens,
                                               **kwargs))


def ppo_loss_padded(logprobs, old_logprobs, advantages, values, old_values, returns, mask,
                    **kwargs):
    """[B, T] tensors -> (loss, stats), token mean over the masked tokens (kwargs as ppo_loss)."""
    cu_seqlens, *packed = _pack(mask, logprobs=logprobs, old_logprobs=old_logprobs,
                                advantages=advantages, values=values, old_values=old_values,
                                returns=returns)
    return api.ppo_loss(*packed, cu_seqlens, **kwargs)
