"""The PPO objective as a small module over the packed layout (wraps `kernels.ppo_loss`)."""
from __future__ import annotations

from torch import nn

from prmfast import kernels


class PPOLoss(nn.Module):
    """Clipped surrogate policy loss and clipped value loss of PPO (Schulman et al. 2017,
    "Proximal Policy Optimization Algorithms", arXiv 1707.06347), with the asymmetric clip range
    (clip_low / clip_high, as in DAPO, Yu et al. 2025, arXiv 2503.14476), the dual clip for
    negative advantages (Ye et al. 2020, "Mastering Complex Control in MOBA Games with Deep
    Reinforcement Learning", arXiv 1912.09729) and an optional entropy bonus (Mnih et al. 2016,
    A3C). Token mean over all N packed tokens.

    forward(logprobs [N], old_logprobs [N], advantages [N], values [N], old_values [N],
            returns [N], cu_seqlens [S+1], entropy [N] | None) -> (loss 0-d, stats dict)
    `logprobs` and `values` carry the gradients (policy and critic are separate networks, so
    one backward of the sum updates both). The coefficients are required: their defaults live
    in prmfast.config.RLConfig only."""

    def __init__(self, *, clip_low: float, clip_high: float, dual_clip: float | None,
                 value_clip: float, vf_coef: float, entropy_coef: float, impl: str = "auto"):
        super().__init__()
        self.clip_low, self.clip_high, self.dual_clip = clip_low, clip_high, dual_clip
        self.value_clip, self.vf_coef, self.entropy_coef = value_clip, vf_coef, entropy_coef
        self.impl = impl

    def forward(self, logprobs, old_logprobs, advantages, values, old_values, returns,
                cu_seqlens, entropy=None):
        loss, stats = kernels.ppo_loss(
            logprobs, old_logprobs, advantages, values, old_values, returns, cu_seqlens,
            clip_low=self.clip_low, clip_high=self.clip_high, dual_clip=self.dual_clip,
            value_clip=self.value_clip, vf_coef=self.vf_coef, impl=self.impl)
        stats = {k: float(v) for k, v in stats.items()}
        if entropy is not None:
            mean_entropy = entropy.mean() if entropy.numel() else entropy.sum()
            stats["entropy"] = float(mean_entropy.detach())
            if self.entropy_coef:
                loss = loss - self.entropy_coef * mean_entropy
        return loss, stats
