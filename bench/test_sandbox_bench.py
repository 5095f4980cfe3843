"""Sandbox throughput on the 164 HumanEval canonical solutions, against the two usual
harness designs, all in the same run with the same number of workers:
  (a) one fresh `python file.py` subprocess per job, from a thread pool;
  (b) one multiprocessing.Process plus a Manager per job (human-eval / LiveCodeBench style).
And the floor of the design, in the same run: an unsandboxed fork server (fork_floor.py).
Also: CPU time per job (all processes; steadier than wall time on a loaded machine), latency
percentiles, scaling from 1 to 2 workers, the cost of each isolation layer, and of seccomp alone
(interleaved).

    pytest bench/test_sandbox_bench.py --benchmark-only -s
"""
from __future__ import annotations

import gzip
import json
import multiprocessing
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from prmfast.sandbox import LAYERS, AssertTests, Job, Sandbox, available_layers

WORKERS = 2
SHARED = Path(os.environ.get("PRMFAST_SHARED", Path(__file__).resolve().parents[2] / "shared"))


@pytest.fixture(scope="module")
def problems():
    path = SHARED / "data" / "humaneval" / "HumanEval.jsonl.gz"
    if not path.exists():
        pytest.skip(f"{path} not found (set PRMFAST_SHARED)")
    with gzip.open(path, "rt") as f:
        return [json.loads(line) for line in f]


def script(p) -> str:
    return f"{p['prompt']}{p['canonical_solution']}\n\n{p['test']}\n\ncheck({p['entry_point']})\n"


def sandbox_jobs(problems):
    return [Job(p["prompt"] + p["canonical_solution"], AssertTests(p["test"], p["entry_point"]))
            for p in problems]


# -- baseline (a): a fresh interpreter per job -------------------------------------------
def subprocess_per_job(problems, workers=WORKERS, timeout=10.0):
    with tempfile.TemporaryDirectory() as tmp:
        def one(i_p):
            i, p = i_p
            path = os.path.join(tmp, f"job{i}.py")
            Path(path).write_text(script(p))
            try:
                done = subprocess.run([sys.executable, path], capture_output=True, timeout=timeout, cwd=tmp)
                return done.returncode == 0
            except subprocess.TimeoutExpired:
                return False
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(one, enumerate(problems)))


# -- baseline (b): a Process and a Manager per job ---------------------------------------
def _unsafe_execute(program: str, result) -> None:
    try:
        exec(program, {"__name__": "__main__"})
        result.append("passed")
    except BaseException as exc:  # noqa: BLE001 - the harness records any failure
        result.append(f"failed: {exc!r}")


def process_and_manager_per_job(problems, workers=WORKERS, timeout=10.0):
    def one(p):
        with multiprocessing.Manager() as manager:
            result = manager.list()
            proc = multiprocessing.Process(target=_unsafe_execute, args=(script(p), result))
            proc.start()
            proc.join(timeout=timeout)
            if proc.is_alive():
                proc.kill()
            return bool(result) and result[0] == "passed"
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, problems))


# -- the design's floor: an unsandboxed fork server (bench/fork_floor.py) ------------------
def unsandboxed_fork_server(problems, workers=WORKERS):
    """(jobs/s, CPU seconds) of a fork per job with no isolation at all, in a fresh interpreter
    as small as the sandbox's server."""
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        json.dump([script(p) for p in problems], f)
        f.flush()
        done = subprocess.run([sys.executable, str(Path(__file__).with_name("fork_floor.py")), f.name,
                               str(workers)], capture_output=True, text=True, check=True)
    out = json.loads(done.stdout)
    assert out["failed"] == 0, done.stdout
    return out["jobs_per_s"], out["cpu_s"]


def timed(fn, *args, **kw):
    start = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - start


def _process_table() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds of it and of its reaped descendants)."""
    table = {}
    tick = os.sysconf("SC_CLK_TCK")
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            fields = Path(f"/proc/{name}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        table[int(name)] = (int(fields[1]), sum(int(x) for x in fields[11:15]) / tick)
    return table


def cpu_seconds(server_pid: int | None = None) -> float:
    """CPU time of this process, its reaped children and (while it runs) the sandbox's fork
    server with every live process under it: the long-lived judges and zygotes, whose own
    reaped children (the untrusted processes) count in their figures."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    if server_pid and server_pid > 0:
        table = _process_table()
        for pid in table:
            ancestor = pid
            while ancestor in table and ancestor != server_pid:
                ancestor = table[ancestor][0]
            if ancestor == server_pid:
                total += table[pid][1]
    return total


def cpu_timed(fn, *args, server_pid=None):
    """(result, CPU seconds) of fn(*args)."""
    before = cpu_seconds(server_pid)
    out = fn(*args)
    return out, cpu_seconds(server_pid) - before


def test_sandbox_vs_baselines(benchmark, problems):
    jobs = sandbox_jobs(problems)
    with Sandbox(workers=WORKERS, timeout_s=10.0) as sb:
        sb.run(jobs[:4])  # start the fork server
        results = benchmark.pedantic(sb.run, args=(jobs,), rounds=3, iterations=1)
        assert all(r.passed for r in results)
        ours = len(jobs) / benchmark.stats.stats.median
        lat = sorted(r.wall_s for r in results)
        _, cpu_ours = cpu_timed(sb.run, jobs, server_pid=sb.server_pid)
    (ok_a, t_a), cpu_a = cpu_timed(timed, subprocess_per_job, problems)
    (ok_b, t_b), cpu_b = cpu_timed(timed, process_and_manager_per_job, problems)
    rate_floor, cpu_floor = unsandboxed_fork_server(problems)
    assert all(ok_a) and all(ok_b)
    rate_a, rate_b = len(jobs) / t_a, len(jobs) / t_b
    q = statistics.quantiles(lat, n=100)
    ms = 1e3 / len(jobs)
    info = {"sandbox_jobs_per_s": round(ours, 1), "subprocess_jobs_per_s": round(rate_a, 1),
            "process_manager_jobs_per_s": round(rate_b, 1), "speedup_vs_subprocess": round(ours / rate_a, 1),
            "speedup_vs_process_manager": round(ours / rate_b, 1),
            "cpu_ms_per_job_sandbox": round(cpu_ours * ms, 1), "cpu_ms_per_job_subprocess": round(cpu_a * ms, 1),
            "cpu_ms_per_job_process_manager": round(cpu_b * ms, 1),
            "unsandboxed_fork_server_jobs_per_s": round(rate_floor, 1),
            "cpu_ms_per_job_unsandboxed_fork_server": round(cpu_floor * ms, 2),
            "floor_speedup_vs_subprocess": round(rate_floor / rate_a, 1),
            "floor_speedup_vs_process_manager": round(rate_floor / rate_b, 1),
            "latency_ms_p50": round(q[49] * 1e3, 1), "latency_ms_p90": round(q[89] * 1e3, 1),
            "latency_ms_p99": round(q[98] * 1e3, 1), "load_average_1min": round(os.getloadavg()[0], 1)}
    benchmark.extra_info.update(info)
    print("\n" + json.dumps(info, indent=1))


def test_sandbox_scaling(benchmark, problems):
    jobs = sandbox_jobs(problems)
    rates = {}
    for workers in (1, 2):
        with Sandbox(workers=workers, timeout_s=10.0) as sb:
            sb.run(jobs[:4])
            _, dt = timed(sb.run, jobs)
            rates[workers] = len(jobs) / dt
    with Sandbox(workers=WORKERS, timeout_s=10.0) as sb:
        sb.run(jobs[:4])
        benchmark.pedantic(sb.run, args=(jobs,), rounds=1, iterations=1)
    info = {f"jobs_per_s_{w}_workers": round(r, 1) for w, r in rates.items()}
    info["scaling_1_to_2"] = round(rates[2] / rates[1], 2)
    benchmark.extra_info.update(info)
    print("\n" + json.dumps(info, indent=1))


def layer_run(layers, jobs) -> dict:
    """jobs/s and CPU ms per job of one batch in a fresh Sandbox with these layers (after a
    warm-up batch that starts its fork server)."""
    with Sandbox(workers=WORKERS, timeout_s=10.0, isolation=layers) as sb:
        sb.run(jobs[:4])
        start = time.perf_counter()
        results, cpu = cpu_timed(sb.run, jobs, server_pid=sb.server_pid)
        dt = time.perf_counter() - start
    assert all(r.passed for r in results), layers
    return {"jobs_per_s": round(len(jobs) / dt, 1),
            "cpu_ms_per_job": round(cpu * 1e3 / len(jobs), 2)}


def test_isolation_layer_cost(benchmark, problems):
    """Throughput and CPU per job with every layer, with none, and with each one left out."""
    jobs = sandbox_jobs(problems)
    full = available_layers()
    configs = {"all": full, "none": ()}
    configs.update({f"without_{layer}": tuple(x for x in full if x != layer) for layer in full})
    rates = {name: layer_run(layers, jobs) for name, layers in configs.items()}
    with Sandbox(workers=WORKERS, timeout_s=10.0) as sb:
        sb.run(jobs[:4])
        benchmark.pedantic(sb.run, args=(jobs,), rounds=1, iterations=1)
    benchmark.extra_info.update({"layers_available": list(full), "all_layers": list(LAYERS), **rates})
    print("\n" + json.dumps(rates, indent=1))


SECCOMP_ROUNDS = 9


def test_seccomp_cost(benchmark, problems):
    """The seccomp layer's cost: every available layer against the same without seccomp, one
    fresh Sandbox each, interleaved SECCOMP_ROUNDS times (the order swapped every round, so a
    drift in the machine's load hits both alike); every sample, medians, and the medians of
    each round's ratio (jobs/s) and difference (CPU ms per job)."""
    full = available_layers()
    if "seccomp" not in full:
        pytest.skip("no seccomp layer on this machine")
    jobs = sandbox_jobs(problems)
    configs = [("with_seccomp", full),
               ("without_seccomp", tuple(x for x in full if x != "seccomp"))]

    def interleaved():
        samples = {name: [] for name, _ in configs}
        for k in range(SECCOMP_ROUNDS):
            for name, layers in configs[::1 if k % 2 == 0 else -1]:
                samples[name].append(layer_run(layers, jobs))
        return samples
    samples = benchmark.pedantic(interleaved, rounds=1, iterations=1)
    info = {"load_average_1min": round(os.getloadavg()[0], 1)}
    for name, runs in samples.items():
        for key in ("jobs_per_s", "cpu_ms_per_job"):
            info[f"{name}_{key}_median"] = statistics.median(run[key] for run in runs)
            info[f"{name}_{key}"] = [run[key] for run in runs]
    # each round's two runs ran back to back: their ratio is steadier than one of medians
    pairs = list(zip(samples["with_seccomp"], samples["without_seccomp"]))
    info["jobs_per_s_ratio_per_round"] = [round(a["jobs_per_s"] / b["jobs_per_s"], 3)
                                          for a, b in pairs]
    info["jobs_per_s_ratio_median"] = statistics.median(info["jobs_per_s_ratio_per_round"])
    info["cpu_ms_per_job_added_median"] = round(statistics.median(
        a["cpu_ms_per_job"] - b["cpu_ms_per_job"] for a, b in pairs), 2)
    benchmark.extra_info.update(info)
    print("\n" + json.dumps(info, indent=1))
