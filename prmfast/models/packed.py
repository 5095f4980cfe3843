"""Training forwards on the packed layout: S sequences as one run of N tokens with cu_seqlens.

Attention never crosses a sequence boundary and positions restart at 0 in every sequence:
- flash-attention (model loaded with attn_implementation="flash_attention_2", CUDA): only
  per-sequence position_ids are passed; transformers turns them into flash-attn's varlen
  cu_seqlens, so no [N, N] mask exists.
- any other implementation (sdpa, eager; the CPU path): an explicit block-diagonal causal mask
  [1, 1, N, N] built from cu_seqlens plus the same position_ids; the numbers equal a padded
  forward of each sequence (tests/scale/test_packed_on_cpu.py).

Log-probs go through kernels.token_logprobs on the hidden states, so the [N, V] logits never
exist; values and PRM line scores come from the ValueModel's head on the packed hidden states.
"""
from __future__ import annotations

import importlib.util

import torch
from torch import nn

from prmfast import kernels

FLASH_IMPLEMENTATIONS = ("flash_attention_2", "flash_attention_3")


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


def packed_hidden(backbone: nn.Module, input_ids: torch.Tensor,
                  cu_seqlens: torch.Tensor) -> torch.Tensor:
    """backbone: an HF base model (e.g. LlamaModel, `model.base_model`, ValueModel.backbone).

    input_ids [N] int, cu_seqlens [S+1] int (as in kernels) -> last hidden states [N, H].
    """
    _check(input_ids, cu_seqlens)
    if input_ids.shape[0] == 0:     # no token (every sequence empty): the model cannot run on it
        return backbone.get_input_embeddings()(input_ids)
    position_ids = packed_position_ids(cu_seqlens)[None]
    if backbone.config._attn_implementation in FLASH_IMPLEMENTATIONS:
        mask = None                      # transformers derives varlen cu_seqlens from positions
    else:
        mask = block_causal_mask(cu_seqlens, backbone.get_input_embeddings().weight.dtype)
    out = backbone(input_ids=input_ids[None], attention_mask=mask, position_ids=position_ids,
                   use_cache=False)
    return out.last_hidden_state[0]


def packed_logprobs(model: nn.Module, input_ids: torch.Tensor, cu_seqlens: torch.Tensor, *,
                    temperature: float = 1.0, chunk_size: int | None = None,
                    impl: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """Causal LM -> (logprobs [N], entropy [N]) aligned with the input tokens.

    logprobs[t] = log p(input_ids[t] | the tokens before it in its sequence); entropy[t] is the
    entropy of that predictive distribution. Each sequence's first token has no prediction and
    gets 0 in both. Differentiable w.r.t. the model's parameters.
    """
    hidden = packed_hidden(model.base_model, input_ids, cu_seqlens)
    predicted = (packed_position_ids(cu_seqlens) > 0).nonzero().squeeze(1)   # [M]
    lp, ent = kernels.token_logprobs(hidden[predicted - 1], model.get_output_embeddings().weight,
                                     input_ids[predicted], temperature=temperature,
                                     chunk_size=chunk_size, impl=impl)
    logprobs = hidden.new_zeros(input_ids.shape[0]).index_put((predicted,), lp)
    entropy = hidden.new_zeros(input_ids.shape[0]).index_put((predicted,), ent)
    return logprobs, entropy


def packed_values(value_model: nn.Module, input_ids: torch.Tensor,
                  cu_seqlens: torch.Tensor) -> torch.Tensor:
    """ValueModel -> per-token values [N] (the critic's V_t)."""
    hidden = packed_hidden(value_model.backbone, input_ids, cu_seqlens)
    return value_model.head(hidden).squeeze(-1)


def packed_line_scores(value_model: nn.Module, input_ids: torch.Tensor, cu_seqlens: torch.Tensor,
                       line_end: torch.Tensor, *, impl: str = "auto") -> torch.Tensor:
    """ValueModel as PRM -> scores [N]: head output at line_end tokens ([N] bool), 0 elsewhere."""
    hidden = packed_hidden(value_model.backbone, input_ids, cu_seqlens)
    return kernels.line_scores(hidden, value_model.head.weight[0], value_model.head.bias,
                               line_end, impl=impl)


class PackedPolicy(nn.Module):
    """A causal LM whose forward is packed_logprobs, so DDP / FSDP / DeepSpeed wrap the whole
    computation (they sync gradients only for forwards that go through the wrapper).

    forward(input_ids [N], cu_seqlens [S+1]) -> (logprobs [N], entropy [N])
    """

    def __init__(self, model: nn.Module, *, temperature: float = 1.0):
        super().__init__()
        self.model, self.temperature = model, temperature

    def forward(self, input_ids: torch.Tensor, cu_seqlens: torch.Tensor):
        return packed_logprobs(self.model, input_ids, cu_seqlens, temperature=self.temperature)

    def external_parameters(self) -> list[nn.Parameter]:
        """Used outside their own module's forward (ZeRO-3 must gather them for ours)."""
        return [self.model.get_output_embeddings().weight]


class PackedCritic(nn.Module):
    """A ValueModel whose forward is packed_values. forward(input_ids [N], cu_seqlens) -> [N]."""

    def __init__(self, value_model: nn.Module):
        super().__init__()
        self.model = value_model

    def forward(self, input_ids: torch.Tensor, cu_seqlens: torch.Tensor) -> torch.Tensor:
        return packed_values(self.model, input_ids, cu_seqlens)

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


def _check(input_ids: torch.Tensor, cu_seqlens: torch.Tensor) -> None:
    if input_ids.dim() != 1:
        raise ValueError(f"input_ids must be 1-D [N], got shape {tuple(input_ids.shape)}")
    if input_ids.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"input_ids must hold int64 or int32 token ids, got {input_ids.dtype}")
    if cu_seqlens.dim() != 1 or len(cu_seqlens) < 1 or int(cu_seqlens[0]) != 0:
        raise ValueError("cu_seqlens must be 1-D, non-empty and start at 0")
    if bool((cu_seqlens.diff() < 0).any()) or int(cu_seqlens[-1]) != input_ids.shape[0]:
        raise ValueError(f"cu_seqlens must be non-decreasing and end at N = {input_ids.shape[0]}")
