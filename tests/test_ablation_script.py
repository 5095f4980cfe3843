"""scripts/ablation.py: argument checks, the per-process thread limit of --jobs, and a real
two-seed run of two variants on the smoke preset with seeds in parallel."""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "ablation.py"


def load_script():
    spec = importlib.util.spec_from_file_location("ablation_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_script(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def test_bad_jobs_and_config_typo_exit_2(tmp_path):
    proc = run_script("--jobs", "0", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path))
    assert proc.returncode == 2 and "--jobs" in proc.stderr
    proc = run_script("--preset", "smoke", "--set", "rl.stepz=3", "--runs", str(tmp_path / "r"),
                      "--out", str(tmp_path))
    assert proc.returncode == 2 and "rl.stepz" in proc.stderr
    assert not (tmp_path / "r").exists()


def test_jobs_split_the_cores_among_stage_processes(tmp_path):
    ablation = load_script()
    args = argparse.Namespace(runs=str(tmp_path), jobs=2)
    env = ablation.Runner(args).env
    expected = str(max(1, (os.cpu_count() or 1) // 2))
    assert all(env[k] == expected for k in ablation.THREAD_VARS)
    serial = ablation.Runner(argparse.Namespace(runs=str(tmp_path), jobs=1)).env
    assert all(serial.get(k) == os.environ.get(k) for k in ablation.THREAD_VARS)


@pytest.mark.slow
def test_two_seeds_in_parallel_on_the_smoke_preset(tmp_path):
    out, runs = tmp_path / "results", tmp_path / "runs"
    proc = run_script("--seeds", "2", "--jobs", "2", "--preset", "smoke", "--only", "sft,sparse",
                      "--runs", str(runs), "--out", str(out))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    summary = json.loads((out / "ablation.json").read_text())
    assert sorted(summary["per_seed"]) == ["sft", "sparse"]
    for key in ("sft", "sparse"):
        assert sorted(summary["per_seed"][key]) == ["0", "1"]
        assert 0.0 <= summary["mean"][key]["pass@1"][0] <= 1.0
    assert summary["missing"] == [] and summary["failed_stages"] == {}
    assert (runs / "seed1" / "rl_baseline" / "DONE").exists()
    assert "| SFT | 2 |" in (out / "ablation.md").read_text()
