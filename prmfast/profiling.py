"""Profiling hooks: NVTX ranges for `nsys profile` and bounded torch profiler traces.

    configure(nvtx=args.nvtx)                  # once, from the CLI flags
    with profile_trace(args.profile):          # DIR or None
        with nvtx_range("rl_baseline"):        # the outermost range names a stage
            for ...:
                with nvtx_range("update"):     # around each part of an iteration
                    ...
                step()                         # an iteration of the stage ended

`nvtx_range` pushes a torch.cuda.nvtx range when CUDA is available and NVTX is on, and opens a
`torch.profiler.record_function` range while a `profile_trace` is active, so the same names show
in nsys timelines and in the trace. With neither on it costs one flag check.

A trace is a window, not the whole run: per stage (the outermost `nvtx_range` open when an
iteration ends, or "run" for iterations outside any range) the first `skip` iterations (>= 1:
numba compilation, allocator warm-up; the last of them warms the profiler up when skip >= 2)
are passed over, the next `steps` are recorded, and the stage's trace is written when they end
or when the stage ends, to DIR/trace_rank<r>_<stage>.json.gz (gzip: ui.perfetto.dev and
TensorBoard open it). Iterations are marked by `step()` (the RL trainer calls it after each
iteration); a stage that marks none records nothing. Defaults: PROFILE_SKIP, PROFILE_STEPS
(`--profile-skip`, `--profile-steps`).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import torch

PROFILE_SKIP = 1          # iterations of a stage passed over before its window
PROFILE_STEPS = 2         # iterations of a stage recorded

_state: dict = {"nvtx": False, "trace": None, "window": (PROFILE_SKIP, PROFILE_STEPS)}


def configure(*, nvtx: bool) -> None:
    """Turn NVTX ranges on or off (on only takes effect where CUDA is available)."""
    _state["nvtx"] = bool(nvtx) and torch.cuda.is_available()


def nvtx_enabled() -> bool:
    return _state["nvtx"]


def set_window(*, skip: int | None = None, steps: int | None = None) -> None:
    """The default window of later `profile_trace` calls (None keeps the current value)."""
    old_skip, old_steps = _state["window"]
    _state["window"] = _checked_window(old_skip if skip is None else skip,
                                       old_steps if steps is None else steps)


def _checked_window(skip: int, steps: int) -> tuple[int, int]:
    if skip < 1 or steps < 1:
        raise ValueError(f"profile window: need skip >= 1 and steps >= 1 iterations, got "
                         f"skip={skip}, steps={steps}")
    return skip, steps


@dataclass
class _Trace:
    """The recording state of one profile_trace: the output folder, the window, the stack of
    open range names, and the current stage's name and profiler (None between stages)."""
    out_dir: Path
    skip: int
    steps: int
    ranges: list[str] = field(default_factory=list)
    stage_name: str | None = None
    stage: torch.profiler.profile | None = None
    written: list[Path] = field(default_factory=list)

    def step(self) -> None:
        """An iteration ended: the first of a new stage starts its profiler, whose schedule
        passes over the stage's next skip - 1 iterations and records `steps`."""
        name = self.ranges[0] if self.ranges else "run"
        if name == self.stage_name:
            self.stage.step()
            return
        self.close_stage()
        activities = [torch.profiler.ProfilerActivity.CPU]
        if torch.cuda.is_available():
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        path = self.out_dir / f"trace_rank{os.environ.get('RANK', '0')}_{_file_part(name)}.json.gz"

        def save(prof):
            prof.export_chrome_trace(str(path))
            self.written.append(path)
        with warnings.catch_warnings():         # skip == 1 leaves no iteration to warm up on
            warnings.filterwarnings("ignore", "Profiler won't be using warmup")
            schedule = torch.profiler.schedule(wait=max(self.skip - 2, 0),
                                               warmup=min(self.skip - 1, 1),
                                               active=self.steps, repeat=1)
            self.stage_name = name
            self.stage = torch.profiler.profile(activities=activities, schedule=schedule,
                                                on_trace_ready=save)
            self.stage.start()

    def end_stage(self, name: str) -> None:
        """The outermost range `name` closed: close the stage its iterations opened."""
        if self.stage_name == name:
            self.close_stage()

    def close_stage(self) -> None:
        """Stop the current stage's profiler (a window cut short by the stage's end is saved)."""
        if self.stage is not None:
            stage, self.stage, self.stage_name = self.stage, None, None
            stage.stop()


def _file_part(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "stage"


@contextlib.contextmanager
def nvtx_range(name: str) -> Iterator[None]:
    """A named range: NVTX (if configured) and a profiler range (while a trace records). An
    outermost range inside profile_trace is a stage for the iterations that end in it."""
    trace: _Trace | None = _state["trace"]
    with contextlib.ExitStack() as stack:
        if _state["nvtx"]:
            torch.cuda.nvtx.range_push(name)
            stack.callback(torch.cuda.nvtx.range_pop)
        if trace is not None:
            if not trace.ranges:
                stack.callback(trace.end_stage, name)
            trace.ranges.append(name)
            stack.callback(trace.ranges.pop)
            stack.enter_context(torch.profiler.record_function(name))
        yield


def step() -> None:
    """Mark the end of an iteration of the current stage (no-op unless a trace records)."""
    if _state["trace"] is not None:
        _state["trace"].step()


@contextlib.contextmanager
def profile_trace(out_dir: str | os.PathLike | None, *, skip: int | None = None,
                  steps: int | None = None) -> Iterator[list[Path] | None]:
    """Record bounded trace windows (see the module docstring) into out_dir while the block
    runs; yields the list of the trace files written (filled as they are). skip / steps default
    to the window set by `set_window` (PROFILE_SKIP / PROFILE_STEPS). out_dir None: a no-op
    (yields None). CPU activity always, CUDA activity when available."""
    if out_dir is None:
        yield None
        return
    if _state["trace"] is not None:
        raise RuntimeError("profile_trace: a trace is already being recorded")
    default_skip, default_steps = _state["window"]
    skip, steps = _checked_window(default_skip if skip is None else skip,
                                  default_steps if steps is None else steps)
    path = Path(out_dir)
    path.mkdir(parents=True, exist_ok=True)
    trace = _Trace(path, skip, steps)
    _state["trace"] = trace
    try:
        yield trace.written
    finally:
        trace.close_stage()
        _state["trace"] = None


class _WindowFlag(argparse.Action):
    """--profile-skip / --profile-steps: stored, and made the default window of profile_trace."""

    def __call__(self, parser, namespace, values, option_string=None):
        try:
            set_window(**{self.dest.removeprefix("profile_"): values})
        except ValueError as exc:
            parser.error(f"{option_string}: {exc}")
        setattr(namespace, self.dest, values)


def add_cli_flags(parser) -> None:
    """Add `--nvtx`, `--profile DIR`, `--profile-skip N` and `--profile-steps N` to an argparse
    parser (train / RL CLIs)."""
    group = parser.add_argument_group("profiling")
    group.add_argument("--nvtx", action="store_true",
                       help="NVTX ranges around each stage (for `nsys profile`; CUDA only)")
    group.add_argument("--profile", metavar="DIR", default=None,
                       help="write torch profiler traces of a few iterations per stage to "
                            "DIR/trace_rank<r>_<stage>.json.gz")
    group.add_argument("--profile-skip", type=int, metavar="N", default=PROFILE_SKIP,
                       action=_WindowFlag,
                       help=f"iterations of each stage before its trace window "
                            f"(default {PROFILE_SKIP})")
    group.add_argument("--profile-steps", type=int, metavar="N", default=PROFILE_STEPS,
                       action=_WindowFlag,
                       help=f"iterations recorded per stage (default {PROFILE_STEPS})")
