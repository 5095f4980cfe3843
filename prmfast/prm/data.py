"""PRM examples and batches: line targets, loss weights, padded batches.

An example is one response after its prompt with a target per line; the score of line m is read
at the line's last token (the token that holds its newline, prmfast.lines). Batches are padded
[B, T] (right padding), built on the CPU and moved to the PRM's device once, and length-grouped
to limit padding.

    PRMExample(input_ids, line_ends, targets, weights=None, task=None, passed=None)
    PRMBatch(input_ids [B, T] long, attention_mask [B, T] long, line_end [B, T] bool,
             targets [B, T] float (0 off line ends), weights [B, T] float | None)
    example(prompt_ids, response_ids, spans, targets) -> PRMExample
    collate(examples, pad_id) / make_batch(prompts, responses, tokenizer) -> PRMBatch
    line_values(scores [B, T], batch) -> per response, per line
"""
from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from prmfast.config import PRMConfig
from prmfast.lines import segment


@dataclass
class PRMExample:
    input_ids: list[int]        # prompt + response
    line_ends: list[int]        # per line: position of its last token in input_ids
    targets: list[float]        # per line
    weights: list[float] | None = None   # per line loss weight (None: all 1)
    task: str | None = None     # task id and outcome: validation's within-task AUC needs them
    passed: bool | None = None


@dataclass
class PRMBatch:
    input_ids: torch.Tensor     # [B, T] long
    attention_mask: torch.Tensor  # [B, T] long
    line_end: torch.Tensor      # [B, T] bool
    targets: torch.Tensor       # [B, T] float, 0 off line ends
    weights: torch.Tensor | None = None  # [B, T] float loss weights, 0 off line ends (None: 1)

    def to(self, device: torch.device | str) -> "PRMBatch":
        """The batch on `device` (itself when it is there already)."""
        return PRMBatch(*(None if t is None else t.to(device)
                          for t in (getattr(self, f.name) for f in dataclasses.fields(self))))


def comment_targets(labels: Sequence[int], is_comment: Sequence[bool],
                    neutral: bool = True) -> list[float]:
    """Training targets per line: the labels, with comment lines 0 (neutral) or, for the
    comment-hack experiment, the label of the nearest code line before (else after) them."""
    if len(labels) != len(is_comment):
        raise ValueError(f"labels has {len(labels)} values but is_comment has {len(is_comment)}")
    if neutral:
        return [0.0 if c else float(x) for x, c in zip(labels, is_comment)]
    out, last = [], None
    for x, c in zip(labels, is_comment):
        last = last if c else float(x)
        out.append(last)
    nxt = next((float(x) for x, c in zip(labels, is_comment) if not c), 0.0)
    return [nxt if v is None else v for v in out]


def example(prompt_ids: list[int], response_ids: list[int], spans: Sequence[Sequence[int]],
            targets: Sequence[float], task: str | None = None,
            passed: bool | None = None) -> PRMExample:
    """One PRM example: a target per line span (ValueError on a count mismatch); empty targets
    mark an unlabelled example (prediction only)."""
    if targets and len(targets) != len(spans):
        raise ValueError(f"targets has {len(targets)} values for {len(spans)} line spans")
    base = len(prompt_ids)
    return PRMExample(list(prompt_ids) + list(response_ids),
                      [base + end - 1 for _, end in spans], list(map(float, targets)),
                      task=task, passed=passed)


def example_from_record(rec: dict, neutral_comments: bool = True) -> PRMExample:
    """A labels.jsonl record -> PRMExample on its binary-search labels."""
    return example(rec["prompt_ids"], rec["response_ids"], rec["line_spans"],
                   comment_targets(rec["labels"], rec["is_comment"], neutral_comments),
                   rec["task_id"], rec["passed"])


def collate(examples: Sequence[PRMExample], pad_id: int,
            device: torch.device | str = "cpu") -> PRMBatch:
    """Right-padded batch [B, T_max] on `device` (built on the CPU, moved once)."""
    if not examples:
        raise ValueError("the batch is empty: collate needs at least one example")
    cpu = torch.device("cpu")
    width = max(1, max(len(e.input_ids) for e in examples))
    b = len(examples)
    ids = torch.full((b, width), pad_id, dtype=torch.long, device=cpu)
    mask = torch.zeros((b, width), dtype=torch.long, device=cpu)
    line_end = torch.zeros((b, width), dtype=torch.bool, device=cpu)
    targets = torch.zeros((b, width), device=cpu)
    weighted = any(e.weights is not None for e in examples)
    weights = torch.zeros((b, width), device=cpu) if weighted else None
    for i, e in enumerate(examples):
        if len(e.targets) != len(e.line_ends):
            raise ValueError(f"examples[{i}]: targets has {len(e.targets)} values for "
                             f"{len(e.line_ends)} line ends")
        if any(not 0 <= end < len(e.input_ids) for end in e.line_ends):
            raise ValueError(f"examples[{i}]: a line end lies outside its {len(e.input_ids)} "
                             f"tokens (line_ends {e.line_ends})")
        ids[i, :len(e.input_ids)] = torch.tensor(e.input_ids, dtype=torch.long, device=cpu)
        mask[i, :len(e.input_ids)] = 1
        if e.line_ends:
            line_end[i, e.line_ends] = True
            targets[i, e.line_ends] = torch.tensor(e.targets, device=cpu)
            if weighted:
                weights[i, e.line_ends] = (torch.tensor(e.weights, device=cpu)
                                           if e.weights is not None else 1.0)
    return PRMBatch(ids, mask, line_end, targets, weights).to(device)


def make_batch(prompts: list[list[int]], responses: list[list[int]], tokenizer,
               targets: list[list[float]] | None = None,
               device: torch.device | str = "cpu") -> PRMBatch:
    """Segment the responses (prmfast.lines) and build a padded batch on `device`; targets
    default to 0."""
    if len(prompts) != len(responses):
        raise ValueError(f"prompts has {len(prompts)} rows but responses has {len(responses)}")
    if targets is not None and len(targets) != len(responses):
        raise ValueError(f"targets has {len(targets)} rows but responses has {len(responses)}")
    exs = []
    for i, (p, r) in enumerate(zip(prompts, responses)):
        spans = segment(r, tokenizer).spans
        exs.append(example(p, r, spans, targets[i] if targets is not None else [0.0] * len(spans)))
    return collate(exs, tokenizer.pad_token_id, device)



def line_values(scores: torch.Tensor, batch: PRMBatch) -> list[list[float]]:
    """Per response, the scores of its lines in order (one copy to the CPU)."""
    scores, line_end = scores.detach().float().cpu(), batch.line_end.cpu()
    return [row[mask].tolist() for row, mask in zip(scores, line_end)]



def loss_weights(targets: Sequence[Sequence[float]], class_balance: bool = True,
                 response_norm: bool = False) -> list[list[float]]:
    """Per-line MSE weights for a training set (targets per response, per line).

    class_balance: +1 and -1 lines get weights (n+ + n-) / (2 n+) and (n+ + n-) / (2 n-), so the
    two classes carry equal total weight (mean weight over +-1 lines stays 1); neutral (0) lines
    keep weight 1. response_norm: each response's weights are rescaled to sum to the mean number
    of lines per response, so every response counts the same whatever its length. Both off: all 1.
    """
    pos = sum(t > 0 for ts in targets for t in ts)
    neg = sum(t < 0 for ts in targets for t in ts)
    w_pos = w_neg = 1.0
    if class_balance and pos and neg:
        w_pos, w_neg = (pos + neg) / (2 * pos), (pos + neg) / (2 * neg)
    out = [[w_pos if t > 0 else w_neg if t < 0 else 1.0 for t in ts] for ts in targets]
    if response_norm:
        lengths = [len(ts) for ts in targets if ts]
        mean_len = sum(lengths) / max(1, len(lengths))
        out = [[x * mean_len / sum(ws) for x in ws] if sum(ws) > 0 else ws for ws in out]
    return out


def with_weights(examples: Sequence[PRMExample], cfg: PRMConfig) -> list[PRMExample]:
    """Copies of the examples carrying the loss weights that cfg (class_balance, response_norm)
    asks for."""
    ws = loss_weights([e.targets for e in examples], cfg.class_balance, cfg.response_norm)
    return [dataclasses.replace(e, weights=w) for e, w in zip(examples, ws)]


def length_batches(examples: Sequence[PRMExample], batch_size: int,
                   rng: random.Random | None = None) -> list[list[PRMExample]]:
    """Batches of similar length (less padding); shuffled batch order when rng is given."""
    batches = [[examples[i] for i in group] for group in length_groups(examples, batch_size)]
    if rng is not None:
        rng.shuffle(batches)
    return batches


def length_groups(examples: Sequence[PRMExample], batch_size: int) -> list[list[int]]:
    """Positions of the examples in batches of similar length (sorted by length)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].input_ids))
    return [order[s:s + batch_size] for s in range(0, len(order), batch_size)]

