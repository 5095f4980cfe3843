"""Benchmark helpers: same-run ratios against named baselines, and honest peak-memory figures.

Peak memory is the growth of the process's peak resident set (VmHWM, reset just before the call)
over its resident set just before the call, measured in a fresh subprocess per function, so it
counts every allocation (torch CPU allocator, numba, BLAS workspaces) and nothing from other runs."""
import json
import os
import subprocess
import sys
import time

import pytest
import torch

RESULTS = []


def best_time(fn, rounds):
    """Minimum wall time of `rounds` calls of fn() (after one warm-up)."""
    fn()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def peak_rss_mib(module, factory, *args):
    """Run `module.factory(*args)()` in a fresh interpreter (after one warm-up call) and return
    the peak resident set during the measured call minus the resident set just before it (MiB).
    Linux: the peak (VmHWM) is reset through /proc/self/clear_refs before the call."""
    code = f"""
import json, sys
sys.path.insert(0, {os.path.dirname(__file__)!r})
import {module} as m
fn = m.{factory}(*{args!r})
fn()
def status_kib(key):
    with open('/proc/self/status') as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key))
before = status_kib('VmRSS:')
with open('/proc/self/clear_refs', 'w') as f:
    f.write('5')
fn()
print(json.dumps((status_kib('VmHWM:') - before) / 1024))
"""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def saved_for_backward_mib(build, inputs=()) -> float:
    """MiB of tensor storage autograd holds between forward and backward while `build()` makes
    a graph (backward is not run); storages of `inputs` (which exist anyway) are not counted.
    Deterministic, unlike RSS: it is the memory a loss adds to the activation peak."""
    skip = {t.untyped_storage().data_ptr() for t in inputs if isinstance(t, torch.Tensor)}
    held: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in skip:
            held[storage.data_ptr()] = storage.nbytes()
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        build()
    return sum(held.values()) / 2 ** 20


@pytest.fixture
def report():
    """report(name, **figures): recorded and printed in the terminal summary."""
    def _report(name, **figures):
        RESULTS.append((name, figures))
    return _report


def pytest_terminal_summary(terminalreporter):
    if not RESULTS:
        return
    terminalreporter.section("prmfast kernel ratios (same run)")
    for name, figures in RESULTS:
        text = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                         for k, v in figures.items())
        terminalreporter.write_line(f"{name}: {text}")
