"""Small pure helpers of the PPO loop: advantage whitening, KL estimate, LR schedules, checkpoint
spacing, per-step seeds. No state, no I/O (whiten's statistics are global across ranks)."""
from __future__ import annotations

import math

import torch

from prmfast.distributed import global_mean_std

LR_SCHEDULES = ("constant", "linear", "cosine")
OUTCOME_BASELINES = ("none", "prompt_mean")
MINIBATCH_ORDERS = ("prompt", "sequence")
_WHITEN_RTOL = 1e-5    # std below this share of |mean| is rounding noise (float32 eps ~1.2e-7)


def whiten(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(x - mean) / std over all N packed tokens, of all ranks when distributed (one all-reduce,
    so the result does not depend on how the batch is sharded). x [N] -> [N]; a batch of < 2
    tokens is only centred, and so is one whose spread is negligible (std <= eps + 1e-5 |mean|:
    rounding-level noise of constant advantages, which dividing would blow up to O(1) values)."""
    n, mean, std = global_mean_std(x)
    if n < 2:
        return x - mean
    negligible = std <= eps + _WHITEN_RTOL * mean.abs()   # a tensor test: no host sync
    return torch.where(negligible, x - mean, (x - mean) / (std + eps))


def prompt_mean_baseline(outcome: torch.Tensor, group_size: int) -> torch.Tensor:
    """Each response's outcome minus the mean outcome of its prompt's samples: outcome [S] with
    the group_size samples of each prompt consecutive -> [S]. A prompt whose samples all pass or
    all fail then gives no outcome reward, so how hard a prompt is does not reach its tokens'
    advantages (a per-prompt baseline, as in RLOO / GRPO, applied before GAE)."""
    if group_size < 1 or outcome.numel() % group_size:
        raise ValueError(f"{outcome.numel()} outcomes do not split into prompts of "
                         f"{group_size} samples")
    groups = outcome.reshape(-1, group_size)
    return (groups - groups.mean(dim=1, keepdim=True)).reshape(-1)


def minibatch_order(groups: list[list[int]], kind: str, gen: torch.Generator) -> list[int]:
    """A random order of the sequences of one update epoch, cut into minibatches by the caller.
    groups: the sequence indices of each prompt (every sequence in exactly one group).
    kind "sequence": every sequence anywhere (one randperm over them); "prompt": the groups in
    random order, each group's sequences together, so that a minibatch holds few prompts and
    the packed forwards (which compute a shared prompt once) run on fewer prompt tokens."""
    if kind not in MINIBATCH_ORDERS:
        raise ValueError(f"kind: {kind!r} is not one of {list(MINIBATCH_ORDERS)}")
    if kind == "sequence":
        return torch.randperm(sum(map(len, groups)), generator=gen, device="cpu").tolist()
    return [i for g in torch.randperm(len(groups), generator=gen, device="cpu").tolist()
            for i in groups[g]]


def kl_estimate(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """Per-token KL(policy || reference) sample estimate log p - log p_ref (the k1 estimator
    used for the reward penalty in Ziegler et al. 2019 / Ouyang et al. 2022). [N] -> [N]."""
    return logprobs - ref_logprobs


def lr_factor(schedule: str, step: int, total: int, warmup: int = 0) -> float:
    """Multiplier of the base learning rate at optimizer step `step` (0-based) of `total`:
    linear warm-up over `warmup` steps, then constant, linear decay to 0 or cosine decay to 0."""
    if schedule not in LR_SCHEDULES:
        raise ValueError(f"rl.lr_schedule: unknown {schedule!r}; choose one of {LR_SCHEDULES}")
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant" or total <= warmup:
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if schedule == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def checkpoint_steps(total_steps: int, num_checkpoints: int) -> list[int]:
    """Steps (1-based counts of finished iterations) after which to save a policy checkpoint,
    evenly spaced and ending at the last step: e.g. (40, 4) -> [10, 20, 30, 40]."""
    if num_checkpoints <= 0 or total_steps <= 0:
        return []
    k = min(num_checkpoints, total_steps)
    return sorted({round(total_steps * (i + 1) / k) for i in range(k)})


def step_seed(seed: int, step: int, salt: int = 0) -> int:
    """A seed for iteration `step` that depends only on (seed, step, salt), so that a resumed
    run draws exactly what an uninterrupted one would."""
    return (seed * 1_000_003 + step * 7_919 + salt * 104_729) % (2**31 - 1)
