"""prmfast.kernels: fused reward / advantage / loss ops on packed sequences (docs/design.md,
"Kernels").

Each op takes impl="auto" | "torch" | "numba" | "triton"; see docs/kernels.md."""
from prmfast.kernels.api import (IMPLS, dense_rewards, dense_rewards_gae, gae, line_scores,
                                 ppo_loss, resolve_impl, token_logprobs)
from prmfast.kernels.padded import (dense_rewards_gae_padded, dense_rewards_padded, gae_padded,
                                    pack, ppo_loss_padded, unpack)

__all__ = ["IMPLS", "gae", "dense_rewards", "dense_rewards_gae", "line_scores", "ppo_loss",
           "token_logprobs", "resolve_impl", "pack", "unpack", "gae_padded",
           "dense_rewards_padded", "dense_rewards_gae_padded", "ppo_loss_padded"]
