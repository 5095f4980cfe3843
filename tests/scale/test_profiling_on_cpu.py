"""prmfast.profiling on CPU: the chrome trace is written and holds the named ranges."""
import argparse
import json

import torch

from prmfast import profiling


def test_profile_trace_contains_named_ranges_on_cpu(tmp_path):
    profiling.configure(nvtx=True)  # no CUDA here: NVTX stays off, ranges still recorded
    assert not profiling.nvtx_enabled()
    with profiling.profile_trace(tmp_path / "prof"):
        with profiling.nvtx_range("rollout"):
            torch.randn(64, 64) @ torch.randn(64, 64)
        with profiling.nvtx_range("ppo_update"):
            torch.randn(32).sum()
    trace = json.loads((tmp_path / "prof" / "trace_rank0.json").read_text())
    names = {event.get("name") for event in trace["traceEvents"]}
    assert {"rollout", "ppo_update"} <= names


def test_ranges_are_noops_without_a_trace_on_cpu(tmp_path):
    with profiling.profile_trace(None) as prof:
        with profiling.nvtx_range("idle"):
            pass
    assert prof is None
    assert not list(tmp_path.iterdir())


def test_cli_flags_on_cpu():
    parser = argparse.ArgumentParser()
    profiling.add_cli_flags(parser)
    args = parser.parse_args(["--nvtx", "--profile", "out/prof"])
    assert args.nvtx and args.profile == "out/prof"
    assert parser.parse_args([]).profile is None
