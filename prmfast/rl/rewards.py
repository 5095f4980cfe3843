"""Reward variants for PPO (config `rl.reward`), as pure functions on the packed layout.

Every variant turns the facts about a batch of S responses (N packed response tokens) into the two
inputs of `kernels.dense_rewards` that differ between variants:

    line_scores [N] float   a score at each line-end token (zero elsewhere); the kernel scales it
                            by lambda_s (rl.prm_coef_fail / rl.prm_coef_pass) and by 1 / T_s
                            (rl.normalize_by_lines) and places it on that token
    outcome     [S] float   the reward at the response's last token

The KL penalty is added by the kernel for every variant. Variants (docs/design.md, "Method"):

    sparse   outcome = R_UT (1 iff all tests pass); no line scores          (the paper's baseline)
    partial  outcome = fraction of tests passed; no line scores             (reviewers' control)
    dense    outcome = R_UT; line scores = PRM score of the prefix y(<=m)   (paper's DenseReward)
    oracle   outcome = R_UT; line scores = +1 before the oracle's first error line, -1 from it
             (synthetic suite only; an upper bound on what a perfect PRM could give)

With `neutral_comments` the score at the end of a comment or blank line is forced to 0, the
RL-side mirror of the paper's neutral comment label (the fix for comment spam).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch


@dataclass
class RewardInputs:
    """What a reward variant may read. S sequences, N = cu_seqlens[-1] packed tokens.

    cu_seqlens [S+1] int64; line_end [N] bool (token closes a response line); line_index [N]
    int64 (0-based index of the line a token belongs to; -1 for tokens after the last line, such
    as EOS); comment_end [N] bool (line end of a comment or blank line); passed [S] bool;
    frac_passed [S] float32; first_error_line: per sequence the oracle's 0-based first wrong
    line or None (oracle variant only); prm_scores [N] float32, PRM scores at line ends and 0
    elsewhere (dense variant only). All tensors on one device; the variants create theirs
    there too."""
    cu_seqlens: torch.Tensor
    line_end: torch.Tensor
    line_index: torch.Tensor
    comment_end: torch.Tensor
    passed: torch.Tensor
    frac_passed: torch.Tensor
    first_error_line: list[int | None] | None = None
    prm_scores: torch.Tensor | None = None


@dataclass(frozen=True)
class RewardVariant:
    fn: Callable[[RewardInputs], tuple[torch.Tensor, torch.Tensor]]
    needs_prm: bool = False
    needs_oracle: bool = False


def sparse_reward(inp: RewardInputs) -> tuple[torch.Tensor, torch.Tensor]:
    """R_UT at the last token only. Returns (line_scores [N] zeros, outcome [S])."""
    return torch.zeros_like(inp.line_end, dtype=torch.float32), inp.passed.float()


def partial_reward(inp: RewardInputs) -> tuple[torch.Tensor, torch.Tensor]:
    """Fraction of tests passed at the last token. Returns (zeros [N], frac_passed [S])."""
    return torch.zeros_like(inp.line_end, dtype=torch.float32), inp.frac_passed.float()


def prm_reward(inp: RewardInputs) -> tuple[torch.Tensor, torch.Tensor]:
    """PRM scores at line ends plus R_UT. Returns (prm_scores * line_end [N], outcome [S])."""
    if inp.prm_scores is None:
        raise ValueError("prm_scores: the dense reward needs PRM scores at line ends")
    return inp.prm_scores.float() * inp.line_end, inp.passed.float()


def oracle_reward(inp: RewardInputs) -> tuple[torch.Tensor, torch.Tensor]:
    """+1 at the end of every line before the oracle's first error line, -1 from it on.

    A passing response is all +1. A failing response for which the oracle finds no wrong step
    (the fault is after the steps, e.g. a missing return or a truncated response), or names a
    line past the response's last, gets -1 on its last line only. Returns (line_scores [N],
    outcome [S])."""
    if inp.first_error_line is None:
        raise ValueError("first_error_line: the oracle reward needs the oracle's first error line")
    n_seq = inp.passed.numel()
    if len(inp.first_error_line) != n_seq:
        raise ValueError(f"first_error_line: expected {n_seq} entries, got {len(inp.first_error_line)}")
    device = inp.cu_seqlens.device
    lengths = inp.cu_seqlens[1:] - inp.cu_seqlens[:-1]
    seq_of_token = torch.repeat_interleave(torch.arange(n_seq, device=device), lengths)
    n_lines = torch.zeros(n_seq, dtype=torch.int64, device=device).index_add_(
        0, seq_of_token, inp.line_end.long())
    if any(fe is not None and fe < 0 for fe in inp.first_error_line):
        raise ValueError("first_error_line: line indices are 0-based and cannot be negative")
    big = torch.iinfo(torch.int64).max
    first_error = torch.tensor(
        [big if fe is None else fe for fe in inp.first_error_line], dtype=torch.int64,
        device=device)
    first_error = torch.minimum(first_error, n_lines - 1)
    first_error = torch.where(inp.passed, torch.full_like(first_error, big), first_error)
    good = inp.line_index < first_error[seq_of_token]
    scores = torch.where(good, 1.0, -1.0) * inp.line_end
    return scores.float(), inp.passed.float()


REWARDS: dict[str, RewardVariant] = {
    "sparse": RewardVariant(sparse_reward),
    "partial": RewardVariant(partial_reward),
    "dense": RewardVariant(prm_reward, needs_prm=True),
    "oracle": RewardVariant(oracle_reward, needs_oracle=True),
}


def line_rewards(variant: str, inp: RewardInputs, *, neutral_comments: bool
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Dispatch to the variant and apply the neutral-comment mask. Returns (line_scores [N],
    outcome [S]) for `kernels.dense_rewards(_gae)`."""
    if variant not in REWARDS:
        raise ValueError(f"rl.reward: unknown variant {variant!r}; choose one of {sorted(REWARDS)}")
    scores, outcome = REWARDS[variant].fn(inp)
    if neutral_comments:
        scores = scores.masked_fill(inp.comment_end, 0.0)
    return scores, outcome
