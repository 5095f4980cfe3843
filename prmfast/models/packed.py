"""Training forwards on the packed layout: S sequences as one run of N tokens with cu_seqlens.

Attention never crosses a sequence boundary and positions restart at 0 in every sequence. The
linear layers always run on the N packed tokens (no padding); attention, per implementation
(`packed_attention_kind`, picked from the model and its device, nothing to configure):
- "flash" (attn_implementation="flash_attention_2" / "_3", CUDA): only per-sequence
  position_ids are passed; transformers turns them into flash-attn's varlen cu_seqlens.
- "bucketed" (sdpa or eager on the CPU, or a GPU without flash-attn; every model whose
  attention goes through transformers' AttentionInterface): inside each layer the packed
  queries, keys and values are gathered into a few right-padded [S_b, heads, T_b, D] blocks of
  sequences of similar length (`PackedLayout`), attended with causal SDPA, and scattered back to
  the packed order. A right-padded sequence under a causal mask never sees its padding, so the
  result equals a padded forward of each sequence; the cost is sum over buckets of S_b * T_b^2
  (at most 4 x sum of len^2), linear in the number of sequences, where a dense mask costs N^2.
- "mask" (models whose attention does not dispatch through that interface): an explicit
  block-diagonal causal mask [1, 1, N, N] built from cu_seqlens; quadratic in N.
The numbers equal a padded forward of each sequence (tests/scale/test_packed_on_cpu.py).

Log-probs go through kernels.token_logprobs on the hidden states, so the [N, V] logits never
exist; values and PRM line scores come from the ValueModel's head on the packed hidden states.
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


def packed_position_ids(cu_seqlens: torch.Tensor) -> torch.Tensor:
    """cu_seqlens [S+1] -> position ids [N], 0..len_s-1 within each sequence."""
    lengths = cu_seqlens.diff()
    starts = torch.repeat_interleave(cu_seqlens[:-1], lengths)
    return torch.arange(int(cu_seqlens[-1]), device=cu_seqlens.device) - starts


def block_causal_mask(cu_seqlens: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """cu_seqlens [S+1] -> additive mask [1, 1, N, N]: 0 where query i may see key j (same
    sequence, j <= i), the dtype's minimum elsewhere."""
    n = int(cu_seqlens[-1])
    seq = torch.repeat_interleave(torch.arange(len(cu_seqlens) - 1, device=cu_seqlens.device),
                                  cu_seqlens.diff())
    idx = torch.arange(n, device=cu_seqlens.device)
    allowed = (seq[:, None] == seq[None, :]) & (idx[:, None] >= idx[None, :])
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
class PackedLayout:
    """Where the packed tokens sit in the padded blocks bucketed attention runs on.

    buckets: per bucket (gather [S_b * T_b] int64: the packed position each slot of the
    right-padded [S_b, T_b] block reads (a padding slot reads its sequence's first token, which
    no real query can see under the causal mask); valid [n_b] int64: the slots holding real
    tokens, in packed order; S_b; T_b). A bucket holds the sequences whose length is more than
    half of its longest, so padding costs at most 4x a sequence's own attention.
    order: [N] int64, where each packed token's row is in the concatenation of the buckets'
    valid rows; None when that concatenation is already the packed order (one bucket).
    max_length: the longest sequence."""
    buckets: tuple[tuple[torch.Tensor, torch.Tensor, int, int], ...]
    order: torch.Tensor | None
    max_length: int

    @classmethod
    def from_cu_seqlens(cls, cu_seqlens: torch.Tensor) -> "PackedLayout":
        """cu_seqlens [S+1] (validated by the caller) -> the layout, on cu_seqlens' device."""
        device = cu_seqlens.device
        cu = cu_seqlens.tolist()
        lengths = [b - a for a, b in zip(cu, cu[1:])]
        groups: list[list[int]] = []
        for s in sorted((s for s in range(len(lengths)) if lengths[s]), key=lambda s: -lengths[s]):
            if groups and 2 * lengths[s] > lengths[groups[-1][0]]:
                groups[-1].append(s)
            else:
                groups.append([s])
        buckets, rows = [], []
        for group in groups:
            group.sort()                                  # packed order within the bucket
            width = max(lengths[s] for s in group)
            starts = torch.tensor([cu[s] for s in group], dtype=torch.int64, device=device)
            lens = torch.tensor([lengths[s] for s in group], dtype=torch.int64, device=device)
            slot = torch.arange(width, dtype=torch.int64, device=device)
            real = slot[None, :] < lens[:, None]                          # [S_b, T_b]
            gather = (starts[:, None] + slot[None, :] * real).reshape(-1)
            valid = real.reshape(-1).nonzero().squeeze(1)
            buckets.append((gather, valid, len(group), width))
            rows.append(gather[valid])
        order = None
        if len(groups) > 1:
            concat = torch.cat(rows)
            order = torch.empty_like(concat).index_put_(
                (concat,), torch.arange(len(concat), dtype=torch.int64, device=device))
        return cls(tuple(buckets), order, max(lengths, default=0))


def _bucketed_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor,
                        value: torch.Tensor, attention_mask: torch.Tensor | None, *,
                        packed_layout: PackedLayout, sliding_window: int | None = None,
                        **kwargs) -> tuple[torch.Tensor, None]:
    """transformers attention function: query [1, heads, N, D], key / value [1, kv_heads, N, D]
    -> ([1, N, heads, D], None), each sequence of `packed_layout` attending causally to itself
    (transformers' sdpa_attention_forward per bucket: GQA, scaling, dropout as it does them)."""
    if attention_mask is not None:
        raise ValueError("bucketed packed attention takes no attention mask")
    if sliding_window is not None and packed_layout.max_length > sliding_window:
        raise ValueError(f"a packed sequence of {packed_layout.max_length} tokens is longer than "
                         f"the model's sliding window ({sliding_window}): not supported here")
    q, k, v = (t[0].transpose(0, 1) for t in (query, key, value))     # [N, heads, D]
    outs = []
    for gather, valid, n_seq, width in packed_layout.buckets:
        def block(t):   # [N, h, D] -> [S_b, h, T_b, D]
            return t.index_select(0, gather).view(n_seq, width, *t.shape[1:]).transpose(1, 2)
        out, _ = sdpa_attention_forward(module, block(q), block(k), block(v), None,
                                        is_causal=True, **kwargs)           # [S_b, T_b, h, D]
        outs.append(out.reshape(n_seq * width, *out.shape[2:]).index_select(0, valid))
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
                  attention: str = "auto") -> torch.Tensor:
    """backbone: an HF base model (e.g. LlamaModel, `model.base_model`, ValueModel.backbone).

    input_ids [N] int, cu_seqlens [S+1] int (as in kernels) -> last hidden states [N, H].
    attention: "auto" (packed_attention_kind), or "bucketed" / "mask" to force one CPU path
    (benchmarks and tests compare them).
    """
    _check(input_ids, cu_seqlens)
    if attention not in ATTENTION_CHOICES:
        raise ValueError(f"attention: {attention!r} is not one of {list(ATTENTION_CHOICES)}")
    kind = packed_attention_kind(backbone)
    if attention == "bucketed" and kind == "mask":
        raise ValueError(f"attention='bucketed': {type(backbone).__name__} does not dispatch "
                         "its attention through transformers' AttentionInterface")
    kind = kind if attention == "auto" else attention
    if input_ids.shape[0] == 0:     # no token (every sequence empty): the model cannot run on it
        return backbone.get_input_embeddings()(input_ids)
    position_ids = packed_position_ids(cu_seqlens)[None]
    if kind == "bucketed":
        with _attention_implementation(backbone.config, BUCKETED_ATTENTION):
            out = backbone(input_ids=input_ids[None], position_ids=position_ids, use_cache=False,
                           packed_layout=PackedLayout.from_cu_seqlens(cu_seqlens))
        return out.last_hidden_state[0]
    # flash: transformers derives varlen cu_seqlens from the positions; else the dense mask
    mask = None if kind == "flash" else block_causal_mask(
        cu_seqlens, backbone.get_input_embeddings().weight.dtype)
    out = backbone(input_ids=input_ids[None], attention_mask=mask, position_ids=position_ids,
                   use_cache=False)
    return out.last_hidden_state[0]


def packed_logprobs(model: nn.Module, input_ids: torch.Tensor, cu_seqlens: torch.Tensor, *,
                    at: torch.Tensor | None = None, temperature: float = 1.0,
                    chunk_size: int | None = None, impl: str = "auto",
                    attention: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """Causal LM -> (logprobs [N], entropy [N]) aligned with the input tokens, or ([K], [K]) at
    the K packed positions `at` ([K] int64) only (the LM head runs at those alone).

    logprobs[t] = log p(input_ids[t] | the tokens before it in its sequence); entropy[t] is the
    entropy of that predictive distribution. Each sequence's first token has no prediction and
    gets 0 in both. Differentiable w.r.t. the model's parameters. attention: see packed_hidden.
    """
    hidden = packed_hidden(model.base_model, input_ids, cu_seqlens, attention=attention)
    rows = torch.arange(input_ids.shape[0], device=input_ids.device) if at is None else \
        _check_at(at, input_ids.shape[0])
    keep = (packed_position_ids(cu_seqlens)[rows] > 0).nonzero().squeeze(1)    # into rows
    predicted = rows[keep]
    lp, ent = kernels.token_logprobs(hidden[predicted - 1], model.get_output_embeddings().weight,
                                     input_ids[predicted], temperature=temperature,
                                     chunk_size=chunk_size, impl=impl)
    logprobs = hidden.new_zeros(rows.shape[0]).index_put((keep,), lp)
    entropy = hidden.new_zeros(rows.shape[0]).index_put((keep,), ent)
    return logprobs, entropy


def packed_values(value_model: nn.Module, input_ids: torch.Tensor, cu_seqlens: torch.Tensor, *,
                  at: torch.Tensor | None = None, attention: str = "auto") -> torch.Tensor:
    """ValueModel -> per-token values [N] (the critic's V_t), or [K] at the positions `at`."""
    hidden = packed_hidden(value_model.backbone, input_ids, cu_seqlens, attention=attention)
    if at is not None:
        hidden = hidden[_check_at(at, input_ids.shape[0])]
    return value_model.head(hidden).squeeze(-1)


def packed_line_scores(value_model: nn.Module, input_ids: torch.Tensor, cu_seqlens: torch.Tensor,
                       line_end: torch.Tensor, *, at: torch.Tensor | None = None,
                       impl: str = "auto", attention: str = "auto") -> torch.Tensor:
    """ValueModel as PRM -> scores [N]: head output at line_end tokens ([N] bool), 0 elsewhere;
    or [K] at the positions `at` ([K] int64), line_end then [K]."""
    hidden = packed_hidden(value_model.backbone, input_ids, cu_seqlens, attention=attention)
    if at is not None:
        hidden = hidden[_check_at(at, input_ids.shape[0])]
    return kernels.line_scores(hidden, value_model.head.weight[0], value_model.head.bias,
                               line_end, impl=impl)


class PackedPolicy(nn.Module):
    """A causal LM whose forward is packed_logprobs, so DDP / FSDP / DeepSpeed wrap the whole
    computation (they sync gradients only for forwards that go through the wrapper).

    forward(input_ids [N], cu_seqlens [S+1], at [K] | None) -> (logprobs, entropy), [N] or [K]
    """

    def __init__(self, model: nn.Module, *, temperature: float = 1.0):
        super().__init__()
        self.model, self.temperature = model, temperature

    def forward(self, input_ids: torch.Tensor, cu_seqlens: torch.Tensor,
                at: torch.Tensor | None = None):
        return packed_logprobs(self.model, input_ids, cu_seqlens, at=at,
                               temperature=self.temperature)

    def external_parameters(self) -> list[nn.Parameter]:
        """Used outside their own module's forward (ZeRO-3 must gather them for ours)."""
        return [self.model.get_output_embeddings().weight]


class PackedCritic(nn.Module):
    """A ValueModel whose forward is packed_values.
    forward(input_ids [N], cu_seqlens, at [K] | None) -> [N] or [K]."""

    def __init__(self, value_model: nn.Module):
        super().__init__()
        self.model = value_model

    def forward(self, input_ids: torch.Tensor, cu_seqlens: torch.Tensor,
                at: torch.Tensor | None = None) -> torch.Tensor:
        return packed_values(self.model, input_ids, cu_seqlens, at=at)

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


def _check_at(at: torch.Tensor, n_tokens: int) -> torch.Tensor:
    """`at` checked as [K] int64 packed positions in [0, n_tokens)."""
    if at.dim() != 1 or at.dtype != torch.int64:
        raise ValueError(f"at must be a 1-D int64 tensor of packed positions, got shape "
                         f"{tuple(at.shape)} and {at.dtype}")
    if at.numel() and (int(at.min()) < 0 or int(at.max()) >= n_tokens):
        raise ValueError(f"at: positions must lie in [0, {n_tokens})")
    return at


def _check(input_ids: torch.Tensor, cu_seqlens: torch.Tensor) -> None:
    if input_ids.dim() != 1:
        raise ValueError(f"input_ids must be 1-D [N], got shape {tuple(input_ids.shape)}")
    if input_ids.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"input_ids must hold int64 or int32 token ids, got {input_ids.dtype}")
    if cu_seqlens.dim() != 1 or len(cu_seqlens) < 1 or int(cu_seqlens[0]) != 0:
        raise ValueError("cu_seqlens must be 1-D, non-empty and start at 0")
    if bool((cu_seqlens.diff() < 0).any()) or int(cu_seqlens[-1]) != input_ids.shape[0]:
        raise ValueError(f"cu_seqlens must be non-decreasing and end at N = {input_ids.shape[0]}")
