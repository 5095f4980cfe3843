"""Batched sampling with an HF causal LM: left-padded prompts, KV cache, temperature and top-p.

The loop is HF `generate`'s (prefill, then one token per step through the model's cache), kept
in-house for two things generate does not give cheaply: the log-prob of every sampled token under
the distribution it was drawn from, and a private seeded torch.Generator (sampling leaves the
global RNG alone, and equal seeds give equal samples for the same prompts and batch size; with
seed=None the generator's seed is one draw from the global RNG, so torch.manual_seed makes
unseeded calls repeatable).

The KV cache and the attention mask are allocated once per batch for the prompt and every new
token (`PreallocatedLayer`): a decode step writes one position and the model reads views of the
filled part, where transformers' DynamicCache concatenates (copies) the whole cache of every
layer at every step. The views hold the same numbers in the same shapes, so the samples and
log-probs are bitwise those of the DynamicCache (tests/test_rollout.py).

Tokens are drawn by inverse-CDF sampling from one uniform number per row and step, drawn for
every row of the batch, and rows that have stopped leave the decode batch (with their cache
rows) once they are a quarter of it: a row's tokens do not depend on when the others stopped,
and the steps after the short responses cost only what the long ones need
(bench/test_rl_iteration_bench.py times this against decoding every row to the end:
`ours_vs_every_row`; BENCHMARKS.md).
"""
from __future__ import annotations

import math

import torch
from tqdm.auto import tqdm
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from prmfast.device import module_device
from prmfast.rollout.base import Sample


class HFGenerateBackend:
    """RolloutBackend for any HF causal LM (policy kept on its own device and dtype).

    Log-probs: at temperature > 0 they are under the distribution actually sampled from, i.e.
    softmax(logits / temperature) restricted to the top-p nucleus and renormalised. At temperature
    0 (greedy) that distribution is a point mass, so they are the model's plain log-probs
    (temperature 1, no top-p) of the chosen tokens instead.
    """

    KV_CACHES = ("preallocated", "dynamic")
    SHRINK_AT = 0.25     # drop stopped rows from the decode batch once they are this share of it

    def __init__(self, model, tokenizer, batch_size: int = 64, kv_cache: str = "preallocated"):
        """kv_cache: "preallocated" (see the module docstring) or "dynamic" (transformers'
        DynamicCache, concatenated every step; the same samples, slower; kept to check and time
        the preallocated one against)."""
        if batch_size < 1:
            raise ValueError(f"batch_size: need >= 1, got {batch_size}")
        if kv_cache not in self.KV_CACHES:
            raise ValueError(f"kv_cache: {kv_cache!r} is not one of {list(self.KV_CACHES)}")
        self.kv_cache = kv_cache
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        eos = model.generation_config.eos_token_id
        eos = eos if isinstance(eos, list) else [eos]
        self.stop_ids = sorted({i for i in eos + [tokenizer.eos_token_id] if i is not None})
        pad = tokenizer.pad_token_id
        if pad is None and not self.stop_ids:
            raise ValueError("the tokenizer has no pad token and neither it nor the model's "
                             "generation config names an EOS token: nothing to pad prompts with")
        self.pad_id = pad if pad is not None else self.stop_ids[0]

    def generate(self, prompt_ids: list[list[int]], *, n: int, max_new_tokens: int,
                 temperature: float, top_p: float = 1.0, seed: int | None = None,
                 progress: bool = False) -> list[list[Sample]]:
        if not 0 <= temperature < math.inf or not 0 < top_p <= 1 or n < 1 or max_new_tokens < 1:
            raise ValueError(f"need finite temperature >= 0, 0 < top_p <= 1, n >= 1, "
                             f"max_new_tokens >= 1; got {temperature}, {top_p}, {n}, "
                             f"{max_new_tokens}")
        if any(len(p) == 0 for p in prompt_ids):
            raise ValueError("prompt_ids: every prompt needs at least one token")
        vocab = self.model.get_input_embeddings().num_embeddings
        if prompt_ids and not 0 <= min(map(min, prompt_ids)) <= max(map(max, prompt_ids)) < vocab:
            raise ValueError(f"prompt_ids: token ids must lie in 0..{vocab - 1}, the model's "
                             f"vocabulary (a prompt encoded with another tokenizer?)")
        device = module_device(self.model)
        gen = torch.Generator(device=device)
        if seed is None:
            seed = int(torch.randint(2**62, (), device="cpu").item())
        gen.manual_seed(seed)
        rows = [p for p in prompt_ids for _ in range(n)]
        out: list[Sample] = []
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode(), tqdm(total=len(rows), disable=not progress,
                                              desc="generate", unit="seq") as bar:
                for b in range(0, len(rows), self.batch_size):
                    chunk = rows[b:b + self.batch_size]
                    tokens, logprobs = self._sample_batch(chunk, max_new_tokens, temperature,
                                                          top_p, gen, device)
                    out += [self._sample(p, t, lp) for p, t, lp in zip(chunk, tokens, logprobs)]
                    bar.update(len(chunk))
        finally:
            self.model.train(was_training)
        return [out[i * n:(i + 1) * n] for i in range(len(prompt_ids))]

    def _sample_batch(self, prompts, max_new_tokens, temperature, top_p, gen, device):
        """Generate for one batch; returns tokens and log-probs, each [B, steps] (as lists).

        Rows that have stopped are dropped from the decode batch (their cache rows too) once they
        are a quarter of it, so the steps after the short responses end cost only what the long
        ones need (`SHRINK_AT`)."""
        width = max(len(p) for p in prompts)
        ids = torch.tensor([[self.pad_id] * (width - len(p)) + p for p in prompts], device=device)
        # the mask of the prompts and of every token to come; step t reads its first width+t+1
        full_mask = torch.tensor([[0] * (width - len(p)) + [1] * (len(p) + max_new_tokens)
                                  for p in prompts], device=device)
        mask = full_mask[:, :width]
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache(config=self.model.config)
        if self.kv_cache == "preallocated":
            preallocate(cache, width + max_new_tokens)
        logits = self.model(input_ids=ids, attention_mask=mask, position_ids=pos,
                            cache=cache, use_cache=True, logits_to_keep=1).logits[:, -1]
        stop = torch.tensor(self.stop_ids, device=device)
        tokens = torch.full((len(prompts), max_new_tokens), self.pad_id, device=device)
        logprobs = torch.zeros(len(prompts), max_new_tokens, device=device)
        rows = torch.arange(len(prompts), device=device)     # the batch row of each decode row
        done = torch.zeros(len(prompts), dtype=torch.bool, device=device)
        next_pos = pos[:, -1:] + 1
        for step in range(max_new_tokens):
            # one uniform per batch row and step, drawn for every row: a row's sample does not
            # depend on when the others stopped
            uniform = torch.rand(len(prompts), generator=gen, device=device)[rows]
            tok, lp = pick_tokens(logits, temperature, top_p, uniform)
            tok = tok.masked_fill(done, self.pad_id)
            tokens[rows, step], logprobs[rows, step] = tok, lp.masked_fill(done, 0.0)
            done |= torch.isin(tok, stop)
            finished = int(done.sum())
            if finished == len(rows) or step == max_new_tokens - 1:
                break
            if finished >= self.SHRINK_AT * len(rows):
                keep = (~done).nonzero().squeeze(1)
                cache.batch_select_indices(keep)
                rows, tok, done = rows[keep], tok[keep], done[keep]
                full_mask, next_pos = full_mask[keep], next_pos[keep]
            mask = full_mask[:, :width + step + 1]
            logits = self.model(input_ids=tok[:, None], attention_mask=mask, position_ids=next_pos,
                                cache=cache, use_cache=True).logits[:, -1]
            next_pos = next_pos + 1
        return tokens[:, :step + 1].tolist(), logprobs[:, :step + 1].tolist()

    def _sample(self, prompt: list[int], tokens: list[int], logprobs: list[float]) -> Sample:
        end = next((i for i, t in enumerate(tokens) if t in self.stop_ids), None)
        response = tokens if end is None else tokens[:end]
        return Sample(prompt_ids=list(prompt), response_ids=response,
                      logprobs=logprobs[:len(response)],
                      finish_reason="length" if end is None else "stop",
                      text=response_text(self.tokenizer, prompt, response))


class PreallocatedLayer(DynamicLayer):
    """A DynamicLayer (full attention) whose keys and values are views of buffers
    [B, kv_heads, capacity, D] allocated at the first update: an update writes its positions
    and the layer hands back the filled part, the tensors DynamicLayer would have concatenated
    (same values and shapes). More than `capacity` positions in all is a ValueError."""

    def __init__(self, capacity: int):
        super().__init__()
        self.capacity, self.length = capacity, 0
        self._key_buffer = self._value_buffer = None

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
               ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.device, self.is_initialized = key_states.device, True
            batch, heads, _, dim = key_states.shape
            self._key_buffer = key_states.new_empty(batch, heads, self.capacity, dim)
            self._value_buffer = value_states.new_empty(batch, value_states.shape[1],
                                                        self.capacity, value_states.shape[3])
        end = self.length + key_states.shape[-2]
        if end > self.capacity:
            raise ValueError(f"PreallocatedLayer: {end} positions for a capacity of "
                             f"{self.capacity}")
        self._key_buffer[:, :, self.length:end] = key_states
        self._value_buffer[:, :, self.length:end] = value_states
        self.length = end
        self.keys, self.values = self._key_buffer[:, :, :end], self._value_buffer[:, :, :end]
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Keep only the batch rows `indices` (new buffers holding their filled positions)."""
        if not self.is_initialized:
            return
        buffers = []
        for old in (self._key_buffer, self._value_buffer):
            new = old.new_empty(len(indices), *old.shape[1:])
            new[:, :, :self.length] = old[indices, :, :self.length]
            buffers.append(new)
        self._key_buffer, self._value_buffer = buffers
        self.keys = self._key_buffer[:, :, :self.length]
        self.values = self._value_buffer[:, :, :self.length]

    def reset(self) -> None:
        super().reset()
        self.length, self._key_buffer, self._value_buffer = 0, None, None


def preallocate(cache: DynamicCache, capacity: int) -> DynamicCache:
    """Swap each plain full-attention DynamicLayer of `cache` (unused) for a PreallocatedLayer of
    `capacity` positions; other layer kinds (sliding windows, ...) stay as they are."""
    cache.layers = [PreallocatedLayer(capacity) if type(layer) is DynamicLayer else layer
                    for layer in cache.layers]
    return cache


def response_text(tokenizer, prompt_ids: list[int], response_ids: list[int]) -> str:
    """The text response_ids add after prompt_ids (special tokens skipped, no clean-up).

    Decoded after the prompt's last token, as vLLM's incremental detokenizer does: SentencePiece
    decoders (Llama-2, CodeLlama, Mistral) drop the leading space of the first token decoded,
    which would eat one space of the response's first indentation if decoded alone."""
    def decode(ids):
        return tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    context = list(prompt_ids[-1:])
    head, full = decode(context), decode(context + list(response_ids))
    if full.startswith(head) and not head.endswith("\ufffd"):
        return full[len(head):]
    return decode(response_ids)     # the response completes a character the prompt began


def pick_tokens(logits: torch.Tensor, temperature: float, top_p: float,
                uniform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """logits [B, V], uniform [B] in [0, 1) (the draw of each row) -> (tokens [B], their
    log-probs [B]); see HFGenerateBackend for which distribution the log-probs are under."""
    logits = logits.float()
    if temperature == 0:
        logp = torch.log_softmax(logits, dim=-1)
        tok = logp.argmax(dim=-1)
    else:
        shifted = logits - logits.amax(dim=-1, keepdim=True)   # max 0: no inf at tiny temperatures
        logp = torch.log_softmax(top_p_filter(shifted / temperature, top_p), dim=-1)
        tok = sample_categorical(logp.exp(), uniform)
    return tok, logp.gather(1, tok[:, None]).squeeze(1)


def sample_categorical(probs: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    """Draw a token per row of probs [B, V] (non-negative weights, positive sums) from uniform
    [B] in [0, 1) -> [B] int64.

    Inverse-CDF sampling: the first token whose cumulative weight exceeds uniform x the row's
    total, one random number per row where torch.multinomial draws one per vocabulary entry. A
    token of weight 0 is never drawn: where rounding puts the draw at the row's total, the row's
    most likely token is taken."""
    cdf = probs.cumsum(dim=-1)
    u = uniform.to(cdf.dtype)[:, None] * cdf[:, -1:]
    tok = torch.searchsorted(cdf, u, right=True).squeeze(1)
    tok = tok.clamp_(max=probs.shape[-1] - 1)
    return torch.where(probs.gather(1, tok[:, None]).squeeze(1) > 0, tok, probs.argmax(dim=-1))


def top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Set to -inf every logit outside the nucleus: the fewest most-likely tokens whose
    probability reaches top_p. logits [B, V] -> [B, V]."""
    if top_p >= 1:
        return logits
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(dim=-1)
    outside = probs.cumsum(dim=-1) - probs >= top_p       # mass before this token already enough
    return logits.scatter(1, order, sorted_logits.masked_fill(outside, -math.inf))
