"""The paper's Table 1 on the synthetic suite: every RL variant for N seeds, plus the hack runs.

    .venv/bin/python scripts/ablation.py                       # 3 seeds, preset "ablation"
    .venv/bin/python scripts/ablation.py --seeds 5 --preset default --set rl.steps=60
    .venv/bin/python scripts/ablation.py --seeds 3 --preset default --jobs 2   # 2 seeds at once

Per seed s the stages run through `python -m prmfast.train` (one subprocess per stage) in
RUNS/seed<s>/, sharing what the method allows: one SFT, one RL baseline (which is also the
"RL sparse" variant and the checkpoint source of PRM data collection), one collect, one PRM; then
one RL run per variant. The no-neutral-comments hack needs a PRM trained without neutral comment
labels, so it runs in RUNS/seed<s>_nocomment/, which links sft, tokenizer, rl_baseline and
prm_data from RUNS/seed<s>/ and trains its own PRM.

Every stage skips itself when done and every evaluation is cached, so rerunning the same command
resumes. A failing stage is recorded and the variants that depend on it are reported missing.

--jobs N runs the stages of up to N seeds at once, each stage process limited to
cpu_count // N threads (OMP_NUM_THREADS and friends): without that limit two torch processes on
the same cores spin-wait on each other, and an RL iteration here took 20-64 s instead of 4-5 s.

Writes OUT/ (default results/; results/paper for --preset paper): ablation.json (per seed and
mean/std per variant, per horizon bucket, per length bucket, best-of-K, hack metrics),
per_task.jsonl (one row per seed, variant and test task: n samples, c correct), summary.json
(paired comparisons with bootstrap intervals over tasks, per seed and pooled, the PRM's
within-task AUC per seed, and which of the paper's claims hold: prmfast/table1.py),
ablation.md (the tables, the claims, the command and the accumulated wall time) and PNG plots.

    .venv/bin/python scripts/ablation.py --preset paper --seeds 3 --only sft,sparse,partial,valueinit,dense,both,oracle
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from prmfast.config import ConfigError, load_config  # noqa: E402
from prmfast.eval.stage import Evaluator  # noqa: E402
from prmfast.report import HORIZONS, plot_best_of_k, plot_pass_by_horizon  # noqa: E402
from prmfast.runio import read_metrics, write_json, write_jsonl  # noqa: E402
from prmfast.rl.stage import check_rl_config, variant_name  # noqa: E402
from prmfast.table1 import per_task_rows, table  # noqa: E402

BOTH = {"rl.reward": "dense", "rl.critic_init": "prm"}
# key, label, rl.* overrides (None: no RL run), run folder suffix ("" main, "_nocomment")
VARIANTS = [
    ("sft", "SFT", None, ""),
    ("sparse", "RL sparse (baseline)", {"rl.reward": "sparse", "rl.critic_init": "policy"}, ""),
    ("partial", "RL partial credit", {"rl.reward": "partial", "rl.critic_init": "policy"}, ""),
    ("valueinit", "RL + ValueInit", {"rl.reward": "sparse", "rl.critic_init": "prm"}, ""),
    ("dense", "RL + DenseReward", {"rl.reward": "dense", "rl.critic_init": "policy"}, ""),
    ("both", "RL + both", BOTH, ""),
    ("oracle", "RL + oracle dense", {"rl.reward": "oracle", "rl.critic_init": "policy"}, ""),
    ("hack_no_1_over_T", "hack: both without 1/T", {**BOTH, "rl.normalize_by_lines": False}, ""),
    ("hack_no_neutral_comments", "hack: both without neutral comments",
     {**BOTH, "rl.neutral_comments": False, "prm.neutral_comments": False}, "_nocomment"),
]
SHARED_LINKS = ("tokenizer", "sft", "rl_baseline", "prm_data")
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


def cli_sets(overrides: dict) -> list[str]:
    return [f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in overrides.items()]


class Runner:
    """Runs `python -m prmfast.train` stages, logging each to RUNS/logs/, remembering failures."""

    def __init__(self, args):
        self.args = args
        self.failed: dict[str, str] = {}
        (Path(args.runs) / "logs").mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, "TQDM_DISABLE": "1"}
        if args.jobs > 1:
            threads = str(max(1, (os.cpu_count() or 1) // args.jobs))
            self.env.update({k: threads for k in THREAD_VARS})

    def stage(self, run_dir: Path, stage: str, seed: int, overrides: dict | None = None) -> bool:
        sets = [f"seed={seed}", *self.args.set, *cli_sets(overrides or {})]
        cmd = [sys.executable, "-m", "prmfast.train", stage, "--preset", self.args.preset,
               "--out", str(run_dir)] + [a for s in sets for a in ("--set", s)]
        key = f"{run_dir.name}/{stage}" + (f"[{','.join(cli_sets(overrides))}]" if overrides else "")
        log = Path(self.args.runs) / "logs" / (
            "".join(c if c.isalnum() or c in "._=-" else "_" for c in key) + ".log")
        print(f"[ablation] {key}", flush=True)
        start = time.perf_counter()
        with log.open("a") as f:
            f.write(f"$ {shlex.join(cmd)}\n")
            f.flush()
            rc = subprocess.call(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, env=self.env)
        print(f"[ablation]   {'ok' if rc == 0 else f'FAILED rc={rc} (see {log})'} "
              f"in {time.perf_counter() - start:.0f}s", flush=True)
        if rc != 0:
            self.failed[key] = str(log)
        return rc == 0


def variant_dir(args, seed: int, key: str) -> Path:
    """The stage folder holding the final model of a variant for a seed."""
    _, _, overrides, suffix = next(v for v in VARIANTS if v[0] == key)
    if overrides is None:
        return Path(args.runs) / f"seed{seed}" / "sft"
    cfg = load_config(args.preset, sets=[*args.set, *cli_sets(rl_overrides(overrides))])
    return Path(args.runs) / f"seed{seed}{suffix}" / f"rl_{variant_name(cfg.rl)}"


def rl_overrides(overrides: dict) -> dict:
    return {k: v for k, v in overrides.items() if k.startswith("rl.")}


def run_seed(runner: Runner, seed: int, variants: list[tuple]) -> None:
    """All stages of one seed, in dependency order; failures are recorded by the runner."""
    main_dir = Path(runner.args.runs) / f"seed{seed}"
    if not runner.stage(main_dir, "sft", seed):
        return
    if not runner.stage(main_dir, "rl", seed, VARIANTS[1][2]):
        return
    have_prm = runner.stage(main_dir, "collect", seed) and runner.stage(main_dir, "prm", seed)
    for key, _, overrides, suffix in variants:
        if overrides is None:
            continue
        cfg = load_config(runner.args.preset, sets=[*runner.args.set,
                                                    *cli_sets(rl_overrides(overrides))])
        if (cfg.rl.reward == "dense" or cfg.rl.critic_init == "prm") and not have_prm:
            continue
        run_dir = Path(str(main_dir) + suffix)
        if suffix:
            run_dir.mkdir(parents=True, exist_ok=True)
            for name in SHARED_LINKS:
                if not (run_dir / name).exists():
                    (run_dir / name).symlink_to((main_dir / name).resolve())
            prm_sets = {k: v for k, v in overrides.items() if k.startswith("prm.")}
            if not runner.stage(run_dir, "prm", seed, prm_sets):
                continue
        runner.stage(run_dir, "rl", seed, rl_overrides(overrides))


def mean_std(xs: list[float]) -> tuple[float, float]:
    xs = [x for x in xs if x is not None and not math.isnan(x)]
    if not xs:
        return float("nan"), float("nan")
    m = sum(xs) / len(xs)
    return m, (math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0)


def hack_metrics(stage_dir: Path) -> dict:
    """Final-quarter means of the hack metrics of an RL run (empty for SFT)."""
    rows = read_metrics(stage_dir)
    if not rows:
        return {}
    tail = rows[-max(1, len(rows) // 4):]
    return {k: sum(r[k] for r in tail) / len(tail)
            for k in ("lines_per_response", "comment_share", "line_reward", "response_tokens")}


def aggregate(per_seed: dict[str, dict[int, dict]]) -> dict:
    """Mean and std over seeds of every number the tables show."""
    out = {}
    for key, seeds in per_seed.items():
        rs = list(seeds.values())
        entry = {"n_seeds": len(rs), "pass@1": mean_std([r["pass@1"] for r in rs])}
        entry["by_horizon"] = {h: mean_std([r["by_horizon"].get(h) for r in rs]) for h in HORIZONS}
        lengths = sorted({k for r in rs for k in r["by_length"]})
        entry["by_length"] = {k: mean_std([r["by_length"].get(k) for r in rs]) for k in lengths}
        ks = sorted({k for r in rs for k in r["best_of_k"]}, key=int)
        entry["best_of_k"] = {k: mean_std([r["best_of_k"].get(k) for r in rs]) for k in ks}
        hacks = sorted({k for r in rs for k in r.get("hack", {})})
        entry["hack"] = {k: mean_std([r["hack"].get(k) for r in rs]) for k in hacks}
        out[key] = entry
    return out


def _ms(pair) -> str:
    m, s = pair
    return "-" if math.isnan(m) else f"{m:.3f} ± {s:.3f}"


def markdown(summary: dict, labels: dict[str, str], info: dict) -> str:
    agg = summary["mean"]
    lengths = sorted({k for e in agg.values() for k in e["by_length"]})
    head = ["variant", "seeds", "pass@1", *HORIZONS, *(f"len {k}" for k in lengths),
            "best-of-K (max)"]
    lines = ["# Ablation: the paper's Table 1 on the synthetic suite", "",
             f"Command: `{info['command']}`  ", f"Preset: `{info['preset']}`, seeds "
             f"{info['seeds']}, extra settings {info['sets'] or 'none'}  ",
             f"Wall time (all invocations): {info['wall_s'] / 60:.1f} min on {info['machine']}",
             "", "pass@1 (mean ± std over seeds; test split):", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, e in agg.items():
        kmax = max(e["best_of_k"], key=int) if e["best_of_k"] else None
        cells = [labels[key], str(e["n_seeds"]), _ms(e["pass@1"])]
        cells += [_ms(e["by_horizon"][h]) for h in HORIZONS]
        cells += [_ms(e["by_length"].get(k, (float("nan"),) * 2)) for k in lengths]
        cells.append(f"{_ms(e['best_of_k'][kmax])} (K={kmax})" if kmax else "-")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Hack metrics (mean of the last quarter of RL iterations):", "",
              "| variant | lines/response | comment share | line reward | response tokens |",
              "|---|---|---|---|---|"]
    for key, e in agg.items():
        h = e["hack"]
        if h:
            lines.append(f"| {labels[key]} | " + " | ".join(
                _ms(h.get(k, (float("nan"),) * 2)) for k in
                ("lines_per_response", "comment_share", "line_reward", "response_tokens")) + " |")
    if summary["missing"]:
        lines += ["", "Missing (failed or not run): " + ", ".join(summary["missing"])]
    lines += ["", "![pass@1 by horizon](pass_by_horizon.png)", "",
              "![best-of-K](best_of_k.png)", "", "![hack metrics](hacks.png)", ""]
    return "\n".join(lines)


def claims_markdown(table1: dict) -> str:
    """The paired comparisons and the claims of summary.json as markdown."""
    def fmt(ci):
        return "-" if ci is None else f"{ci['mean']:+.3f} [{ci['low']:+.3f}, {ci['high']:+.3f}]"
    lines = ["## Paired comparisons (per-task differences, 95 % bootstrap interval over tasks)",
             "", "| A - B | tasks | pooled over seeds | per seed |", "|---|---|---|---|"]
    for name, c in table1["comparisons"].items():
        if c is not None:
            pair, tasks = name.split(":")
            per_seed = "; ".join(f"{s}: {fmt(ci)}" for s, ci in c["per_seed"].items())
            lines.append(f"| {pair} | {tasks} | {fmt(c['pooled'])} | {per_seed} |")
    lines += ["", "## Which claims hold on this run", ""]
    for claim in table1["claims"]:
        verdict = {True: "holds", False: "does not hold", None: "not measured"}[claim["holds"]]
        lines.append(f"- **{verdict}**: {claim['claim']} ({claim['why']})")
    share = table1["oracle_share_long"]
    lines += ["", "Share of the oracle's long-horizon gain over sparse that RL + both captures: "
              + ("- (not measured, or the oracle gained nothing)" if share is None
                 else f"{share:.2f}"), ""]
    return "\n".join(lines)


def plots(out: Path, summary: dict, labels: dict[str, str], curves: dict[str, list[list[dict]]]):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    agg = summary["mean"]
    plot_pass_by_horizon(out / "pass_by_horizon.png",
                         {labels[k]: [e["by_horizon"][h][0] for h in HORIZONS] for k, e in agg.items()},
                         {labels[k]: [e["by_horizon"][h][1] for h in HORIZONS] for k, e in agg.items()})
    plot_best_of_k(out / "best_of_k.png", {labels[k]: {int(K): v[0] for K, v in e["best_of_k"].items()}
                                            for k, e in agg.items() if e["best_of_k"]})
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for ax, metric in zip(axes, ("lines_per_response", "comment_share")):
        for key, runs in curves.items():
            steps = min((len(r) for r in runs), default=0)
            if steps:
                ax.plot(range(1, steps + 1),
                        [sum(r[i][metric] for r in runs) / len(runs) for i in range(steps)],
                        label=labels[key])
        ax.set_title(metric.replace("_", " "))
        ax.set_xlabel("RL iteration")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "hacks.png", dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--preset", default="ablation")
    parser.add_argument("--runs", default=str(ROOT / "runs" / "ablation"),
                        help="folder of the per-seed run folders (default runs/ablation)")
    parser.add_argument("--out", default=None,
                        help="results folder (default results/, results/paper for --preset paper)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override for every stage (repeatable)")
    parser.add_argument("--only", default=None,
                        help="comma-separated variant keys (default: all): "
                             + ",".join(v[0] for v in VARIANTS))
    parser.add_argument("--jobs", type=int, default=1,
                        help="seeds whose stages run at the same time (threads split among them)")
    parser.add_argument("--report-only", action="store_true",
                        help="only (re)build the results from what has finished")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        print(f"--jobs must be >= 1, got {args.jobs}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    try:
        cfg = load_config(args.preset, sets=args.set)
        check_rl_config(cfg)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    if args.out is None:
        args.out = str(ROOT / "results" / ("paper" if args.preset == "paper" else ""))
    variants = [v for v in VARIANTS if args.only is None or v[0] in args.only.split(",")]
    labels = {v[0]: v[1] for v in VARIANTS}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runner = Runner(args)
    per_seed: dict[str, dict[int, dict]] = {v[0]: {} for v in variants}
    curves: dict[str, list[list[dict]]] = {}
    rows: list[dict] = []
    if not args.report_only:
        with ThreadPoolExecutor(args.jobs) as pool:
            list(pool.map(lambda seed: run_seed(runner, seed, variants), range(args.seeds)))
    for seed in range(args.seeds):
        found = {key: variant_dir(args, seed, key) for key in per_seed}
        found = {k: p for k, p in found.items() if (p / "DONE").exists()}
        if not found:
            continue
        evaluator = Evaluator(load_config(args.preset, sets=[f"seed={seed}", *args.set]))
        cache = Path(args.runs) / f"seed{seed}" / "ablation_eval"
        cache.mkdir(parents=True, exist_ok=True)
        for key, stage_dir in found.items():
            entry = evaluator.evaluate(stage_dir / "model", cache / f"{key}.json", progress=False)
            per_seed[key][seed] = {**entry, "hack": hack_metrics(stage_dir)}
            rows += per_task_rows(seed, key, json.loads((cache / f"{key}.json").read_text())["raw"])
            if per_seed[key][seed]["hack"]:
                curves.setdefault(key, []).append(read_metrics(stage_dir))
    missing = [f"{k}/seed{s}" for k in per_seed for s in range(args.seeds) if s not in per_seed[k]]
    per_seed = {k: v for k, v in per_seed.items() if v}
    timing_file = out / "ablation_timing.json"
    timing = json.loads(timing_file.read_text()) if timing_file.exists() else {"runs": []}
    command = shlex.join(["python", "scripts/ablation.py", *(argv if argv is not None else sys.argv[1:])])
    timing["runs"].append({"command": command, "wall_s": round(time.perf_counter() - started, 1),
                           "date": time.strftime("%Y-%m-%d %H:%M:%S")})
    timing_file.write_text(json.dumps(timing, indent=1))
    info = {"command": command, "preset": args.preset, "seeds": args.seeds, "sets": args.set,
            "wall_s": sum(r["wall_s"] for r in timing["runs"]),
            "machine": f"{os.cpu_count()} CPU cores, {sys.platform}"}
    summary = {"info": info, "per_seed": per_seed, "mean": aggregate(per_seed),
               "missing": missing, "failed_stages": runner.failed}
    (out / "ablation.json").write_text(json.dumps(summary, indent=1))
    prm = {seed: json.loads(f.read_text()) for seed in range(args.seeds)
           if (f := Path(args.runs) / f"seed{seed}" / "prm" / "eval.json").exists()}
    table1 = {"info": info, **table(rows, prm)}
    write_jsonl(out / "per_task.jsonl", rows)
    write_json(out / "summary.json", table1, indent=1)
    if per_seed:
        plots(out, summary, labels, curves)
    (out / "ablation.md").write_text(markdown(summary, labels, info) + claims_markdown(table1))
    print(f"[ablation] wrote {out / 'ablation.md'}; missing: {len(missing)}; "
          f"failed stages: {len(runner.failed)}")
    return 0 if not runner.failed else 1


if __name__ == "__main__":
    sys.exit(main())
