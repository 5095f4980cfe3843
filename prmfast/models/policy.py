"""Policy models: tiny Llama-style models from config, local HF folders and GGUF files."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from transformers import (AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM,
                          PreTrainedModel)

from prmfast.config import DTYPES, ModelConfig

CACHE_ENV = "PRMFAST_CACHE"          # where converted GGUF models go (default ~/.cache/prmfast)
WEIGHT_GLOBS = ("*.safetensors", "pytorch_model*.bin")


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
    return LlamaForCausalLM(config).to(torch_dtype(model_cfg.dtype))


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype named `name` (one of prmfast.config.DTYPES); ValueError for another."""
    if name not in DTYPES:
        raise ValueError(f"dtype: {name!r} is not one of {list(DTYPES)}")
    return getattr(torch, name)


def load_policy(path: str | Path, dtype: str = "float32", device: torch.device | str | None = None
                ) -> tuple[PreTrainedModel, object]:
    """(model, tokenizer) from a local HF folder or a .gguf file, the model moved to `device`
    when given (it loads on the CPU).

    A GGUF file is dequantised once into a safetensors folder under $PRMFAST_CACHE (default
    ~/.cache/prmfast/<file stem>) and later loads read that folder while its DONE file records
    the same file (resolved path, size, mtime); otherwise it is converted again. The tokenizer
    always has a pad token (EOS when it has none of its own). FileNotFoundError / ValueError
    say what is missing or broken.
    """
    torch_type, path = torch_dtype(dtype), Path(path)
    if path.suffix == ".gguf":
        path = _gguf_cache(path)
    elif not path.is_dir():
        raise FileNotFoundError(f"no model folder or .gguf file at {str(path)!r}")
    check_model_folder(path)
    model = load_complete(AutoModelForCausalLM, path, dtype=torch_type)
    if device is not None:
        model.to(device)
    return model, load_tokenizer(path)


def load_tokenizer(path: str | Path):
    """The HF folder's tokenizer, with a pad token (EOS when it has none of its own); ValueError
    when none loads."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: no tokenizer that loads ({one_line(exc)})") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def check_model_folder(path: str | Path) -> None:
    """FileNotFoundError unless `path` is a folder with config.json and weights."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"no model folder at {str(path)!r}")
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} is not an HF model folder: it has no config.json")
    if not any(any(path.glob(pattern)) for pattern in WEIGHT_GLOBS):
        raise FileNotFoundError(f"{path} has a config.json but no weights "
                                f"({' or '.join(WEIGHT_GLOBS)})")


def load_complete(auto_class, path: str | Path, **kwargs) -> PreTrainedModel:
    """auto_class.from_pretrained(path, **kwargs), or ValueError when the folder's weights lack
    some of the model's tensors (transformers would fill them with random values: e.g. a
    critic/PRM folder, which has no LM head, loaded as an untied policy) or a weights file is
    damaged (safetensors' own error names no file)."""
    try:
        model, info = auto_class.from_pretrained(path, output_loading_info=True, **kwargs)
    except SafetensorError as exc:
        raise ValueError(f"{path}: a .safetensors weights file is damaged or truncated "
                         f"({one_line(exc)})") from None
    missing = sorted(info["missing_keys"])
    if missing:
        shown = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
        raise ValueError(f"{path}: its weights lack {len(missing)} of the tensors of a "
                         f"{type(model).__name__} ({shown}); an incomplete checkpoint or a "
                         f"folder of another kind of model")
    return model


def save_policy(model: PreTrainedModel, tokenizer, out_dir: str | Path) -> None:
    """Write model (safetensors + config) and tokenizer into one HF folder."""
    model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))


def _gguf_cache(gguf: Path) -> Path:
    """The folder converted from `gguf`: $PRMFAST_CACHE/<file stem>, converted (again) unless its
    DONE records this very file. ValueError when the file is not a GGUF file that loads."""
    if not gguf.is_file():
        raise FileNotFoundError(f"GGUF file {str(gguf)!r} does not exist")
    root = Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "prmfast"))
    folder = root / (gguf.stem if gguf.stem.strip(".") else "gguf")
    stat = gguf.stat()
    stamp = json.dumps({"path": str(gguf.resolve()), "size": stat.st_size,
                        "mtime_ns": stat.st_mtime_ns}) + "\n"
    done = folder / "DONE"
    if not (done.is_file() and done.read_text() == stamp):
        shutil.rmtree(folder, ignore_errors=True)      # another file's, or a torn conversion
        model, tokenizer = _read_gguf(gguf)
        save_policy(model, tokenizer, folder)
        done.write_text(stamp)
    return folder


def _read_gguf(gguf: Path) -> tuple[PreTrainedModel, object]:
    """(plain dequantised model, tokenizer) of a GGUF file; ValueError when it does not load."""
    try:
        loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    except Exception as exc:        # transformers/gguf: ValueError, struct.error, KeyError, ...
        raise ValueError(f"{gguf} is not a valid or complete GGUF file "
                         f"({one_line(exc)})") from None
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=loaded.dtype)
    model.load_state_dict(loaded.state_dict())
    return model, tokenizer


def one_line(exc: BaseException, limit: int = 300) -> str:
    """An exception's message on one line, cut at `limit` characters (its type name when it
    has none)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."
