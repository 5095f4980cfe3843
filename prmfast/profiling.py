"""Profiling hooks: NVTX ranges for `nsys profile` and a torch profiler chrome trace.

    configure(nvtx=args.nvtx)                  # once, from the CLI flags
    with nvtx_range("rollout"):                # around each stage of an RL step
        ...
    with profile_trace(args.profile):          # DIR or None; writes DIR/trace_rank<r>.json
        run()

`nvtx_range` pushes a torch.cuda.nvtx range when CUDA is available and NVTX is on, and always
opens a `torch.profiler.record_function` range while a `profile_trace` is active, so the same
names show in nsys timelines and in the chrome trace. With neither on it costs one flag check.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

import torch

_state = {"nvtx": False, "profiling": False}


def configure(*, nvtx: bool) -> None:
    """Turn NVTX ranges on or off (on only takes effect where CUDA is available)."""
    _state["nvtx"] = bool(nvtx) and torch.cuda.is_available()


def nvtx_enabled() -> bool:
    return _state["nvtx"]


@contextlib.contextmanager
def nvtx_range(name: str) -> Iterator[None]:
    """A named range: NVTX (if configured) and a profiler range (if a trace is being recorded)."""
    with contextlib.ExitStack() as stack:
        if _state["nvtx"]:
            torch.cuda.nvtx.range_push(name)
            stack.callback(torch.cuda.nvtx.range_pop)
        if _state["profiling"]:
            stack.enter_context(torch.profiler.record_function(name))
        yield


@contextlib.contextmanager
def profile_trace(out_dir: str | os.PathLike | None, *, record_shapes: bool = False,
                  profile_memory: bool = False) -> Iterator[torch.profiler.profile | None]:
    """Record a torch profiler trace of the block into out_dir/trace_rank<rank>.json.

    out_dir None: a no-op (yields None). CPU activity always, CUDA activity when available.
    Open the file in chrome://tracing or https://ui.perfetto.dev.
    """
    if out_dir is None:
        yield None
        return
    path = Path(out_dir)
    path.mkdir(parents=True, exist_ok=True)
    activities = [torch.profiler.ProfilerActivity.CPU]
    if torch.cuda.is_available():
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    rank = int(os.environ.get("RANK", "0"))
    prof = torch.profiler.profile(activities=activities, record_shapes=record_shapes,
                                  profile_memory=profile_memory)
    _state["profiling"] = True
    try:
        with prof:
            yield prof
    finally:
        _state["profiling"] = False
    prof.export_chrome_trace(str(path / f"trace_rank{rank}.json"))


def add_cli_flags(parser) -> None:
    """Add `--nvtx` and `--profile DIR` to an argparse parser (train / RL CLIs)."""
    group = parser.add_argument_group("profiling")
    group.add_argument("--nvtx", action="store_true",
                       help="NVTX ranges around each stage (for `nsys profile`; CUDA only)")
    group.add_argument("--profile", metavar="DIR", default=None,
                       help="write a torch profiler chrome trace to DIR/trace_rank<r>.json")
