"""prmfast inside verl (docs/integrations.md): line-level dense rewards + GAE with prmfast's fused
kernel as a verl advantage estimator, and unit-test rewards from prmfast's sandbox as a verl
reward function.

Importing this module registers, in verl's advantage-estimator registry
(`verl.trainer.ppo.core_algos.register_adv_est`), the estimator ESTIMATOR ("prmfast_line_gae").
On a verl batch of B responses padded to T tokens it computes, per response s,

    r_t = token_level_rewards_t + line_end_t * c_s * line_score_t / L_s        (c_s: prm_coef_pass
    A, R = GAE(r, values) over the response_mask tokens of the row             if s passed, else
                                                                               prm_coef_fail)
with prmfast's fused `kernels.dense_rewards_gae` (one pass per response), then whitens A over the
batch as verl's own "gae" estimator does. With all line scores zero it is verl's "gae".

Where the line data come from (verl's non-tensor batch, one entry per response; documented keys):
    LINE_ENDS_KEY   "line_ends"    token positions (0-based, in the response) that end a line
    LINE_SCORES_KEY "line_scores"  the PRM's score of each of those lines, same length
    PASSED_KEY      "passed"       whether the response passed its tests (compute_score fills it)

verl 0.9's trainer hands the critic's values and the non-tensor batch to its built-in "gae"
only, so the trainer needs `compute_advantage` below in place of its own: `patch_ray_trainer()`.

`compute_score` is a verl reward function (reward.custom_reward_function.path =
pkg://prmfast.integrations.verl, name = compute_score): it runs the response against the tests
in its ground truth (prmfast.integrations.rewards.task_ground_truth writes one) in a prmfast
Sandbox.
"""
from __future__ import annotations

from enum import Enum

import numpy as np
import torch
from verl.trainer.ppo import core_algos

from prmfast import kernels
from prmfast.config import RLConfig
from prmfast.integrations.rewards import PASSED_KEY, score_responses

ESTIMATOR = "prmfast_line_gae"
LINE_ENDS_KEY, LINE_SCORES_KEY = "line_ends", "line_scores"
CONFIG_KEY = "prmfast"     # algorithm.prmfast.{prm_coef_fail, prm_coef_pass, normalize_by_lines}
_COEFFICIENTS = ("prm_coef_fail", "prm_coef_pass", "normalize_by_lines")


def _coefficients(config) -> dict:
    """prm_coef_fail, prm_coef_pass, normalize_by_lines: RLConfig's defaults, overridden by
    config.prmfast (verl's algorithm config, e.g. +algorithm.prmfast.prm_coef_fail=0.5)."""
    defaults = RLConfig()
    chosen = {name: getattr(defaults, name) for name in _COEFFICIENTS}
    section = config.get(CONFIG_KEY) if config is not None and hasattr(config, "get") else None
    for name, value in dict(section or {}).items():
        if name not in chosen:
            raise ValueError(f"algorithm.{CONFIG_KEY}.{name} is not an option of {ESTIMATOR} "
                             f"(options: {', '.join(_COEFFICIENTS)})")
        chosen[name] = value
    return chosen


@core_algos.register_adv_est(ESTIMATOR)
def compute_line_gae_advantage_return(token_level_rewards: torch.Tensor,
                                      response_mask: torch.Tensor,
                                      values: torch.Tensor | None = None,
                                      line_end: torch.Tensor | None = None,
                                      line_scores: torch.Tensor | None = None,
                                      passed: torch.Tensor | None = None,
                                      gamma: float | None = None, lam: float | None = None,
                                      config=None, impl: str = "auto", **verl_kwargs):
    """Dense line rewards + GAE, advantages whitened over the batch (verl's "gae" convention).

    token_level_rewards, values, response_mask [B, T]; line_end [B, T] bool (a subset of the
    mask); line_scores [B, T] float; passed [B] bool -> (advantages [B, T], returns [B, T]),
    zero off the mask. verl_kwargs (index, reward_baselines) are what verl passes every
    estimator; this one has no use for them."""
    if values is None:
        raise ValueError(f"values: the {ESTIMATOR} estimator needs the critic's values (set "
                         f"critic.enable=True); verl's trainer passes them to its 'gae' only, so "
                         f"call prmfast.integrations.verl.patch_ray_trainer() in the process "
                         f"that runs RayPPOTrainer.fit")
    if gamma is None or lam is None:
        raise ValueError(f"gamma and lam: the {ESTIMATOR} estimator needs them (verl's "
                         f"algorithm.gamma and algorithm.lam), got {gamma} and {lam}")
    mask = _mask(response_mask, token_level_rewards)
    for name, t in (("values", values), ("line_end", line_end), ("line_scores", line_scores)):
        if t is None:
            raise ValueError(f"{name}: the {ESTIMATOR} estimator needs it "
                             f"(shape {tuple(mask.shape)})")
        if tuple(t.shape) != tuple(mask.shape):
            raise ValueError(f"{name} must have token_level_rewards' shape {tuple(mask.shape)}, "
                             f"got {tuple(t.shape)}")
    if passed is None or tuple(passed.shape) != (mask.shape[0],):
        got = None if passed is None else tuple(passed.shape)
        raise ValueError(f"passed must be a bool tensor of shape ({mask.shape[0]},), got {got}")
    options = dict(gamma=gamma, lam=lam, kl_coef=1.0, impl=impl, **_coefficients(config))
    b, t = mask.shape
    lengths = mask.sum(1)
    if bool((mask == (torch.arange(t, device=mask.device) < lengths[:, None])).all()):
        # right-padded (verl's layout): the [B*T] buffers as they are, each row a sequence of
        # its response tokens then one of its padding (zeroed below), no gather or scatter
        starts = torch.arange(b, device=mask.device) * t
        cu_seqlens = torch.cat([torch.stack([starts, starts + lengths], 1).flatten(),
                                starts.new_full((1,), b * t)])
        outcome = torch.zeros(2 * b, dtype=token_level_rewards.dtype, device=mask.device)
        _, advantages, returns = kernels.dense_rewards_gae(
            values.reshape(-1), line_scores.reshape(-1), line_end.reshape(-1),
            -token_level_rewards.reshape(-1), outcome, passed.repeat_interleave(2), cu_seqlens,
            **options)
        advantages, returns = advantages.view(b, t) * mask, returns.view(b, t) * mask
    else:   # masked spans inside responses (multi-turn): gather the mask tokens, scatter back
        outcome = torch.zeros(b, dtype=token_level_rewards.dtype, device=mask.device)
        _, advantages, returns = kernels.dense_rewards_gae_padded(
            values, line_scores, line_end, -token_level_rewards, outcome, passed, mask, **options)
    return _whiten(advantages, mask), returns


def _whiten(advantages: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """verl's masked_whiten (mean and unbiased variance over the mask, then (A - mean) *
    rsqrt(var + 1e-8)) for advantages [B, T] that are zero off the mask; zero off it after.
    Sums in float64, two passes (verl's takes six)."""
    n = int(mask.sum())
    if n < 2:
        raise ValueError(f"response_mask must hold at least 2 tokens to whiten the advantages "
                         f"(as verl's masked_whiten), got {n}")
    mean = (advantages.sum(dtype=torch.float64) / n).to(advantages.dtype)
    centered = (advantages - mean) * mask
    var = centered.square().sum(dtype=torch.float64) / (n - 1)
    return centered * torch.rsqrt(var + 1e-8).to(advantages.dtype)


def _mask(response_mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    if tuple(response_mask.shape) != tuple(like.shape) or like.dim() != 2:
        raise ValueError(f"response_mask must have token_level_rewards' shape [B, T] "
                         f"{tuple(like.shape)}, got {tuple(response_mask.shape)}")
    return response_mask.bool()


def line_tensors(line_ends, line_scores, response_mask: torch.Tensor):
    """Per-response line ends and scores (sequences of B ragged lists, verl's non-tensor form)
    -> (line_end [B, T] bool, line_scores [B, T] float32) on response_mask's device."""
    b, t = response_mask.shape
    for name, rows in ((LINE_ENDS_KEY, line_ends), (LINE_SCORES_KEY, line_scores)):
        if len(rows) != b:
            raise ValueError(f"non_tensor_batch[{name!r}] must hold one entry per response "
                             f"({b}), got {len(rows)}")
    empty = np.zeros(0, np.int64)
    rows, cols, scores = [empty], [empty], [np.zeros(0, np.float32)]
    for i, (ends, row_scores) in enumerate(zip(line_ends, line_scores)):
        ends, row_scores = np.asarray(ends, dtype=np.int64), np.asarray(row_scores, np.float32)
        if ends.shape != row_scores.shape or ends.ndim != 1:
            raise ValueError(f"response {i}: {LINE_ENDS_KEY!r} and {LINE_SCORES_KEY!r} must be "
                             f"lists of one length, got shapes {ends.shape} and {row_scores.shape}")
        if ends.size and (ends.min() < 0 or ends.max() >= t):
            raise ValueError(f"response {i}: {LINE_ENDS_KEY!r} must be token positions in "
                             f"[0, {t}), got {ends.tolist()}")
        rows.append(np.full(ends.size, i))
        cols.append(ends)
        scores.append(row_scores)
    rows, cols = torch.from_numpy(np.concatenate(rows)), torch.from_numpy(np.concatenate(cols))
    line_end = torch.zeros(b, t, dtype=torch.bool)
    line_end[rows, cols] = True
    dense = torch.zeros(b, t)
    dense[rows, cols] = torch.from_numpy(np.concatenate(scores))
    line_end, dense = line_end.to(response_mask.device), dense.to(response_mask.device)
    off = line_end & ~response_mask.bool()
    if bool(off.any()):
        i, j = (int(x) for x in off.nonzero()[0])
        raise ValueError(f"response {i}: line end at token {j} lies outside its response_mask")
    return line_end, dense


def _non_tensor(data, key: str):
    if key not in data.non_tensor_batch:
        raise ValueError(f"non_tensor_batch[{key!r}] is missing: the {ESTIMATOR} estimator "
                         f"needs it (docs/integrations.md; has {sorted(data.non_tensor_batch)})")
    return data.non_tensor_batch[key]


def compute_advantage(data, adv_estimator, gamma: float = 1.0, lam: float = 1.0,
                      num_repeat: int = 1, norm_adv_by_std_in_grpo: bool = True, config=None):
    """verl.trainer.ppo.ray_trainer.compute_advantage's drop-in: ESTIMATOR on a DataProto (its
    batch's token_level_rewards, values, response_mask and the non-tensor line keys), any other
    estimator by verl's own function. Sets data.batch["advantages"], ["returns"]."""
    name = adv_estimator.value if isinstance(adv_estimator, Enum) else adv_estimator
    if name != ESTIMATOR:
        from verl.trainer.ppo import ray_trainer
        original = getattr(ray_trainer.compute_advantage, "verl_original",
                           ray_trainer.compute_advantage)
        return original(data, adv_estimator, gamma=gamma, lam=lam, num_repeat=num_repeat,
                        norm_adv_by_std_in_grpo=norm_adv_by_std_in_grpo, config=config)
    batch = data.batch
    for key in ("token_level_rewards", "values", "response_mask"):
        if key not in batch.keys():
            raise ValueError(f"batch[{key!r}] is missing: the {ESTIMATOR} estimator needs it "
                             f"(has {sorted(batch.keys())})")
    mask = batch["response_mask"]
    line_end, line_scores = line_tensors(_non_tensor(data, LINE_ENDS_KEY),
                                         _non_tensor(data, LINE_SCORES_KEY), mask)
    passed = torch.as_tensor(np.asarray(_non_tensor(data, PASSED_KEY), dtype=bool),
                             device=mask.device)
    advantages, returns = compute_line_gae_advantage_return(
        batch["token_level_rewards"], mask, values=batch["values"], line_end=line_end,
        line_scores=line_scores, passed=passed, gamma=gamma, lam=lam, config=config)
    batch["advantages"], batch["returns"] = advantages, returns
    return data


def patch_ray_trainer() -> None:
    """Route verl's RayPPOTrainer through compute_advantage (in this process; idempotent)."""
    from verl.trainer.ppo import ray_trainer
    if getattr(ray_trainer.compute_advantage, "verl_original", None) is None:
        original = ray_trainer.compute_advantage

        def patched(*args, **kwargs):
            return compute_advantage(*args, **kwargs)
        patched.verl_original = original
        ray_trainer.compute_advantage = patched


# ---- reward function: the response against its tests in the sandbox -----------------------

def compute_score(data_source, solution_str: str, ground_truth, extra_info=None, **kwargs) -> dict:
    """verl's reward-function signature: one response -> rewards.score_responses' dict."""
    return score_responses([solution_str], [ground_truth])[0]
