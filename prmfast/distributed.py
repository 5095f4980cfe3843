"""Multi-process training on existing engines: torch.distributed (DDP, FSDP2) and DeepSpeed ZeRO.

Launch with the engines' own launchers; every rank runs the same script:

    torchrun --nproc_per_node 8 -m prmfast.train ... --dist ddp
    deepspeed --num_gpus 8 --module prmfast.train ... --dist deepspeed \
        --deepspeed-config configs/deepspeed/zero2.json

How a trainer uses this module (see docs/scale.md):

    info = init_distributed(backend)                 # reads RANK/WORLD_SIZE/LOCAL_RANK
    policy = wrap_model(policy, backend, make_optimizer, ds_config=...)
    my_prompts = shard(prompts)                      # rollouts + sandbox on this rank's share
    ...
    scale = token_mean_scale(n_local_tokens)         # global token mean across ranks
    policy.backward(loss * scale); policy.step()
    metrics = all_reduce_metrics(metrics)            # mean over ranks; log on is_main()

Single process (no launcher): everything degrades to plain local behaviour.
"""
from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from prmfast.device import select_device

T = TypeVar("T")
BACKENDS = ("none", "ddp", "fsdp", "deepspeed")


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device


def init_distributed(backend: str = "ddp", *, comm: str | None = None,
                     device: torch.device | str | None = None) -> DistInfo:
    """Join the process group the launcher set up (env:// rendezvous); idempotent.

    backend: one of BACKENDS; "deepspeed" initialises through deepspeed.init_distributed and
    needs a launcher (torchrun or deepspeed, also for one process).
    device: where this rank computes (prmfast.device.select_device); default cuda:LOCAL_RANK
    when CUDA is available, else cpu. A CUDA device becomes the current device.
    comm: "nccl" | "gloo"; default nccl for a CUDA device, gloo for the CPU. A single process
    without launcher variables (WORLD_SIZE unset or 1) initialises nothing.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "deepspeed" and "RANK" not in os.environ and not dist.is_initialized():
        raise ValueError("backend 'deepspeed' needs a launcher: torchrun --nproc_per_node N "
                         "or deepspeed --num_gpus N (N may be 1)")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = select_device("auto") if device is None else torch.device(device)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.set_device(device)
    comm = comm or ("nccl" if cuda else "gloo")
    if backend == "deepspeed" and not dist.is_initialized():
        import deepspeed
        deepspeed.init_distributed(dist_backend=comm)
    elif world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend=comm)
    return DistInfo(rank=get_rank(), world_size=get_world_size(), local_rank=local_rank,
                    device=device)


def get_rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def get_world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    """True on rank 0 (and in a single process): the rank that logs, evaluates and saves."""
    return get_rank() == 0


def shard(items: Sequence[T]) -> list[T]:
    """This rank's share of items, strided (rank, rank + W, ...), so shares differ by at most one.

    Use for prompts before rollouts and for sandbox jobs; `gather_shards` restores the order.
    """
    return list(items[get_rank()::get_world_size()])


def gather_shards(local: Sequence[T]) -> list[T]:
    """Inverse of `shard`: every rank gets the full list in the original order (pickled objects)."""
    world = get_world_size()
    if world == 1:
        return list(local)
    parts: list[list[T]] = [[] for _ in range(world)]
    dist.all_gather_object(parts, list(local))
    total = sum(len(p) for p in parts)
    return [parts[i % world][i // world] for i in range(total)]


def all_reduce_metrics(metrics: dict[str, float], op: str = "mean") -> dict[str, float]:
    """Reduce scalar metrics over ranks ("mean" | "sum" | "max" | "min"); same keys on all ranks.

    One collective for the whole dict (float64 on the communication device).
    """
    ops = {"mean": dist.ReduceOp.SUM, "sum": dist.ReduceOp.SUM,
           "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}
    if op not in ops:
        raise ValueError(f"op must be one of {sorted(ops)}, got {op!r}")
    if get_world_size() == 1:
        return {k: float(v) for k, v in metrics.items()}
    keys = sorted(metrics)
    values = torch.tensor([float(metrics[k]) for k in keys], dtype=torch.float64,
                          device=_comm_device())
    dist.all_reduce(values, op=ops[op])
    if op == "mean":
        values /= get_world_size()
    return dict(zip(keys, values.tolist()))


def global_mean_std(x: torch.Tensor) -> tuple[int, torch.Tensor, torch.Tensor]:
    """(count, mean, unbiased std) of x's elements over all ranks, as 0-d tensors of x's dtype.

    One all-reduce of (count, sum, sum of squares) in float64; a single process computes
    x.mean() / x.std() directly. The mean of no elements is 0, the std of fewer than 2 is 0.
    """
    if get_world_size() == 1:
        n = x.numel()
        return n, (x.mean() if n else x.new_zeros(())), (x.std() if n > 1 else x.new_zeros(()))
    stats = torch.stack([torch.tensor(float(x.numel()), dtype=torch.float64, device="cpu"),
                         x.double().sum().cpu(), x.double().square().sum().cpu()])
    stats = stats.to(_comm_device())
    dist.all_reduce(stats)
    n, total, squares = stats.tolist()
    mean = total / n if n else 0.0
    var = (squares - n * mean * mean) / (n - 1) if n > 1 else 0.0
    return (int(n), torch.tensor(mean, dtype=x.dtype, device=x.device),
            torch.tensor(max(var, 0.0) ** 0.5, dtype=x.dtype, device=x.device))


def barrier() -> None:
    """Wait for every rank (nothing in a single process)."""
    if get_world_size() > 1:
        dist.barrier()


def shutdown() -> None:
    """Leave the process group once every rank is done (call it last, on every rank); without
    it a rank that exits while another still holds its connections can abort that one."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def exit_rank(code: int = 0) -> None:
    """End a launched rank: shutdown(), flush stdio, then leave at once (os._exit) without
    running destructors. Torch's gloo process group can deadlock when a DDP module still holding
    it is destroyed after the group was left: its destructor joins gloo's run-loop thread, which
    waits for the GIL that the destroying thread holds (a 2-rank CPU job hung so in CI with torch
    2.13, after its results were saved). Without a launcher it returns and does nothing."""
    if not dist.is_initialized():
        return
    shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def token_mean_scale(n_local: int) -> float:
    """Factor that turns a rank-local token mean into its share of the global token mean.

    Gradient averaging (DDP, ZeRO) divides by the world size W; with N_r tokens on rank r the
    global mean needs local_mean * W * N_r / sum(N). Multiply the local loss by this factor.
    """
    world = get_world_size()
    if world == 1:
        return 1.0
    total = torch.tensor([float(n_local)], dtype=torch.float64, device=_comm_device())
    dist.all_reduce(total)
    return world * n_local / max(total.item(), 1.0)


class Wrapped:
    """A model under a distributed engine, with one backward/step interface for all of them.

    model: call it for forwards (DDP/FSDP module or DeepSpeed engine).
    module: the plain nn.Module (its parameters are shards under ZeRO-3 / FSDP: see
    full_parameters). optimizer: the torch optimizer (under DeepSpeed the one inside ZeRO's
    wrapper, whose param_groups an LR scheduler drives).
    """

    def __init__(self, model: nn.Module, module: nn.Module, optimizer, backend: str,
                 max_grad_norm: float | None):
        self.model, self.module, self.optimizer = model, module, optimizer
        self.backend, self.max_grad_norm = backend, max_grad_norm

    def __call__(self, *args, **kwargs):
        return self.model(*args, **kwargs)

    def backward(self, loss: torch.Tensor) -> None:
        if self.backend == "deepspeed":
            self.model.backward(loss)
        else:
            loss.backward()

    def step(self) -> float | None:
        """Clip (if max_grad_norm), step the optimizer, zero grads; returns the grad norm."""
        if self.backend == "deepspeed":  # clipping comes from the config's gradient_clipping
            self.model.step()
            norm = self.model.get_global_grad_norm()
            return None if norm is None else float(norm)
        norm = None
        if self.max_grad_norm is not None:
            norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(),
                                                        self.max_grad_norm))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return norm


def wrap_model(model: nn.Module, backend: str,
               make_optimizer: Callable[[Any], torch.optim.Optimizer], *,
               max_grad_norm: float | None = None,
               ds_config: str | os.PathLike | dict | None = None) -> Wrapped:
    """Put model (already on its device) under backend and build its optimizer.

    model's forward must do the whole differentiable computation (engines hook the wrapper's
    forward): wrap prmfast.models.packed.PackedPolicy / PackedCritic, not the bare LM.
    make_optimizer(params) -> optimizer; it is called on the wrapped parameters (after FSDP
    sharding; inside deepspeed.initialize for ZeRO-3). ds_config: a path or dict for
    "deepspeed" (see load_deepspeed_config); gradient_clipping there replaces max_grad_norm.
    Under ZeRO-3, parameters listed by model.external_parameters() are registered with
    deepspeed.zero.register_external_parameter (gathered for model's forward).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "deepspeed":
        import deepspeed
        config = ds_config if isinstance(ds_config, dict) else load_deepspeed_config(ds_config)
        if config.get("zero_optimization", {}).get("stage") == 3:
            for param in getattr(model, "external_parameters", list)():
                deepspeed.zero.register_external_parameter(model, param)
        engine, optimizer, _, _ = deepspeed.initialize(model=model, optimizer=make_optimizer,
                                                       config=config)
        return Wrapped(engine, engine.module, getattr(optimizer, "optimizer", optimizer),
                       backend, None)
    if backend == "ddp" and get_world_size() > 1:
        device_ids = [torch.cuda.current_device()] if next(model.parameters()).is_cuda else None
        wrapped: nn.Module = nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    elif backend == "fsdp":
        from torch.distributed.fsdp import fully_shard
        _fsdp_shard_layers(model, fully_shard)
        wrapped = fully_shard(model)
    else:
        wrapped = model
    module = wrapped.module if isinstance(wrapped, nn.parallel.DistributedDataParallel) else model
    return Wrapped(wrapped, module, make_optimizer(wrapped.parameters()), backend, max_grad_norm)


def backward_per_model(loss: torch.Tensor,
                       outputs: Sequence[tuple[Wrapped, Sequence[torch.Tensor | None]]],
                       run_all: Callable[[list[Callable[[], None]]], Any] | None = None) -> None:
    """Backward of a loss that sums terms of several models' outputs, one engine backward per
    model (DeepSpeed reduces a model's gradients in its own engine's backward).

    outputs: (wrapped model, the outputs of its forward the loss uses; None entries skipped).
    One autograd pass through the loss alone gives d loss / d output; each model then runs
    backward((output * grad).sum()), which gives its parameters exactly loss.backward()'s
    gradients. run_all(jobs) runs the models' backwards (a list of no-argument callables; e.g.
    prmfast.rl.pairs.PairRunner.run_all, side by side); default: one after the other.
    """
    tensors = [t for _, ts in outputs for t in ts if t is not None]
    grads = dict(zip(map(id, tensors), torch.autograd.grad(loss, tensors, allow_unused=True)))

    def backward(wrapped, ts):
        terms = [(t * grads[id(t)]).sum() for t in ts
                 if t is not None and grads[id(t)] is not None]
        if terms:
            wrapped.backward(torch.stack(terms).sum())
    jobs = [functools.partial(backward, wrapped, ts) for wrapped, ts in outputs]
    if run_all is None:
        for job in jobs:
            job()
    else:
        run_all(jobs)


@contextlib.contextmanager
def full_parameters(wrapped: Wrapped) -> Iterator[nn.Module]:
    """The plain module with its full parameters, for use outside the engine's forward (HF
    generate, save_pretrained). Under ZeRO-3 they are gathered once and the engine's hooks are
    off meanwhile (deepspeed's unwrap_model_for_generation), so ranks may run different numbers
    of forwards; a collective then: enter it on every rank. Other engines: nothing to do (FSDP is
    not handled here; use full_state_dict)."""
    if wrapped.backend == "deepspeed" and wrapped.model.zero_optimization_stage() == 3:
        from deepspeed.runtime.zero.stage3 import unwrap_model_for_generation
        with unwrap_model_for_generation(wrapped.model):
            yield wrapped.module
    else:
        yield wrapped.module


def full_state_dict(wrapped: Wrapped) -> dict[str, torch.Tensor]:
    """The plain module's full state dict on CPU, gathered from ZeRO-3 / FSDP shards.

    A collective under ZeRO-3 and FSDP: call it on every rank (then save on is_main())."""
    if wrapped.backend == "fsdp":
        from torch.distributed.checkpoint.state_dict import (StateDictOptions,
                                                             get_model_state_dict)
        return get_model_state_dict(wrapped.model, options=StateDictOptions(
            full_state_dict=True, cpu_offload=True))
    with full_parameters(wrapped) as module:
        return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def _fsdp_shard_layers(model: nn.Module, fully_shard) -> None:
    """FSDP2: shard each decoder layer separately (HF models list them as `_no_split_modules`)."""
    no_split = set(getattr(model, "_no_split_modules", None) or [])
    for sub in model.modules():
        if type(sub).__name__ in no_split:
            fully_shard(sub)


def deepspeed_config_path(path: str | os.PathLike) -> Path:
    """A DeepSpeed config path as given, or, when relative and not found from the working
    directory, relative to the repository (so "configs/deepspeed/zero3.json" works anywhere)."""
    path = Path(path)
    if path.is_absolute() or path.exists():
        return path
    return DEEPSPEED_CONFIGS.parent.parent / path


def load_deepspeed_config(path: str | os.PathLike | None = None,
                          overrides: dict[str, Any] | None = None, *,
                          device: torch.device | str | None = None) -> dict[str, Any]:
    """Read a DeepSpeed JSON config (default configs/deepspeed/zero2.json) and apply overrides.

    overrides use dotted keys, e.g. {"bf16.enabled": False, "gradient_clipping": 1.0}.
    On a CPU device (default: cpu unless CUDA is available) bf16/fp16 are switched off before
    the overrides apply (CPU smoke runs).
    """
    path = deepspeed_config_path(path) if path is not None else DEEPSPEED_CONFIGS / "zero2.json"
    config = json.loads(path.read_text())
    on_cuda = (torch.cuda.is_available() if device is None
               else torch.device(device).type == "cuda")
    if not on_cuda:
        for key in ("bf16", "fp16"):
            config.setdefault(key, {})["enabled"] = False
    for dotted, value in (overrides or {}).items():
        node = config
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return config


def _comm_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


DEEPSPEED_CONFIGS = Path(__file__).resolve().parent.parent / "configs" / "deepspeed"
