"""prmfast.profiling on CPU: bounded, compressed trace windows per stage hold the named ranges."""
import argparse
import gzip
import json

import pytest
import torch

from prmfast import profiling


def _names(path):
    with gzip.open(path, "rt") as f:
        return [event.get("name") for event in json.load(f)["traceEvents"]]


def _iteration(i):
    with profiling.nvtx_range(f"part_{i}"):
        torch.randn(16, 16) @ torch.randn(16, 16)
    profiling.step()


def test_a_window_of_iterations_per_stage_on_cpu(tmp_path):
    profiling.configure(nvtx=True)  # no CUDA here: NVTX stays off, ranges still recorded
    assert not profiling.nvtx_enabled()
    with profiling.profile_trace(tmp_path / "prof", skip=1, steps=2) as written:
        with profiling.nvtx_range("rl_baseline"):
            for i in range(6):
                _iteration(i)
        with profiling.nvtx_range("sft"):               # marks no iteration: nothing recorded
            torch.randn(8).sum()
        with profiling.nvtx_range("rl_prm"):            # ends inside its window: saved as is
            for i in range(2):
                _iteration(10 + i)
    files = sorted(p.name for p in (tmp_path / "prof").iterdir())
    assert files == ["trace_rank0_rl_baseline.json.gz", "trace_rank0_rl_prm.json.gz"]
    assert sorted(p.name for p in written) == files
    names = _names(tmp_path / "prof" / "trace_rank0_rl_baseline.json.gz")
    assert {"part_1", "part_2"} <= set(names)           # iterations 2 and 3 only
    assert not {"part_0", "part_3", "part_4", "part_5"} & set(names)
    names = _names(tmp_path / "prof" / "trace_rank0_rl_prm.json.gz")
    assert "part_11" in names and "part_10" not in names


def test_iterations_outside_any_range_are_the_run_stage_on_cpu(tmp_path):
    with profiling.profile_trace(tmp_path, skip=1, steps=1):
        for i in range(3):
            _iteration(i)
    assert [p.name for p in tmp_path.iterdir()] == ["trace_rank0_run.json.gz"]
    names = _names(tmp_path / "trace_rank0_run.json.gz")
    assert "part_1" in names and not {"part_0", "part_2"} & set(names)


def test_ranges_are_noops_without_a_trace_on_cpu(tmp_path):
    with profiling.profile_trace(None) as prof:
        with profiling.nvtx_range("idle"):
            profiling.step()
    assert prof is None
    assert not list(tmp_path.iterdir())


def test_bad_windows_are_refused_on_cpu(tmp_path):
    with pytest.raises(ValueError, match="steps >= 1"):
        with profiling.profile_trace(tmp_path, steps=0):
            pass
    with pytest.raises(ValueError, match="skip >= 1"):
        profiling.set_window(skip=0)
    with pytest.raises(RuntimeError, match="already"):
        with profiling.profile_trace(tmp_path), profiling.profile_trace(tmp_path):
            pass


def test_cli_flags_on_cpu(tmp_path):
    parser = argparse.ArgumentParser()
    profiling.add_cli_flags(parser)
    args = parser.parse_args(["--nvtx", "--profile", "out/prof", "--profile-steps", "2",
                              "--profile-skip", "2"])
    assert args.nvtx and args.profile == "out/prof" and args.profile_steps == 2
    try:
        with profiling.profile_trace(tmp_path) as written:   # the flags set the window
            for i in range(5):
                _iteration(i)
        names = set(_names(written[0]))
        assert {"part_2", "part_3"} <= names and not {"part_1", "part_4"} & names
    finally:
        profiling.set_window(skip=profiling.PROFILE_SKIP, steps=profiling.PROFILE_STEPS)
    assert parser.parse_args([]).profile is None
    with pytest.raises(SystemExit):
        parser.parse_args(["--profile-skip", "0"])
