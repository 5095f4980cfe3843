"""Training forwards on the packed layout: S sequences as one run of N tokens with cu_seqlens.

Attention never crosses a sequence boundary and positions restart at 0 in every sequence,
except that a sequence may continue a parent (`parents`, built by `pack_shared`: a prompt that
several responses share is packed once and each response attends to all of it, its positions
continuing after it), which equals packing every prompt + response whole. The linear layers
always run on the N packed tokens (no padding); attention, per implementation
(`packed_attention_kind`, picked from the model and its device, nothing to configure):
- "flash" (attn_implementation="flash_attention_2" / "_3", CUDA): only per-sequence
  position_ids are passed; transformers turns them into flash-attn's varlen cu_seqlens.
  Sequences with parents run whole (each after a copy of its parent).
- "bucketed" (sdpa or eager on the CPU, or a GPU without flash-attn; every model whose
  attention goes through transformers' AttentionInterface): inside each layer the packed
  queries, keys and values are gathered into a few right-padded [S_b, heads, T_b, D] blocks of
  sequences of similar length (`PackedLayout`), attended with causal SDPA (sequences with a
  parent: keys are the parent's tokens then their own, under a per-row causal mask), and
  scattered back to the packed order. A right-padded sequence under a causal mask never sees
  its padding, so the result equals a padded forward of each sequence; the cost is linear in
  the number of sequences, where a dense mask costs N^2.
- "mask" (models whose attention does not dispatch through that interface): an explicit
  block-diagonal causal mask [1, 1, N, N] built from cu_seqlens (and parents); quadratic in N.
The numbers equal a padded forward of each sequence (tests/scale/test_packed_on_cpu.py).

Log-probs go through kernels.token_logprobs on the hidden states, so the [N, V] logits never
exist; values and PRM line scores come from the ValueModel's head on the packed hidden states.
Past 450 lines on purpose: the three attention paths and the forwards built on them share one
packing contract (cu_seqlens, parents, at) that is clearest read in one place.
"""
from __future__ import annotations

import contextlib
import importlib.util
from dataclasses import dataclass

import torch
from torch import nn
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from prmfast import kernels

FLASH_IMPLEMENTATIONS = ("flash_attention_2", "flash_attention_3")
BUCKETED_ATTENTION = "prmfast_bucketed_sdpa"     # our AttentionInterface entry (registered below)
ATTENTION_CHOICES = ("auto", "bucketed", "mask")   # packed_hidden(attention=...)


def attn_implementation_for(device: torch.device | str) -> str:
    """The attn_implementation to load a model with: flash_attention_2 on CUDA when flash-attn
    is installed, else sdpa (either way packed_hidden keeps sequences apart)."""
    cuda = torch.device(device).type == "cuda"
    return "flash_attention_2" if cuda and importlib.util.find_spec("flash_attn") else "sdpa"


def packed_position_ids(cu_seqlens: torch.Tensor,
                        parents: torch.Tensor | None = None) -> torch.Tensor:
    """cu_seqlens [S+1] -> position ids [N], 0..len_s-1 within each sequence; a sequence with a
    parent (parents [S], -1: none) continues after its parent's tokens."""
    lengths = cu_seqlens.diff()
    starts = torch.repeat_interleave(cu_seqlens[:-1], lengths)
    positions = torch.arange(int(cu_seqlens[-1]), device=cu_seqlens.device) - starts
    if parents is not None:
        offset = torch.where(parents >= 0, lengths[parents.clamp(min=0)], 0)
        positions = positions + torch.repeat_interleave(offset, lengths)
    return positions


def packed_predecessors(cu_seqlens: torch.Tensor,
                        parents: torch.Tensor | None = None) -> torch.Tensor:
    """cu_seqlens [S+1], parents [S] | None -> [N] int64: the packed position whose hidden state
    predicts each token (the previous token of its sequence; for the first token of a sequence
    with a non-empty parent, the parent's last token), -1 where there is none."""
    lengths = cu_seqlens.diff()
    predecessors = torch.arange(int(cu_seqlens[-1]), device=cu_seqlens.device) - 1
    first = lengths > 0
    before = torch.full_like(lengths[first], -1)
    if parents is not None:
        parent = parents[first].clamp(min=0)
        has = (parents[first] >= 0) & (lengths[parent] > 0)
        before = torch.where(has, cu_seqlens[parent + 1] - 1, before)
    predecessors[cu_seqlens[:-1][first]] = before
    return predecessors


def block_causal_mask(cu_seqlens: torch.Tensor, dtype: torch.dtype,
                      parents: torch.Tensor | None = None) -> torch.Tensor:
    """cu_seqlens [S+1] -> additive mask [1, 1, N, N]: 0 where query i may see key j (same
    sequence and j <= i, or j in i's parent sequence), the dtype's minimum elsewhere."""
    n = int(cu_seqlens[-1])
    seq = torch.repeat_interleave(torch.arange(len(cu_seqlens) - 1, device=cu_seqlens.device),
                                  cu_seqlens.diff())
    idx = torch.arange(n, device=cu_seqlens.device)
    allowed = (seq[:, None] == seq[None, :]) & (idx[:, None] >= idx[None, :])
    if parents is not None:
        allowed |= parents[seq][:, None] == seq[None, :]
    mask = torch.full((n, n), torch.finfo(dtype).min, dtype=dtype, device=cu_seqlens.device)
    return mask.masked_fill_(allowed, 0.0)[None, None]


def packed_attention_kind(backbone: nn.Module) -> str:
    """How packed_hidden keeps the sequences of `backbone` apart: "flash" (flash-attn varlen),
    "bucketed" (per-length-bucket causal SDPA) or "mask" (dense [N, N] block mask); see the
    module docstring."""
    if backbone.config._attn_implementation in FLASH_IMPLEMENTATIONS:
        return "flash"
    return "bucketed" if getattr(backbone, "_supports_attention_backend", False) else "mask"


@dataclass(frozen=True)
class _Bucket:
    """One SDPA call of bucketed attention: S_b sequences in right-padded blocks.

    query [S_b * Tq], key [S_b * Tk] int64: the packed position each query / key-value slot
    reads (padding reads a real token of its row, which no real query sees); valid [n_b]: the
    query slots holding real tokens; mask [S_b, 1, Tq, Tk] bool for sequences with a parent
    (keys: the parent's tokens, then their own), None for causal self-attention (key is
    query)."""
    query: torch.Tensor
    key: torch.Tensor
    valid: torch.Tensor
    n_seq: int
    q_width: int
    k_width: int
    mask: torch.Tensor | None


@dataclass(frozen=True)
class PackedLayout:
    """Where the packed tokens sit in the padded blocks bucketed attention runs on.

    buckets: the SDPA calls (`_Bucket`); sequences without a parent attend causally to
    themselves, sequences with one to all of their parent's tokens and causally to their own
    (a prompt shared by several responses is attended once per response but computed once). A
    bucket holds the sequences longer than half of its longest (own tokens: the queries), so
    padding at most quadruples a sequence's attention to its own tokens. order: [N] int64,
    where each packed token's row is in the concatenation of the buckets' real rows; None when
    it is the packed order. max_length: the longest sequence, its parent included."""
    buckets: tuple[_Bucket, ...]
    order: torch.Tensor | None
    max_length: int

    @classmethod
    def from_cu_seqlens(cls, cu_seqlens: torch.Tensor,
                        parents: torch.Tensor | None = None) -> "PackedLayout":
        """cu_seqlens [S+1], parents [S] | None (validated by the caller) -> the layout, on
        cu_seqlens' device."""
        device = cu_seqlens.device
        cu = cu_seqlens.tolist()
        lengths = [b - a for a, b in zip(cu, cu[1:])]
        parent = [-1] * len(lengths) if parents is None else parents.tolist()
        before = [lengths[q] if q >= 0 else 0 for q in parent]     # parent tokens a row sees
        buckets = []
        for with_parent in (False, True):
            members = [s for s in range(len(lengths))
                       if lengths[s] and (parent[s] >= 0) == with_parent]
            for group in _length_buckets(members, lengths):
                buckets.append(_bucket(group, cu, lengths, parent, before, with_parent, device))
        rows = torch.cat([b.query[b.valid] for b in buckets]) if buckets else \
            torch.zeros(0, dtype=torch.int64, device=device)
        order = None
        if not torch.equal(rows, torch.arange(len(rows), device=device)):
            order = torch.empty_like(rows).index_put_(
                (rows,), torch.arange(len(rows), dtype=torch.int64, device=device))
        return cls(tuple(buckets), order,
                   max((b + n for b, n in zip(before, lengths)), default=0))


def _length_buckets(members: list[int], size: list[int]) -> list[list[int]]:
    """Members grouped so that every size in a group is more than half the group's largest;
    each group in packed order."""
    groups: list[list[int]] = []
    for s in sorted(members, key=lambda s: -size[s]):
        if groups and 2 * size[s] > size[groups[-1][0]]:
            groups[-1].append(s)
        else:
            groups.append([s])
    return [sorted(g) for g in groups]


def _bucket(group: list[int], cu: list[int], lengths: list[int], parent: list[int],
            before: list[int], with_parent: bool, device: torch.device) -> _Bucket:
    def tensor(values):
        return torch.tensor(values, dtype=torch.int64, device=device)
    starts, own = tensor([cu[s] for s in group]), tensor([lengths[s] for s in group])
    q_width = max(lengths[s] for s in group)
    q_slot = torch.arange(q_width, dtype=torch.int64, device=device)
    real = q_slot[None, :] < own[:, None]                                 # [S_b, Tq]
    query = (starts[:, None] + q_slot[None, :] * real).reshape(-1)
    valid = real.reshape(-1).nonzero().squeeze(1)
    if not with_parent:
        return _Bucket(query, query, valid, len(group), q_width, q_width, None)
    seen = tensor([before[s] for s in group])
    parent_starts = tensor([cu[parent[s]] for s in group])
    k_width = max(before[s] + lengths[s] for s in group)
    k_slot = torch.arange(k_width, dtype=torch.int64, device=device)[None, :]
    key = torch.where(k_slot < seen[:, None], parent_starts[:, None] + k_slot,
                      starts[:, None] + (k_slot - seen[:, None]))
    key = torch.where(k_slot < (seen + own)[:, None], key, starts[:, None]).reshape(-1)
    mask = k_slot[:, None, :] <= seen[:, None, None] + q_slot[None, :, None]   # [S_b, Tq, Tk]
    return _Bucket(query, key, valid, len(group), q_width, k_width, mask[:, None])


def _bucketed_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor,
                        value: torch.Tensor, attention_mask: torch.Tensor | None, *,
                        packed_layout: PackedLayout, sliding_window: int | None = None,
                        **kwargs) -> tuple[torch.Tensor, None]:
    """transformers attention function: query [1, heads, N, D], key / value [1, kv_heads, N, D]
    -> ([1, N, heads, D], None), each sequence of `packed_layout` attending to itself causally
    (and to its parent), through transformers' sdpa_attention_forward per bucket (GQA,
    scaling, dropout as it does them)."""
    if attention_mask is not None:
        raise ValueError("bucketed packed attention takes no attention mask")
    if sliding_window is not None and packed_layout.max_length > sliding_window:
        raise ValueError(f"a packed sequence of {packed_layout.max_length} tokens is longer than "
                         f"the model's sliding window ({sliding_window}): not supported here")
    q, k, v = (t[0].transpose(0, 1) for t in (query, key, value))     # [N, heads, D]
    outs = []
    for b in packed_layout.buckets:
        def block(t, index, width):   # [N, h, D] -> [S_b, h, width, D]
            return t.index_select(0, index).view(b.n_seq, width, *t.shape[1:]).transpose(1, 2)
        out, _ = sdpa_attention_forward(
            module, block(q, b.query, b.q_width), block(k, b.key, b.k_width),
            block(v, b.key, b.k_width), b.mask, is_causal=b.mask is None,
            **kwargs)                                                      # [S_b, Tq, h, D]
        outs.append(out.reshape(b.n_seq * b.q_width, *out.shape[2:]).index_select(0, b.valid))
    out = torch.cat(outs) if len(outs) > 1 else outs[0]
    if packed_layout.order is not None:
        out = out.index_select(0, packed_layout.order)
    return out[None], None


AttentionInterface.register(BUCKETED_ATTENTION, _bucketed_attention)


@contextlib.contextmanager
def _attention_implementation(config, name: str):
    """Run the block with config._attn_implementation = name (restored after)."""
    saved = config._attn_implementation
    config._attn_implementation = name
    try:
        yield
    finally:
        config._attn_implementation = saved


def packed_hidden(backbone: nn.Module, input_ids: torch.Tensor, cu_seqlens: torch.Tensor, *,
                  parents: torch.Tensor | None = None, attention: str = "auto") -> torch.Tensor:
    """backbone: an HF base model (e.g. LlamaModel, `model.base_model`, ValueModel.backbone).

    input_ids [N] int, cu_seqlens [S+1] int (as in kernels) -> last hidden states [N, H].
    parents [S] int64 | None: sequence s continues sequence parents[s] (-1: none), e.g. one of
    several responses to a prompt packed once (`pack_shared`): it attends to all of its
    parent's tokens and its positions continue after them; a parent has no parent itself and
    comes first. (flash-attn varlen cannot do this: there each child runs whole, after a copy
    of its parent, as without sharing.) attention: "auto" (packed_attention_kind), or
    "bucketed" / "mask" to force one CPU path (benchmarks and tests compare them).
    """
    _check(input_ids, cu_seqlens, parents)
    if attention not in ATTENTION_CHOICES:
        raise ValueError(f"attention: {attention!r} is not one of {list(ATTENTION_CHOICES)}")
    kind = packed_attention_kind(backbone)
    if attention == "bucketed" and kind == "mask":
        raise ValueError(f"attention='bucketed': {type(backbone).__name__} does not dispatch "
                         "its attention through transformers' AttentionInterface")
    kind = kind if attention == "auto" else attention
    if input_ids.shape[0] == 0:     # no token (every sequence empty): the model cannot run on it
        return backbone.get_input_embeddings()(input_ids)
    if kind == "flash" and parents is not None:   # varlen sees no parents: every child whole
        gather, whole_cu, back = _whole_sequences(cu_seqlens, parents)
        return packed_hidden(backbone, input_ids[gather], whole_cu)[back]
    position_ids = packed_position_ids(cu_seqlens, parents)[None]
    if kind == "bucketed":
        with _attention_implementation(backbone.config, BUCKETED_ATTENTION):
            out = backbone(input_ids=input_ids[None], position_ids=position_ids, use_cache=False,
                           packed_layout=PackedLayout.from_cu_seqlens(cu_seqlens, parents))
        return out.last_hidden_state[0]
    # flash: transformers derives varlen cu_seqlens from the positions; else the dense mask
    mask = None if kind == "flash" else block_causal_mask(
        cu_seqlens, backbone.get_input_embeddings().weight.dtype, parents)
    out = backbone(input_ids=input_ids[None], attention_mask=mask, position_ids=position_ids,
                   use_cache=False)
    return out.last_hidden_state[0]


def packed_logprobs(model: nn.Module, input_ids: torch.Tensor, cu_seqlens: torch.Tensor, *,
                    at: torch.Tensor | None = None, parents: torch.Tensor | None = None,
                    temperature: float = 1.0, chunk_size: int | None = None, impl: str = "auto",
                    attention: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """Causal LM -> (logprobs [N], entropy [N]) aligned with the input tokens, or ([K], [K]) at
    the K packed positions `at` ([K] int64) only (the LM head runs at those alone).

    logprobs[t] = log p(input_ids[t] | the tokens before it in its sequence, its parent's
    first); entropy[t] is the entropy of that predictive distribution. A token with no
    predecessor (packed_predecessors) gets 0 in both. Differentiable w.r.t. the model's
    parameters. parents, attention: see packed_hidden.
    """
    hidden = packed_hidden(model.base_model, input_ids, cu_seqlens, parents=parents,
                           attention=attention)
    rows = torch.arange(input_ids.shape[0], device=input_ids.device) if at is None else \
        _check_at(at, input_ids.shape[0])
    source = packed_predecessors(cu_seqlens, parents)[rows]
    keep = (source >= 0).nonzero().squeeze(1)                                 # into rows
    lp, ent = kernels.token_logprobs(hidden[source[keep]], model.get_output_embeddings().weight,
                                     input_ids[rows[keep]], temperature=temperature,
                                     chunk_size=chunk_size, impl=impl)
    logprobs = hidden.new_zeros(rows.shape[0]).index_put((keep,), lp)
    entropy = hidden.new_zeros(rows.shape[0]).index_put((keep,), ent)
    return logprobs, entropy


def packed_values(value_model: nn.Module, input_ids: torch.Tensor, cu_seqlens: torch.Tensor, *,
                  at: torch.Tensor | None = None, parents: torch.Tensor | None = None,
                  attention: str = "auto") -> torch.Tensor:
    """ValueModel -> per-token values [N] (the critic's V_t), or [K] at the positions `at`."""
    hidden = packed_hidden(value_model.backbone, input_ids, cu_seqlens, parents=parents,
                           attention=attention)
    if at is not None:
        hidden = hidden[_check_at(at, input_ids.shape[0])]
    return value_model.head(hidden).squeeze(-1)


def packed_line_scores(value_model: nn.Module, input_ids: torch.Tensor, cu_seqlens: torch.Tensor,
                       line_end: torch.Tensor, *, at: torch.Tensor | None = None,
                       parents: torch.Tensor | None = None, impl: str = "auto",
                       attention: str = "auto") -> torch.Tensor:
    """ValueModel as PRM -> scores [N]: head output at line_end tokens ([N] bool), 0 elsewhere;
    or [K] at the positions `at` ([K] int64), line_end then [K]."""
    hidden = packed_hidden(value_model.backbone, input_ids, cu_seqlens, parents=parents,
                           attention=attention)
    if at is not None:
        hidden = hidden[_check_at(at, input_ids.shape[0])]
    return kernels.line_scores(hidden, value_model.head.weight[0], value_model.head.bias,
                               line_end, impl=impl)


class PackedPolicy(nn.Module):
    """A causal LM whose forward is packed_logprobs, so DDP / FSDP / DeepSpeed wrap the whole
    computation (they sync gradients only for forwards that go through the wrapper).

    forward(input_ids [N], cu_seqlens [S+1], at [K] | None, parents [S] | None)
        -> (logprobs, entropy), [N] or [K]
    """

    def __init__(self, model: nn.Module, *, temperature: float = 1.0):
        super().__init__()
        self.model, self.temperature = model, temperature

    def forward(self, input_ids: torch.Tensor, cu_seqlens: torch.Tensor,
                at: torch.Tensor | None = None, parents: torch.Tensor | None = None):
        return packed_logprobs(self.model, input_ids, cu_seqlens, at=at, parents=parents,
                               temperature=self.temperature)

    def external_parameters(self) -> list[nn.Parameter]:
        """Used outside their own module's forward (ZeRO-3 must gather them for ours)."""
        return [self.model.get_output_embeddings().weight]


class PackedCritic(nn.Module):
    """A ValueModel whose forward is packed_values.
    forward(input_ids [N], cu_seqlens, at [K] | None, parents [S] | None) -> [N] or [K]."""

    def __init__(self, value_model: nn.Module):
        super().__init__()
        self.model = value_model

    def forward(self, input_ids: torch.Tensor, cu_seqlens: torch.Tensor,
                at: torch.Tensor | None = None,
                parents: torch.Tensor | None = None) -> torch.Tensor:
        return packed_values(self.model, input_ids, cu_seqlens, at=at, parents=parents)

    def external_parameters(self) -> list[nn.Parameter]:
        return [self.model.head.weight, self.model.head.bias]


def pack_sequences(sequences: list[list[int]],
                   device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Token lists -> (input_ids [N] int64, cu_seqlens [S+1] int64) on `device` (built on the
    CPU, moved once)."""
    cpu = torch.device("cpu")
    lengths = torch.tensor([len(s) for s in sequences], dtype=torch.int64, device=cpu)
    cu_seqlens = torch.zeros(len(sequences) + 1, dtype=torch.int64, device=cpu)
    torch.cumsum(lengths, 0, out=cu_seqlens[1:])
    ids = torch.tensor([t for s in sequences for t in s], dtype=torch.int64, device=cpu)
    return ids.to(device), cu_seqlens.to(device)


def prompt_groups(prompts: list[list[int]]) -> list[list[int]]:
    """The indices of each distinct prompt, prompts in order of first appearance."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, prompt in enumerate(prompts):
        groups.setdefault(tuple(prompt), []).append(i)
    return list(groups.values())


def pack_shared(prompts: list[list[int]], responses: list[list[int]],
                device: torch.device | str = "cpu"
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Prompt and response token lists (pair i is one sample) -> the packed layout with each
    prompt that several samples share packed once: (input_ids [M], cu_seqlens [G+1], parents
    [G] int64, response [N]: the packed position of every response token, sample by sample).

    A prompt of several samples is a sequence of its own followed by their responses, each a
    sequence whose parent is the prompt; a prompt with one sample stays one sequence with its
    response (no parent). Forwards with these parents equal the forwards of every prompt +
    response packed whole. Built on the CPU, moved to `device` once."""
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    ids: list[int] = []
    lengths, parents, starts = [], [], [0] * len(prompts)      # starts: of each response
    for members in prompt_groups(prompts):
        prompt = prompts[members[0]]
        shared = len(members) > 1
        if shared:
            root = len(lengths)
            ids += prompt
            lengths.append(len(prompt))
            parents.append(-1)
        for i in members:
            head = [] if shared else list(prompt)
            starts[i] = len(ids) + len(head)
            ids += head + list(responses[i])
            lengths.append(len(head) + len(responses[i]))
            parents.append(root if shared else -1)
    cpu = torch.device("cpu")
    cu = torch.zeros(len(lengths) + 1, dtype=torch.int64, device=cpu)
    torch.cumsum(torch.tensor(lengths, dtype=torch.int64, device=cpu), 0, out=cu[1:])
    response = torch.tensor([starts[i] + j for i, r in enumerate(responses) for j in range(len(r))],
                            dtype=torch.int64, device=cpu)
    return (torch.tensor(ids, dtype=torch.int64, device=cpu).to(device), cu.to(device),
            torch.tensor(parents, dtype=torch.int64, device=cpu).to(device), response.to(device))


def _whole_sequences(cu_seqlens: torch.Tensor, parents: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The layout with every child packed whole after a copy of its parent: (gather [M']: the
    packed position each of its tokens copies, cu_seqlens [S'+1], back [N]: where each packed
    token is in it; a parent's tokens are read from its first child's copy)."""
    cu, parent = cu_seqlens.tolist(), parents.tolist()
    children: dict[int, list[int]] = {}
    for s, q in enumerate(parent):
        if q >= 0:
            children.setdefault(q, []).append(s)
    gather: list[int] = []
    lengths, back = [], [0] * cu[-1]
    for s, q in enumerate(parent):
        if s in children:
            continue                                # packed with each of its children
        spans = ([(q, cu[q])] if q >= 0 else []) + [(s, cu[s])]
        for owner, start in spans:
            if owner == s or children[owner][0] == s:
                for j in range(cu[owner + 1] - start):
                    back[start + j] = len(gather) + j
            gather += range(start, cu[owner + 1])
        lengths.append(sum(cu[o + 1] - start for o, start in spans))
    device = cu_seqlens.device
    whole_cu = torch.zeros(len(lengths) + 1, dtype=torch.int64, device=device)
    torch.cumsum(torch.tensor(lengths, dtype=torch.int64, device=device), 0, out=whole_cu[1:])
    return (torch.tensor(gather, dtype=torch.int64, device=device), whole_cu,
            torch.tensor(back, dtype=torch.int64, device=device))


def _check_at(at: torch.Tensor, n_tokens: int) -> torch.Tensor:
    """`at` checked as [K] int64 packed positions in [0, n_tokens)."""
    if at.dim() != 1 or at.dtype != torch.int64:
        raise ValueError(f"at must be a 1-D int64 tensor of packed positions, got shape "
                         f"{tuple(at.shape)} and {at.dtype}")
    if at.numel() and (int(at.min()) < 0 or int(at.max()) >= n_tokens):
        raise ValueError(f"at: positions must lie in [0, {n_tokens})")
    return at


def _check(input_ids: torch.Tensor, cu_seqlens: torch.Tensor,
           parents: torch.Tensor | None = None) -> None:
    if input_ids.dim() != 1:
        raise ValueError(f"input_ids must be 1-D [N], got shape {tuple(input_ids.shape)}")
    if input_ids.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"input_ids must hold int64 or int32 token ids, got {input_ids.dtype}")
    if cu_seqlens.dim() != 1 or len(cu_seqlens) < 1 or int(cu_seqlens[0]) != 0:
        raise ValueError("cu_seqlens must be 1-D, non-empty and start at 0")
    if bool((cu_seqlens.diff() < 0).any()) or int(cu_seqlens[-1]) != input_ids.shape[0]:
        raise ValueError(f"cu_seqlens must be non-decreasing and end at N = {input_ids.shape[0]}")
    if parents is None:
        return
    n_seq = len(cu_seqlens) - 1
    if parents.shape != (n_seq,) or parents.dtype != torch.int64:
        raise ValueError(f"parents must be an int64 tensor of shape [{n_seq}] (one per "
                         f"sequence), got shape {tuple(parents.shape)} and {parents.dtype}")
    parent = parents.clamp(0, max(n_seq - 1, 0))
    index = torch.arange(n_seq, device=parents.device)
    bad = (parents < -1) | ((parents >= 0) & ((parents >= index) | (parents[parent] != -1)))
    if bool(bad.any()):
        raise ValueError("parents: each entry must be -1 or an earlier sequence that has no "
                         "parent itself")
