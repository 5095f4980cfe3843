"""The last stage of `python -m prmfast.train`: the report of a run (the eval stage before it,
prmfast.eval.stage, writes the DIR/eval.json it reads).

    write_report(DIR)     DIR/report.md with tables and DIR/plots/*.png: pass@1 by horizon per
                          model, best-of-K, RL training curves (reward, pass rate, KL, value
                          loss), hack metrics (lines per response, comment share, line reward),
                          the step-time breakdown
    python -m prmfast.report DIR    progress of a run: stages done, RL steps, ETA; --write:
                                    report.md of whatever the run has so far (a partial report
                                    lists what is missing; the report stage needs eval.json)

eval.json schema: prmfast.eval.stage.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from prmfast.errors import StageError
from prmfast.runio import read_jsonl, read_metrics

HORIZONS = ("short", "medium", "long")
CURVES = (("reward", "reward per response"), ("pass_rate", "pass rate (train)"),
          ("kl", "KL to reference (per response)"), ("vf_loss", "value loss"))
PROBES = (("train_pass@1", "probe pass@1, training tasks"),
          ("validation_pass@1", "probe pass@1, validation tasks"))
HACKS = (("lines_per_response", "lines per response"), ("comment_share", "comment-line share"),
         ("line_reward", "line (PRM) reward per response"),
         ("response_tokens", "response tokens"))
TIME_PARTS = ("generate", "sandbox", "oracle", "lines", "policy_fwd", "ref_fwd", "critic_fwd",
              "prm_fwd", "kernels", "update")


def _fmt(x) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def eval_table(models: dict[str, dict]) -> str:
    """Markdown table: pass@1 overall, per horizon, per length bucket, best-of-max-K."""
    lengths = sorted({k for r in models.values() for k in r.get("by_length", {})})
    head = ["model", "pass@1", *HORIZONS, *(f"len {k}" for k in lengths), "best-of-K (max K)"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in models.items():
        bok = r.get("best_of_k", {})
        kmax = max(bok, key=int) if bok else None
        cells = [name, _fmt(r.get("pass@1"))]
        cells += [_fmt(r.get("by_horizon", {}).get(h)) for h in HORIZONS]
        cells += [_fmt(r.get("by_length", {}).get(k)) for k in lengths]
        cells.append(f"{_fmt(bok[kmax])} (K={kmax})" if kmax else "-")
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def timing_table(runs: dict[str, list[dict]]) -> str:
    """Mean seconds per RL iteration spent in each part, its share, and tokens/s."""
    head = ["run", *TIME_PARTS, "total", "kernels share", "tokens/s"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, metrics in runs.items():
        if not metrics:
            continue
        mean = {k: sum(m.get(f"time_{k}", 0.0) for m in metrics) / len(metrics)
                for k in (*TIME_PARTS, "total")}
        tok_s = sum(m.get("tokens_per_s", 0.0) for m in metrics) / len(metrics)
        share = mean["kernels"] / mean["total"] if mean["total"] else 0.0
        rows.append("| " + " | ".join([name, *(f"{mean[k]:.3f}" for k in TIME_PARTS),
                                        f"{mean['total']:.3f}", f"{100 * share:.3f}%",
                                        f"{tok_s:.0f}"]) + " |")
    return "\n".join(rows)


def _plot_series(path: Path, runs: dict[str, list[dict]], keys) -> bool:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    if not any(runs.values()):
        return False
    cols = 2
    fig, axes = plt.subplots(math.ceil(len(keys) / cols), cols, figsize=(10, 3.2 * math.ceil(len(keys) / cols)))
    for ax, (key, title) in zip(axes.flat, keys):
        for name, metrics in runs.items():
            pts = [(m["step"], m[key]) for m in metrics if key in m]
            if pts:
                ax.plot(*zip(*pts), label=name)
        ax.set_title(title)
        ax.set_xlabel("RL iteration")
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def plot_pass_by_horizon(path: Path, series: dict[str, list[float]],
                         errors: dict[str, list[float]] | None = None) -> None:
    """Grouped bars: pass@1 per horizon bucket (HORIZONS order) per named model; optional
    error bars (e.g. std over seeds)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(max(7, 1.2 * len(series)), 3.8))
    width = 0.8 / max(1, len(series))
    for i, (name, ys) in enumerate(series.items()):
        yerr = errors.get(name) if errors else None
        ax.bar([x + i * width for x in range(len(HORIZONS))], ys, width, yerr=yerr,
               capsize=2, label=name)
    ax.set_xticks([x + width * (len(series) - 1) / 2 for x in range(len(HORIZONS))], HORIZONS)
    ax.set_ylabel("pass@1")
    ax.set_title("pass@1 by horizon bucket")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_best_of_k(path: Path, series: dict[str, dict[int, float]]) -> None:
    """One line per named model: pass rate of the best of K samples against K."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for name, curve in series.items():
        ks = sorted(curve)
        ax.plot(ks, [curve[k] for k in ks], marker=".", label=name)
    ax.set_xlabel("K")
    ax.set_ylabel("pass rate")
    ax.set_title("best-of-K")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _plot_eval(plots: Path, models: dict[str, dict]) -> list[str]:
    plot_pass_by_horizon(plots / "pass_by_horizon.png", {
        name: [r.get("by_horizon", {}).get(h, float("nan")) for h in HORIZONS]
        for name, r in models.items()})
    written = ["pass_by_horizon.png"]
    curves = {name: {int(k): v for k, v in r["best_of_k"].items()}
              for name, r in models.items() if r.get("best_of_k")}
    if curves:
        plot_best_of_k(plots / "best_of_k.png", curves)
        written.append("best_of_k.png")
    return written


def _json_summary(path: Path) -> str | None:
    """Top-level numbers of a stage's JSON file, as 'key: value' pairs (None when absent)."""
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    items = [f"{k}: {_fmt(v) if isinstance(v, float) else v}" for k, v in data.items()
             if isinstance(v, (int, float, str)) and not isinstance(v, bool)]
    return ", ".join(items) if items else None


def prm_section(ev: dict) -> list[str]:
    """Markdown lines on the PRM from DIR/prm/eval.json: line AUC, first-error localisation and
    within-task AUC on held-out collected responses and on fresh test samples, then best-of-N
    reranking with its bootstrap interval."""
    held, test = ev.get("held_out", {}), ev.get("test", {})

    def cell(where: dict, *keys: str) -> str:
        for key in keys:
            where = where.get(key) if isinstance(where, dict) else None
        return _fmt(where)

    def within(where: dict) -> str:
        w = where.get("within_task", {}).get("min", {})
        return f"{_fmt(w.get('auc'))} ({w.get('pairs', 0)} pairs)" if w else "-"

    lines = ["## PRM", "",
             f"Selection `{ev.get('selection')}`, {ev.get('train_responses')} training responses. "
             "Within-task AUC: how often a passing response of a task outscores a failing one "
             "of the same task by its minimum line score (what reranking needs).", "",
             "| | held-out collected responses | test samples |", "|---|---|---|",
             f"| line AUC vs oracle | {cell(held, 'oracle', 'lines', 'auc')} | "
             f"{cell(test, 'oracle', 'lines', 'auc')} |",
             f"| line AUC vs binary-search labels | {cell(held, 'binary_search', 'lines', 'auc')}"
             " | - |",
             f"| first error found exactly (vs oracle) | "
             f"{cell(held, 'oracle', 'first_error', 'accuracy')} | "
             f"{cell(test, 'oracle', 'first_error', 'accuracy')} |",
             f"| within-task AUC | {within(held)} | {within(test)} |", ""]
    rr = test.get("rerank")
    if rr:
        low, high = test.get("rerank_ci95", {}).get("prm_min-random", (None, None))
        lines += [f"Best-of-{rr['n']} reranking on {rr['problems']} test tasks, as pass@1: "
                  f"PRM-min {_fmt(rr['prm_min'])}, PRM-last {_fmt(rr['prm_last'])}, random "
                  f"{_fmt(rr['random'])}, random among distinct responses "
                  f"{_fmt(rr.get('random_distinct'))}, majority vote {_fmt(rr.get('majority'))}, "
                  f"any sample passes {_fmt(rr['oracle'])}. PRM-min minus random, 95 % "
                  f"bootstrap interval: [{_fmt(low)}, {_fmt(high)}].", ""]
    return lines


RUN_COMPARISONS = (("rl_baseline", "sft", "all"), ("rl_prm", "sft", "all"),
                   ("rl_prm", "rl_baseline", "all"), ("rl_prm", "rl_baseline", "long"))


def comparison_section(eval_dir: Path) -> list[str]:
    """RL minus SFT (and RL + PRM minus RL) on the same test tasks, paired, with a bootstrap
    interval over tasks (prmfast.table1.compare), and in plain words which hold on this run;
    empty when the eval stage kept no per-task results."""
    from prmfast.table1 import compare, per_task_rows
    rows = []
    for name in ("sft", "rl_baseline", "rl_prm"):
        path = eval_dir / f"{name}.json"
        raw = json.loads(path.read_text()).get("raw") if path.exists() else None
        if raw and "tasks" in raw:
            rows += per_task_rows(0, name, raw)
    found = [(a, b, t, compare(rows, a, b, t)) for a, b, t in RUN_COMPARISONS]
    found = [(a, b, t, c["pooled"]) for a, b, t, c in found if c and c["pooled"]]
    if not found:
        return []
    lines = ["Paired differences on the same test tasks (pass@1 of A minus B per task, 95 % "
             "bootstrap interval over tasks):", "", "| A - B | tasks | difference | interval | "
             "on this run |", "|---|---|---|---|---|"]
    for a, b, tasks, ci in found:
        verdict = ("A better" if ci["low"] > 0 else "A worse" if ci["high"] < 0
                   else "no difference shown")
        tasks = "all" if tasks == "all" else "long (6+ steps)"
        lines.append(f"| {a} - {b} | {tasks} ({ci['n']}) | {ci['mean']:+.3f} | "
                     f"[{ci['low']:+.3f}, {ci['high']:+.3f}] | {verdict} |")
    return lines + ["", "One run is one seed: an interval that includes 0 shows no difference on "
                    "this run, and the method's claims need several seeds (scripts/ablation.py "
                    "--preset paper, results/README.md).", ""]


def report_sources(run_dir: Path) -> dict[str, bool]:
    """Per stage whose results the report shows, whether the run has them yet."""
    return {"sft": (run_dir / "sft" / "eval.json").exists(),
            "rl_*": any(read_metrics(p) for p in run_dir.glob("rl_*") if p.is_dir()),
            "collect": (run_dir / "prm_data" / "summary.json").exists(),
            "prm": (run_dir / "prm" / "eval.json").exists(),
            "eval": (run_dir / "eval.json").exists()}


def write_report(run_dir: str | Path) -> Path:
    """DIR/report.md and DIR/plots/*.png from whatever the run has produced; the report lists
    what is still missing. StageError when the run has produced nothing to report."""
    run_dir = Path(run_dir)
    sources = report_sources(run_dir)
    if not any(sources.values()):
        raise StageError(f"nothing to report in {run_dir}: no results from any of the stages "
                         f"{', '.join(sources)} (run the sft stage first)")
    plots = run_dir / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    lines = [f"# prmfast run report: {run_dir.name}", ""]
    missing = [name for name, present in sources.items() if not present]
    if missing:
        lines += [f"Partial run: no results yet from the {', '.join(missing)} stage(s).", ""]
    eval_path = run_dir / "eval.json"
    if eval_path.exists():
        ev = json.loads(eval_path.read_text())
        s = ev.get("settings", {})
        lines += ["## Evaluation (test split)", "",
                  f"pass@1 at temperature {s.get('temperature')} with {s.get('samples')} samples "
                  f"per task; horizon buckets short 1-3, medium 4-5, long 6+; response-length "
                  f"buckets split at {s.get('length_threshold')} tokens.", "",
                  eval_table(ev["models"]), ""]
        lines += [f"![{p}](plots/{p})" for p in _plot_eval(plots, ev["models"])] + [""]
        lines += comparison_section(run_dir / "eval")
    runs = {p.name: read_metrics(p) for p in sorted(run_dir.glob("rl_*")) if p.is_dir()}
    runs = {k: v for k, v in runs.items() if v}
    if runs:
        lines += ["## RL training", ""]
        if _plot_series(plots / "training.png", runs, CURVES):
            lines += ["![training curves](plots/training.png)", ""]
        probes = {p.name: read_jsonl(p / "probe.jsonl") for p in sorted(run_dir.glob("rl_*"))}
        if _plot_series(plots / "probe.png", {k: v for k, v in probes.items() if v}, PROBES):
            lines += ["pass@1 at the evaluation temperature on fixed training and validation "
                      "tasks during training (`rl.probe_every`; the pass rate above samples at "
                      "the RL temperature):", "", "![probe](plots/probe.png)", ""]
        if _plot_series(plots / "hacks.png", runs, HACKS):
            lines += ["Reward-hack metrics (the paper's two hacks show as rising lines per "
                      "response or comment share):", "", "![hack metrics](plots/hacks.png)", ""]
        lines += ["Final iteration:", "", "| run | steps | reward | pass rate | KL | lines/resp "
                  "| comment share |", "|---|---|---|---|---|---|---|"]
        for name, m in runs.items():
            last = m[-1]
            lines.append(f"| {name} | {last['step']} | {_fmt(last['reward'])} | "
                         f"{_fmt(last['pass_rate'])} | {_fmt(last['kl'])} | "
                         f"{_fmt(last['lines_per_response'])} | {_fmt(last['comment_share'])} |")
        lines += ["", "### Step-time breakdown (mean seconds per iteration)", "",
                  timing_table(runs), ""]
    prm_eval = run_dir / "prm" / "eval.json"
    if prm_eval.exists():
        lines += prm_section(json.loads(prm_eval.read_text()))
    other = [(stage, _json_summary(run_dir / stage / file)) for stage, file in
             (("sft", "eval.json"), ("prm_data", "summary.json"), ("prm_data", "quality.json"))]
    other = [(s, text) for s, text in other if text]
    if other:
        lines += ["## Other stages", ""] + [f"- **{s}**: {text}" for s, text in other] + [""]
    out = run_dir / "report.md"
    out.write_text("\n".join(lines))
    return out


def run_report(cfg, run_dir: str | Path) -> Path:
    """Pipeline stage: write DIR/report.md (always rewritten; it only reads). Needs the eval
    stage's DIR/eval.json; `python -m prmfast.report DIR --write` reports an unfinished run."""
    eval_path = Path(run_dir) / "eval.json"
    if not eval_path.exists():
        raise StageError(f"{eval_path} is missing: run the eval stage first (for a report of "
                         f"an unfinished run: python -m prmfast.report {run_dir} --write)")
    path = write_report(run_dir)
    print(f"report: {path}")
    from prmfast.inspector import write_inspector
    print(f"line inspector: {write_inspector(cfg, run_dir)}")
    return path


# --- progress ---------------------------------------------------------------------------------

def progress_lines(run_dir: str | Path, stages: list[str]) -> list[str]:
    """One line per stage: done / in progress (RL: step k of n and an ETA from the mean step
    time so far) / pending."""
    run_dir = Path(run_dir)
    out = []
    for stage in stages:
        folder = run_dir / stage
        if (folder / "DONE").exists():
            out.append(f"{stage:12s} done")
            continue
        metrics = read_metrics(folder)
        cfg_file = folder / "config.json"
        if metrics and cfg_file.exists():
            total = json.loads(cfg_file.read_text())["rl"]["steps"]
            mean = sum(m["time_total"] for m in metrics) / len(metrics)
            eta = mean * (total - metrics[-1]["step"])
            out.append(f"{stage:12s} step {metrics[-1]['step']}/{total}, ETA {eta / 60:.1f} min")
        else:
            out.append(f"{stage:12s} {'started' if folder.exists() else 'pending'}")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m prmfast.report",
                                     description="progress of a run folder; --write: report.md")
    parser.add_argument("run_dir")
    parser.add_argument("--write", action="store_true", help="(re)write DIR/report.md")
    parser.add_argument("--html", action="store_true",
                        help="(re)write DIR/inspect.html, the line-level inspector")
    args = parser.parse_args(argv)
    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise SystemExit(f"error: no run folder at {run_dir}"
                         + (" (it is a file)" if run_dir.exists() else ""))
    stages = ["sft", "rl_baseline", "prm_data", "prm", "rl_prm", "eval"]
    try:
        print("\n".join(progress_lines(run_dir, stages)))
        if args.write:
            print(write_report(run_dir))
        if args.html:
            from prmfast.config import ConfigError, load_config
            from prmfast.inspector import write_inspector
            try:
                cfg = load_config(file=run_dir / "config.json")
            except ConfigError as exc:
                raise StageError(f"{exc}: --html reads the run's config, which python -m "
                                 "prmfast.train writes there") from None
            print(write_inspector(cfg, run_dir))
    except StageError as exc:
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    main()
