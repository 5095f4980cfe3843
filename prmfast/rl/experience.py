"""Experience for one PPO iteration in the packed layout (docs/design.md, "Packed layout").

Rollouts (prompt ids + response ids) are packed into S sequences of response tokens: sequence s
is its response tokens followed by EOS when the sample stopped on EOS, so N = sum of response
lengths and `cu_seqlens` [S+1] delimits them. The policy, reference and critic forwards are
prmfast.models.packed modules (PackedPolicy / PackedCritic, or those under a distributed engine)
over the prompt + response sequences packed (`PackedBatch.packed`: a prompt that several
samples share packed and computed once, its responses attending to it), read at the response
tokens only; the PRM's backbone runs on the same packed inputs. Everything after the forwards
(log-probs, values, PRM scores, KL, rewards, GAE, loss) stays packed.

Position conventions (shared with prmfast.prm so a PRM score lands where it was trained), for
response token t (`PackedBatch.packed()`; `act_index` / `tok_index` are the same positions in
the right-padded [S, T] view):
    act       the position whose hidden state predicts token t (the previous token, or the
              prompt's last): policy / reference log-probs and critic values V(s_t) (the state
              before action t)
    response  the position of token t itself: PRM score of the prefix ending at t, read at
              line ends only
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

import torch

from prmfast import kernels
from prmfast.models.packed import (pack_sequences, pack_shared, prompt_groups,
                                   packed_predecessors)
from prmfast.rl.algos import kl_estimate, prompt_mean_baseline, whiten
from prmfast.rl.rewards import REWARDS, RewardInputs, line_rewards


def _spans(starts: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """starts, lengths [K] int64 -> the positions start_k .. start_k + length_k - 1, one span
    after the other, [sum of lengths] int64."""
    ends = torch.cumsum(lengths, 0)
    offsets = torch.repeat_interleave(starts - (ends - lengths), lengths)
    return offsets + torch.arange(int(ends[-1]) if len(ends) else 0, dtype=torch.int64,
                                  device=starts.device)


def _whole(sequences: list[list[int]], prompt_lens: list[int]
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every prompt + response packed whole, on the CPU: (input_ids [M], cu_seqlens [S+1],
    response [N]: the packed position of every response token)."""
    ids, cu = pack_sequences(sequences)
    prompts = torch.tensor(prompt_lens, dtype=torch.int64, device=cu.device)
    return ids, cu, _spans(cu[:-1] + prompts, cu.diff() - prompts)


@dataclass(frozen=True)
class PackedInputs:
    """A PackedBatch as the packed forwards take it (prmfast.models.packed.pack_shared):
    input_ids [M], cu_seqlens [G+1], parents [G] int64, response [N] (the packed position of
    every response token, in the batch's token order) and act [N] (the position whose hidden
    state predicts it)."""
    input_ids: torch.Tensor
    cu_seqlens: torch.Tensor
    parents: torch.Tensor
    response: torch.Tensor
    act: torch.Tensor


@dataclass(eq=False)
class PackedBatch:
    """S sequences (prompt + response token lists) ready for the model forwards.

    cu_seqlens [S+1] int64 delimits the response tokens of the packed layout (N in all; see
    the module docstring). `packed()` is what the forwards take, built once: a prompt that
    several sequences share is packed (and computed) once, its responses attending to it,
    which equals packing each sequence whole (pack_shared). The right-padded views ([S, T]
    input_ids, attention_mask, and the [N] flat indices act_index, tok_index into [S*T],
    targets [N]) are built on first use. Tensors live on `device`, built on the CPU and moved
    there once."""
    sequences: list[list[int]]
    prompt_lens: list[int]
    pad_id: int
    device: torch.device
    cu_seqlens: torch.Tensor
    _inputs: PackedInputs = field(repr=False)

    @classmethod
    def from_sequences(cls, sequences: list[list[int]], prompt_lens: list[int], pad_id: int,
                       device: torch.device | str = "cpu") -> "PackedBatch":
        for i, p in enumerate(prompt_lens):
            if p < 1:
                raise ValueError(f"prompt_lens[{i}]: a prompt needs at least one token")
        cpu = torch.device("cpu")
        ids, cu, parents, response = pack_shared([s[:p] for s, p in zip(sequences, prompt_lens)],
                                                 [s[p:] for s, p in zip(sequences, prompt_lens)])
        cu_response = torch.zeros(len(sequences) + 1, dtype=torch.int64, device=cpu)
        torch.cumsum(torch.tensor([len(s) - p for s, p in zip(sequences, prompt_lens)],
                                  dtype=torch.int64, device=cpu), 0, out=cu_response[1:])
        act = packed_predecessors(cu, parents)[response]
        device = torch.device(device)
        inputs = PackedInputs(*(t.to(device) for t in (ids, cu, parents, response, act)))
        return cls(list(sequences), list(prompt_lens), pad_id, device, cu_response.to(device),
                   inputs)

    def packed(self) -> PackedInputs:
        """The batch as the packed forwards take it, on the batch's device."""
        return self._inputs

    @property
    def num_tokens(self) -> int:
        return len(self._inputs.response)

    def prompt_groups(self) -> list[list[int]]:
        """The sequence indices of each distinct prompt, prompts in order of first appearance
        (the groups pack_shared packs a prompt once for)."""
        return prompt_groups([s[:p] for s, p in zip(self.sequences, self.prompt_lens)])

    def select(self, seq_ids: list[int], pad_id: int) -> tuple["PackedBatch", torch.Tensor]:
        """A minibatch of the given sequences, and the [N_mb] index of its tokens in this
        batch's packed tensors (both on this batch's device)."""
        sub = PackedBatch.from_sequences([self.sequences[i] for i in seq_ids],
                                         [self.prompt_lens[i] for i in seq_ids], pad_id,
                                         self.device)
        cu = self.cu_seqlens.cpu()
        chosen = torch.tensor(seq_ids, dtype=torch.int64, device=cu.device)
        index = _spans(cu[:-1][chosen], cu.diff()[chosen])
        return sub, index.to(self.device)

    @functools.cached_property
    def _padded(self) -> tuple[torch.Tensor, ...]:
        """(input_ids [S, T], attention_mask [S, T], act_index [N], targets [N])."""
        ids, cu, response = _whole(self.sequences, self.prompt_lens)
        cpu, lengths = torch.device("cpu"), cu.diff()
        n_seq, width = len(lengths), max(int(lengths.max()) if len(lengths) else 0, 1)
        row = torch.repeat_interleave(torch.arange(n_seq, device=cpu), lengths)
        flat = (row * width + torch.arange(len(ids), device=cpu)
                - torch.repeat_interleave(cu[:-1], lengths))
        input_ids = torch.full((n_seq * width,), self.pad_id, dtype=torch.long, device=cpu)
        attention_mask = torch.zeros(n_seq * width, dtype=torch.long, device=cpu)
        input_ids[flat], attention_mask[flat] = ids, 1
        tensors = (input_ids.view(n_seq, width), attention_mask.view(n_seq, width),
                   flat[response] - 1, ids[response])
        return tuple(t.to(self.device) for t in tensors)

    @property
    def input_ids(self) -> torch.Tensor:
        return self._padded[0]

    @property
    def attention_mask(self) -> torch.Tensor:
        return self._padded[1]

    @property
    def act_index(self) -> torch.Tensor:
        return self._padded[2]

    @property
    def tok_index(self) -> torch.Tensor:
        return self._padded[2] + 1

    @property
    def targets(self) -> torch.Tensor:
        return self._padded[3]


def segment_sum(x: torch.Tensor, cu_seqlens: torch.Tensor) -> torch.Tensor:
    """Per-sequence sums of a packed tensor. x [N] -> [S]."""
    lengths = cu_seqlens[1:] - cu_seqlens[:-1]
    seq = torch.repeat_interleave(torch.arange(lengths.numel(), device=x.device), lengths)
    return torch.zeros(lengths.numel(), dtype=x.dtype, device=x.device).index_add_(0, seq, x)


def _past_the_engine(output: torch.Tensor) -> torch.Tensor:
    """A view of an engine's forward output, so that the loss's first autograd pass
    (prmfast.distributed.backward_per_model) stops at the view: DeepSpeed hooks the outputs
    themselves, and a gradient reaching them starts its backward bookkeeping before the
    engine's own backward (ZeRO-2 then reduced an empty gradient bucket)."""
    return output.view_as(output)


def policy_logprobs(policy, batch: PackedBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs and entropies of the response tokens. -> ([N], [N]).

    policy: a PackedPolicy (its temperature applies), or one under a distributed engine
    (prmfast.distributed.Wrapped): one packed forward, the LM head at the response tokens only."""
    x = batch.packed()
    logprobs, entropy = policy(x.input_ids, x.cu_seqlens, at=x.response, parents=x.parents)
    return _past_the_engine(logprobs), _past_the_engine(entropy)


def critic_values(critic, batch: PackedBatch) -> torch.Tensor:
    """V(s_t) for every response token t, read at the position before t. -> [N].

    critic: a PackedCritic, or one under a distributed engine (prmfast.distributed.Wrapped)."""
    x = batch.packed()
    return _past_the_engine(critic(x.input_ids, x.cu_seqlens, at=x.act, parents=x.parents))


@dataclass
class Experience:
    """One iteration's packed experience. Token tensors [N]: old_logprobs, ref_logprobs,
    values, line_end, comment_end, line_scores, kl, rewards, advantages (whitened if asked),
    returns. Sequence tensors [S]: passed, frac_passed, outcome."""
    batch: PackedBatch
    old_logprobs: torch.Tensor
    ref_logprobs: torch.Tensor
    values: torch.Tensor
    line_end: torch.Tensor
    comment_end: torch.Tensor
    line_scores: torch.Tensor
    kl: torch.Tensor
    rewards: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    passed: torch.Tensor
    frac_passed: torch.Tensor
    outcome: torch.Tensor
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class ResponseFacts:
    """Per-response facts gathered outside the model forwards (rollout, lines, sandbox, oracle).

    line_end: per packed token (response tokens, then EOS if present) whether it closes a line;
    line_index: per packed token its 0-based line (-1 after the last line); comment_end: per
    packed token whether it closes a comment or blank line; passed; frac_passed in [0, 1];
    first_error_line: the oracle's first wrong line as a 0-based segmented line (None: none
    found / not computed)."""
    line_end: list[bool]
    line_index: list[int]
    comment_end: list[bool]
    passed: bool
    frac_passed: float
    first_error_line: int | None = None


def facts_from_lines(lines, n_tokens: int, *, passed: bool, frac_passed: float,
                     first_error_line: int | None = None) -> ResponseFacts:
    """Expand a prmfast.lines.Lines of the response into per-token facts over `n_tokens` packed
    tokens (the response tokens and a trailing EOS, which closes no line)."""
    line_end = [False] * n_tokens
    line_index = [-1] * n_tokens
    comment_end = [False] * n_tokens
    for m, (start, end) in enumerate(lines.spans):
        for t in range(start, end):
            line_index[t] = m
        if end > start:
            line_end[end - 1] = True
            comment_end[end - 1] = bool(lines.is_comment[m])
    return ResponseFacts(line_end, line_index, comment_end, passed, frac_passed, first_error_line)


@dataclass
class ExperienceConfig:
    """The rl.* options make_experience reads (a subset of RLConfig)."""
    reward: str
    kl_coef: float
    gamma: float
    lam: float
    prm_coef_fail: float
    prm_coef_pass: float
    normalize_by_lines: bool
    neutral_comments: bool
    whiten_advantages: bool
    outcome_baseline: str             # none | prompt_mean (prmfast.rl.algos.prompt_mean_baseline)
    samples_per_prompt: int           # the batch's responses: prompts of this many samples

    @classmethod
    def from_rl(cls, rl) -> "ExperienceConfig":
        return cls(rl.reward, rl.kl_coef, rl.gamma, rl.lam, rl.prm_coef_fail,
                   rl.prm_coef_pass, rl.normalize_by_lines, rl.neutral_comments,
                   rl.whiten_advantages, rl.outcome_baseline, rl.samples_per_prompt)


@torch.no_grad()
def make_experience(batch: PackedBatch, facts: list[ResponseFacts], *, policy, reference,
                    critic, prm, cfg: ExperienceConfig, timer, run_pair=None) -> Experience:
    """Forwards (policy, reference, critic, PRM if the reward needs it), then the reward
    variant's line scores and outcome, then `kernels.dense_rewards_gae` in one pass (the
    kernels run on the batch's device: Triton on a GPU, numba on the CPU). Every tensor is
    created on the batch's device, which must be the models'. `timer(name)` is a context manager
    that records the time of each part. run_pair(first, second) -> (first(), second()) runs the
    policy and reference forwards, then the critic and PRM forwards (e.g. side by side:
    prmfast.rl.pairs.PairRunner.run; their timed parts then overlap); default: in order."""
    variant = REWARDS[cfg.reward]
    device = batch.device
    line_end = torch.tensor([b for f in facts for b in f.line_end], dtype=torch.bool,
                            device=device)
    comment_end = torch.tensor([b for f in facts for b in f.comment_end], dtype=torch.bool,
                               device=device)
    if line_end.numel() != batch.num_tokens:
        raise ValueError(f"facts: {line_end.numel()} per-token entries for {batch.num_tokens} tokens")
    if variant.needs_prm and prm is None:
        raise ValueError("rl.reward='dense' needs a PRM (run the prm stage first)")
    run_pair = run_pair or (lambda first, second: (first(), second()))

    def timed(name, fn):
        def job():
            with timer(name):
                return fn()
        return job
    (old_logprobs, _), (ref_logprobs, _) = run_pair(
        timed("policy_fwd", lambda: policy_logprobs(policy, batch)),
        timed("ref_fwd", lambda: policy_logprobs(reference, batch)))
    critic_job = timed("critic_fwd", lambda: critic_values(critic, batch))
    if variant.needs_prm:
        values, prm_scores = run_pair(
            critic_job, timed("prm_fwd", lambda: prm.packed_line_scores(batch, line_end)))
    else:
        values, prm_scores = critic_job(), None
    passed = torch.tensor([f.passed for f in facts], dtype=torch.bool, device=device)
    frac_passed = torch.tensor([f.frac_passed for f in facts], dtype=torch.float32,
                               device=device)
    with timer("kernels"):
        inputs = RewardInputs(
            cu_seqlens=batch.cu_seqlens, line_end=line_end,
            line_index=torch.tensor([i for f in facts for i in f.line_index], dtype=torch.long,
                                    device=device),
            comment_end=comment_end, passed=passed, frac_passed=frac_passed,
            first_error_line=[f.first_error_line for f in facts] if variant.needs_oracle else None,
            prm_scores=prm_scores)
        scores, outcome = line_rewards(cfg.reward, inputs, neutral_comments=cfg.neutral_comments)
        if cfg.outcome_baseline == "prompt_mean":
            outcome = prompt_mean_baseline(outcome, cfg.samples_per_prompt)
        _check_finite(frac_passed=frac_passed, prm_scores=prm_scores, outcome=outcome)
        kl = kl_estimate(old_logprobs, ref_logprobs)
        rewards, advantages, returns = kernels.dense_rewards_gae(
            values, scores, line_end, kl, outcome, passed, batch.cu_seqlens,
            gamma=cfg.gamma, lam=cfg.lam, kl_coef=cfg.kl_coef, prm_coef_fail=cfg.prm_coef_fail,
            prm_coef_pass=cfg.prm_coef_pass, normalize_by_lines=cfg.normalize_by_lines)
        if cfg.whiten_advantages:
            advantages = whiten(advantages)
    return Experience(batch, old_logprobs, ref_logprobs, values, line_end, comment_end, scores,
                      kl, rewards, advantages, returns, passed, frac_passed, outcome)


def _check_finite(**fields: torch.Tensor | None) -> None:
    """Raise ValueError naming every field with a NaN or inf (one NaN reward would make every
    whitened advantage of the batch NaN). One host sync for all the fields."""
    names = [k for k, v in fields.items() if v is not None]
    finite = torch.stack([torch.isfinite(fields[k]).all() for k in names]).tolist()
    bad = [k for k, ok in zip(names, finite) if not ok]
    if bad:
        raise ValueError(f"{', '.join(bad)}: non-finite values (NaN or inf) in the rewards")


def experience_metrics(exp: Experience, kl_coef: float) -> dict[str, float]:
    """Per-iteration means: reward, pass rate, KL, response length and the hack metrics (lines
    per response, comment-line share, PRM/line score at line ends, line reward per response)."""
    cu = exp.batch.cu_seqlens
    n_seq = max(1, cu.numel() - 1)
    n_lines = int(exp.line_end.sum())
    outcome_at_end = torch.zeros_like(exp.rewards)
    ends = cu[1:][cu[1:] > cu[:-1]] - 1
    outcome_at_end[ends] = exp.outcome[cu[1:] > cu[:-1]]
    line_part = segment_sum(exp.rewards + kl_coef * exp.kl - outcome_at_end, cu)
    return {
        "reward": float(segment_sum(exp.rewards, cu).sum()) / n_seq,
        "outcome": float(exp.outcome.float().mean()) if exp.outcome.numel() else 0.0,
        "pass_rate": float(exp.passed.float().mean()) if exp.passed.numel() else 0.0,
        "frac_passed": float(exp.frac_passed.mean()) if exp.frac_passed.numel() else 0.0,
        "kl": float(segment_sum(exp.kl, cu).sum()) / n_seq,
        "response_tokens": exp.batch.num_tokens / n_seq,
        "lines_per_response": n_lines / n_seq,
        "comment_share": float(exp.comment_end.sum()) / max(1, n_lines),
        "line_score_mean": float(exp.line_scores[exp.line_end].mean()) if n_lines else 0.0,
        "line_reward": float(line_part.sum()) / n_seq,
        "value_mean": float(exp.values.mean()) if exp.values.numel() else 0.0,
    }


def line_view(exp: Experience, facts: list[ResponseFacts]) -> list[dict[str, list[float]]]:
    """Per response (facts in batch order), per line: "advantage", the mean of exp.advantages
    over the line's tokens (the PPO advantage the line's tokens were trained with), and
    "line_reward", exp.line_scores at the token that closes the line (the reward variant's line
    score: the PRM's for dense rewards). Lines without tokens get 0.0 for both."""
    cu = exp.batch.cu_seqlens.tolist()
    adv = exp.advantages.detach().float().cpu().tolist()
    scores = exp.line_scores.detach().float().cpu().tolist()
    out = []
    for s, f in enumerate(facts):
        n_lines = max(f.line_index, default=-1) + 1
        sums, counts, ends = [0.0] * n_lines, [0] * n_lines, [0.0] * n_lines
        for t, (m, end) in enumerate(zip(f.line_index, f.line_end)):
            if m >= 0:
                sums[m] += adv[cu[s] + t]
                counts[m] += 1
                if end:
                    ends[m] = scores[cu[s] + t]
        out.append({"advantage": [a / c if c else 0.0 for a, c in zip(sums, counts)],
                    "line_reward": ends})
    return out
