"""Byte-level BPE tokenizer for tiny-model runs, trained with `tokenizers`, saved as an HF folder."""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

EOS = "<|endoftext|>"
PAD = "<|pad|>"


def train_tokenizer(texts: Iterable[str], vocab_size: int,
                    out_dir: str | Path | None = None) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE (every byte is in the vocabulary, so any text round-trips) with
    EOS and pad tokens; save it to out_dir as an HF tokenizer folder when given."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS, PAD],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=PAD)
    if out_dir is not None:
        fast.save_pretrained(str(out_dir))
    return fast


def encode(tokenizer, text: str) -> list[int]:
    """Token ids of `text` (prompts, programs, responses) with no special tokens added, and none
    made from it: literal special-token text such as "<|endoftext|>" in code stays plain text.
    Text that must contain special tokens (a rendered chat template) is not for this helper.
    ValueError for text that is no valid Unicode (a lone surrogate such as "\\ud800")."""
    try:
        return tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]
    except TypeError:
        if isinstance(text, str):
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise ValueError(f"text: {exc.reason} at index {exc.start} "
                                 f"({text[exc.start]!r}); it cannot be tokenized") from None
        raise
