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
    # per_task.jsonl: one row per seed, variant and test task, in the committed schema
    from prmfast.table1 import check_rows
    rows = check_rows(json.loads(line) for line in (out / "per_task.jsonl").read_text().splitlines())
    assert len(rows) == 2 * 2 * 8                   # smoke: eval.max_tasks = 8
    assert {(r["seed"], r["variant"]) for r in rows} == {(s, v) for s in (0, 1)
                                                         for v in ("sft", "sparse")}
    table1 = json.loads((out / "summary.json").read_text())
    sparse = table1["comparisons"]["sparse-sft:all"]
    assert sorted(sparse["per_seed"]) == ["0", "1"] and sparse["pooled"]["n"] == 8
    claims = {c["claim"].split(".")[0]: c["holds"] for c in table1["claims"]}
    assert claims["1"] is None and claims["5"] is False and claims["1b"] in (True, False)
    assert "## Which claims hold on this run" in (out / "ablation.md").read_text()
