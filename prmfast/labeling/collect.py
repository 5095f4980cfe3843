"""The "collect" stage: sample responses from RL-baseline checkpoints, label them, measure labels.

Files under DIR/prm_data/:
  responses/<ckpt>.jsonl   the sampled responses of one checkpoint (written once, whole)
  probes/<ckpt>.jsonl      probe journal, appended every round (resume without re-probing)
  labels.jsonl             one record per labelled response, appended every chunk
  summary.json             counts, label balance, cost per response, throughput
  quality/<ckpt>.jsonl     the quality study's scan journal (best-of-K_max per prefix)
  quality.json             binary search vs exhaustive scan vs oracle, per K

Resume: responses already in labels.jsonl are skipped; a chunk cut short replays its finished
rounds from the probe journal and continues with the same seeds, so it gives the same labels.
"""
from __future__ import annotations

import random
import time
from pathlib import Path

from tqdm import tqdm

from prmfast.config import Config, ConfigError
from prmfast.data.task import tasks_by_id
from prmfast.errors import StageError
from prmfast.labeling.driver import Response
from prmfast.labeling.policy import Policy, list_checkpoints, make_sandbox, pick_checkpoints
from prmfast.labeling.probe import ProbeRequest
from prmfast.labeling.quality import collected_vs_oracle, compare_at_k, summarize_k
from prmfast.labeling.search import code_lines, oracle_m_star
from prmfast.labeling.store import label_into, summarize
from prmfast.lines import segment
from prmfast.models import encode
from prmfast.runio import read_jsonl, write_json, write_jsonl

SAMPLED_FIELDS = ("response", "finish_reason", "sample_wall_s", "oracle_first_error",
                  "oracle_m_star")


def sample_responses(policy: Policy, tasks: list, n: int, cfg: Config, path: Path,
                     temperature: float) -> list[dict]:
    """n responses per task from the policy, executed, with the oracle's first error where the
    suite has one; written to path once and read back from it afterwards."""
    if path.exists():
        return read_jsonl(path)
    start = time.perf_counter()
    prompts = [encode(policy.tokenizer, t.prompt) for t in tasks]
    samples = policy.backend.generate(
        prompts, n=n, max_new_tokens=cfg.sampling.max_new_tokens,
        temperature=temperature, top_p=cfg.sampling.top_p, seed=cfg.seed,
        progress=True)
    flat = [(t, p, i, s) for t, p, group in zip(tasks, prompts, samples)
            for i, s in enumerate(group)]
    results = policy.sandbox.run([policy.make_job(t, s.prompt_ids, [], s.response_ids)
                                  for t, _, _, s in flat])
    oracle = _oracle(cfg)
    errors = oracle([t for t, *_ in flat], [s.text for *_, s in flat]) if oracle else \
        [None] * len(flat)
    wall = (time.perf_counter() - start) / max(1, len(flat))
    rows = []
    for (t, p, i, s), res, err in zip(flat, results, errors):
        texts = segment(s.response_ids, policy.tokenizer).texts
        rows.append({"key": f"{policy.name}/{t.task_id}/{i}", "task_id": t.task_id,
                     "prompt_ids": p, "response_ids": s.response_ids, "response": s.text,
                     "finish_reason": s.finish_reason, "passed": res.passed,
                     "sample_wall_s": wall, "oracle_first_error": err,
                     "oracle_m_star": oracle_m_star(texts, res.passed, err)})
    path.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(path, rows)
    return rows


def to_response(row: dict, task, tokenizer) -> Response:
    lines = segment(row["response_ids"], tokenizer)
    return Response(row["key"], task, row["prompt_ids"], row["response_ids"], lines.spans,
                    lines.is_comment, row["passed"])


def collect(cfg: Config, out_dir: Path, tasks: list) -> dict:
    """Sample and label responses for every picked checkpoint; writes and returns the summary."""
    ckpts = pick_checkpoints(list_checkpoints(out_dir / "rl_baseline"), cfg.collect.num_checkpoints)
    data_dir = out_dir / "prm_data"
    (data_dir / "probes").mkdir(parents=True, exist_ok=True)
    labels_path = data_dir / "labels.jsonl"
    tasks = tasks[:cfg.collect.num_prompts]
    by_id = tasks_by_id(tasks)        # a duplicated id would merge two tasks' responses
    sandbox = make_sandbox(cfg)
    total = len(ckpts) * len(tasks) * cfg.collect.responses_per_prompt
    with tqdm(total=total, initial=len(read_jsonl(labels_path)), desc="collect",
              unit="resp") as bar:
        for ckpt in ckpts:
            policy = Policy(ckpt, cfg, sandbox)
            rows = {r["key"]: r for r in sample_responses(
                policy, tasks, cfg.collect.responses_per_prompt, cfg,
                data_dir / "responses" / f"{ckpt.name}.jsonl", cfg.collect.temperature)}
            responses = [to_response(r, by_id[r["task_id"]], policy.tokenizer)
                         for r in rows.values()]
            prober = policy.prober(cfg.collect.k, data_dir / "probes" / f"{ckpt.name}.jsonl",
                                   seed=cfg.seed)

            def extra(resp: Response, name=ckpt.name, rows=rows) -> dict:
                return {"checkpoint": name} | {f: rows[resp.key][f] for f in SAMPLED_FIELDS}

            label_into(labels_path, responses, prober, cfg.collect.chunk_size, extra, bar)
    summary = summarize(read_jsonl(labels_path))
    write_json(data_dir / "summary.json", summary)
    return summary


def measure_quality(cfg: Config, out_dir: Path, tasks: list) -> dict:
    """Scan a sample of failed responses at best-of-max(quality_ks) with their own checkpoint's
    policy; compare scan, binary search and oracle for each k in quality_ks -> quality.json."""
    data_dir = out_dir / "prm_data"
    records = read_jsonl(data_dir / "labels.jsonl")
    failed = [r for r in records if not r["passed"] and code_lines(r["is_comment"])]
    picked = random.Random(cfg.seed).sample(failed, min(cfg.collect.quality_sample, len(failed)))
    by_id = {t.task_id: t for t in tasks}
    k_max, first_wave = max(cfg.collect.quality_ks), cfg.collect.first_wave
    sandbox = make_sandbox(cfg)
    first_pass: dict[str, list[int | None]] = {}
    start = time.perf_counter()
    for name in sorted({r["checkpoint"] for r in picked}):
        group = [r for r in picked if r["checkpoint"] == name]
        policy = Policy(out_dir / "rl_baseline" / name, cfg, sandbox)
        (data_dir / "quality").mkdir(exist_ok=True)
        prober = policy.prober(k_max, data_dir / "quality" / f"{name}.jsonl", seed=cfg.seed + 1,
                               progress=True)
        resps = [to_response(r, by_id[r["task_id"]], policy.tokenizer) for r in group]
        reqs = {(resp.key, p): ProbeRequest(resp.task, resp.prompt_ids, resp.prefix_ids(p))
                for resp in resps for p in range(len(code_lines(resp.is_comment)))}
        outcomes, _ = prober.resolve(list(reqs.values()))
        for resp in resps:
            first_pass[resp.key] = [outcomes[reqs[(resp.key, p)].key].first_pass
                                    for p in range(len(code_lines(resp.is_comment)))]
    result = {"k_max": k_max, "first_wave": first_wave, "sample": len(picked),
              "scan_wall_s": time.perf_counter() - start,
              "collected_vs_oracle": collected_vs_oracle(records), "by_k": {}}
    for k in cfg.collect.quality_ks:
        rows = [compare_at_k(first_pass[r["key"]], k, first_wave) for r in picked]
        result["by_k"][str(k)] = summarize_k(rows, [r["is_comment"] for r in picked],
                                             [r.get("oracle_m_star") for r in picked])
    write_json(data_dir / "quality.json", result)
    return result


def _oracle(cfg: Config):
    """The synthetic suite's batched line oracle, or None for other suites."""
    if cfg.data.name != "synthetic":
        return None
    from prmfast.data.synthetic import first_error_lines
    return first_error_lines


def check_collect_config(cfg: Config) -> None:
    """Value checks of the collect.* keys, run by the CLI before any stage starts."""
    c = cfg.collect
    for key in ("num_checkpoints", "num_prompts", "responses_per_prompt", "k", "first_wave",
                "chunk_size"):
        if getattr(c, key) < 1:
            raise ConfigError(f"collect.{key}: must be >= 1, got {getattr(c, key)}")
    if not c.quality_ks or min(c.quality_ks) < 1:
        raise ConfigError(f"collect.quality_ks: must be non-empty with every K >= 1, got "
                          f"{c.quality_ks}")


def check_prerequisites(cfg: Config, run_dir: Path) -> None:
    """Fail early, naming what is missing: a finished rl_baseline stage (its DONE), whose
    checkpoints collection samples from."""
    done = run_dir / "rl_baseline" / "DONE"
    if not done.exists():
        found = len(list_checkpoints(run_dir / "rl_baseline"))
        raise StageError(f"{done} is missing ({found} checkpoint(s) so far): run the rl_baseline "
                         "stage first, or finish it (rerun it with the same --out); collection "
                         "samples from the RL-baseline checkpoints")
    if not list_checkpoints(run_dir / "rl_baseline"):
        raise StageError(f"no {run_dir}/rl_baseline/ckpt_* checkpoints although {done} exists: "
                         "delete it and rerun the rl_baseline stage (collection samples from "
                         "its checkpoints)")
    check_collect_config(cfg)


def run(cfg: Config, run_dir: str | Path) -> Path:
    """The stage: labels.jsonl + summary.json, then quality.json; DONE last; skips when DONE."""
    run_dir = Path(run_dir)
    out = run_dir / "prm_data"
    if (out / "DONE").exists():
        print(f"collect: {out / 'DONE'} exists, skipping")
        return out
    check_prerequisites(cfg, run_dir)
    from prmfast.data import split_tasks
    tasks = split_tasks(cfg, "train")
    summary = collect(cfg, run_dir, tasks)
    quality = measure_quality(cfg, run_dir, tasks)
    (out / "DONE").write_text("ok\n")
    k = str(max(cfg.collect.quality_ks))
    print(f"collect: {summary['responses']} responses ({summary['failed']} failed, "
          f"{summary['selection_counts']['revised_only']} revised), "
          f"{summary['per_failed_response']['executions']:.1f} executions per failed response, "
          f"{summary['responses_per_min']:.1f} responses/min; at K={k} binary vs scan agreement "
          f"{quality['by_k'][k]['binary_vs_scan_agreement']:.2f}")
    return out
