"""Policy models: tiny Llama-style models from config, local HF folders and GGUF files."""
from __future__ import annotations

import os
from pathlib import Path

import torch
from transformers import (AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM,
                          PreTrainedModel)

from prmfast.config import ModelConfig

CACHE_ENV = "PRMFAST_CACHE"          # where converted GGUF models go (default ~/.cache/prmfast)


def build_tiny_model(tokenizer, model_cfg: ModelConfig) -> PreTrainedModel:
    """A randomly initialised LlamaForCausalLM sized by model_cfg (tied input/output embeddings)."""
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=model_cfg.hidden_size,
        num_hidden_layers=model_cfg.num_layers,
        num_attention_heads=model_cfg.num_heads,
        num_key_value_heads=model_cfg.num_heads,
        intermediate_size=model_cfg.intermediate_size,
        max_position_embeddings=model_cfg.max_position,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(config).to(getattr(torch, model_cfg.dtype))


def load_policy(path: str | Path, dtype: str = "float32", device: torch.device | str | None = None
                ) -> tuple[PreTrainedModel, object]:
    """(model, tokenizer) from a local HF folder or a .gguf file, the model moved to `device`
    when given (it loads on the CPU).

    A GGUF file is dequantised once into a safetensors folder under $PRMFAST_CACHE (default
    ~/.cache/prmfast/<file stem>) and later loads read that folder. The tokenizer always has a
    pad token (EOS when it has none of its own).
    """
    path = Path(path)
    if path.suffix == ".gguf":
        path = _gguf_cache(path)
    elif not path.is_dir():
        raise FileNotFoundError(f"no model folder or .gguf file at {str(path)!r}")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype))
    if device is not None:
        model.to(device)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def save_policy(model: PreTrainedModel, tokenizer, out_dir: str | Path) -> None:
    """Write model (safetensors + config) and tokenizer into one HF folder."""
    model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))


def _gguf_cache(gguf: Path) -> Path:
    if not gguf.is_file():
        raise FileNotFoundError(f"GGUF file {str(gguf)!r} does not exist")
    root = Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "prmfast"))
    folder = root / gguf.stem
    if not (folder / "DONE").exists():
        loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        config = loaded.config                  # dequantised weights into a plain model
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        model = AutoModelForCausalLM.from_config(config, dtype=loaded.dtype)
        model.load_state_dict(loaded.state_dict())
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        save_policy(model, tokenizer, folder)
        (folder / "DONE").write_text(str(gguf.resolve()) + "\n")
    return folder
