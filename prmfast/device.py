"""The device every stage computes on: config key `model.device` (docs/training.md, "GPUs").

    "auto"    cuda when torch.cuda.is_available() (cuda:LOCAL_RANK under a launcher), else cpu
    "cpu"
    "cuda"    cuda:LOCAL_RANK under a launcher (torchrun / deepspeed), cuda:0 without one
    "cuda:N"  that GPU (one process per node only: ranks of a node must not share a GPU)

Stages call `select_device(cfg.model.device)` once, put their models there
(`load_policy(..., device=)`, `ValueModel.from_pretrained(..., device=)`, `.to(device)`) and
create every tensor on the device of the model it feeds. The CLI runs `check_device_config`
before any work, so a device that cannot work (no CUDA, a typo, an index past the GPUs) is a
config error at start.
"""
from __future__ import annotations

import os

import torch

from prmfast.config import ConfigError

DEVICE_TYPES = ("cpu", "cuda")


def resolve_device(spec: str = "auto") -> torch.device:
    """The torch.device that `spec` (see the module docstring) names on this machine and rank.
    Raises ValueError when it cannot work here."""
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(spec)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"{spec!r} is not a device (auto, cpu, cuda or cuda:N)") from None
    if device.type not in DEVICE_TYPES:
        raise ValueError(f"{spec!r}: only auto, cpu, cuda and cuda:N are supported")
    if device.type == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError(f"{spec!r}: CUDA is not available here (torch {torch.__version__}, "
                         f"built with CUDA {torch.version.cuda}); use auto or cpu")
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))
    if device.index is None:
        index = int(os.environ.get("LOCAL_RANK", "0"))
    elif local_world > 1:
        raise ValueError(f"{spec!r}: {local_world} processes on this node would all use one "
                         "GPU; use cuda or auto (each rank takes cuda:LOCAL_RANK)")
    else:
        index = device.index
    count = torch.cuda.device_count()
    if index >= count:
        raise ValueError(f"{spec!r}: cuda:{index} does not exist ({count} visible GPU(s))")
    return torch.device("cuda", index)


def select_device(spec: str = "auto") -> torch.device:
    """resolve_device, and for a GPU make it the current CUDA device (Triton kernels, NCCL and
    DeepSpeed use the current device)."""
    device = resolve_device(spec)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def check_device_config(cfg) -> None:
    """Value check of model.device, run by the CLI before any stage starts."""
    try:
        resolve_device(cfg.model.device)
    except ValueError as exc:
        raise ConfigError(f"model.device: {exc}") from None


def module_device(module: torch.nn.Module) -> torch.device:
    """The device of a module's (first) parameter; cpu for a module without parameters."""
    for param in module.parameters():
        return param.device
    return torch.device("cpu")
