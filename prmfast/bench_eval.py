"""`python -m prmfast.eval`: a model on the real benchmarks, resumable.

    python -m prmfast.eval --model PATH --tasks humanevalplus,mbppplus [--samples 10]
        [--temperature 0.2] [--limit N] [--out DIR] [--backend hf|vllm]

PATH is an HF folder or a .gguf file. Chat-template models get format_chat_prompt and their
fenced code block is extracted; other models continue the prompt (--prompt-style to force).
Per benchmark, DIR/<name>/results.jsonl gets one line per problem as soon as it is scored (a
rerun skips problems already there), and DIR/<name>/summary.json the unbiased pass@k, the
best-of-K curve and pass@1 split by response length. Estimators come from prmfast.eval.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from tqdm.auto import tqdm

from prmfast.data import extract_program, format_chat_prompt, load_tasks
from prmfast.eval import best_of_k_curve, bucket_rates, length_bucket, mean_pass_at_k
from prmfast.sandbox import Job, Sandbox

BENCHMARKS = ("humaneval", "humanevalplus", "mbpp", "mbppplus", "livecodebench")


def build_prompts(tasks, tokenizer, style: str) -> list[list[int]]:
    """Token ids per task: the chat template with a generation prompt, or the raw prompt."""
    if style == "chat":
        texts = [tokenizer.apply_chat_template(format_chat_prompt(t), add_generation_prompt=True,
                                               tokenize=False) for t in tasks]
    else:
        texts = [t.prompt for t in tasks]
    return [tokenizer.encode(text, add_special_tokens=False) for text in texts]


def read_results(path: Path) -> dict[str, dict]:
    """task_id -> its results line; a torn last line (interrupted run) is ignored."""
    done = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            done[row["task_id"]] = row
    return done


def run_benchmark(name: str, backend, tokenizer, sandbox: Sandbox, out_dir: Path, *, samples: int,
                  temperature: float, top_p: float, max_new_tokens: int, style: str,
                  limit: int | None, problems_per_batch: int, seed: int, max_k: int,
                  length_threshold: int, progress: bool = True) -> dict:
    """Score the first `limit` problems of `name` (skipping those already in results.jsonl)
    and write and return the summary."""
    tasks = load_tasks(name)[:limit]
    out_dir.mkdir(parents=True, exist_ok=True)
    results_path = out_dir / "results.jsonl"
    done = read_results(results_path)
    todo = [t for t in tasks if t.task_id not in done]
    started = time.perf_counter()
    bar = tqdm(total=len(tasks), initial=len(tasks) - len(todo), desc=name, unit="problem",
               disable=not progress)
    with results_path.open("a") as sink, bar:
        if sink.tell() and not results_path.read_bytes().endswith(b"\n"):
            sink.write("\n")                   # end a line torn by an interrupted run
        for b in range(0, len(todo), problems_per_batch):
            chunk = todo[b:b + problems_per_batch]
            groups = backend.generate(build_prompts(chunk, tokenizer, style), n=samples,
                                      max_new_tokens=max_new_tokens, temperature=temperature,
                                      top_p=top_p, seed=seed + b)
            jobs = [Job(extract_program(task, s.text, style), task.tests)
                    for task, group in zip(chunk, groups) for s in group]
            outcome = iter(sandbox.run(jobs))
            for task, group in zip(chunk, groups):
                row = {"task_id": task.task_id,
                       "passed": [next(outcome).passed for _ in group],
                       "n_tokens": [len(s.response_ids) for s in group],
                       "finish": [s.finish_reason for s in group],
                       "responses": [s.text for s in group]}
                sink.write(json.dumps(row) + "\n")
                sink.flush()
                done[task.task_id] = row
            bar.update(len(chunk))
    rows = [done[t.task_id] for t in tasks]
    summary = summarize(rows, max_k=max_k, length_threshold=length_threshold)
    summary.update(benchmark=name, samples=samples, temperature=temperature, top_p=top_p,
                   max_new_tokens=max_new_tokens, prompt_style=style, limit=limit,
                   wall_s_this_run=round(time.perf_counter() - started, 1))
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def summarize(rows: list[dict], *, max_k: int, length_threshold: int) -> dict:
    """Per-problem rows -> pass@k (k = 1, 5, 10 where samples allow), best-of-K, length buckets."""
    counts = [(len(r["passed"]), sum(r["passed"])) for r in rows]
    fewest = min((n for n, _ in counts), default=0)
    flat = [(ok, n) for r in rows for ok, n in zip(r["passed"], r["n_tokens"])]
    return {
        "n_problems": len(rows),
        "pass@k": {f"pass@{k}": mean_pass_at_k(counts, k) for k in (1, 5, 10) if k <= fewest},
        "best_of_k": best_of_k_curve(counts, max_k) if counts else [],
        "length_threshold": length_threshold,
        "by_length": bucket_rates([length_bucket(n, length_threshold) for _, n in flat],
                                  [ok for ok, _ in flat]),
        "stop_rate": (sum(f == "stop" for r in rows for f in r["finish"]) / len(flat)
                      if flat else 0.0),
    }


def make_backend(args):
    """(backend, tokenizer) for --backend hf (in process) or vllm (worker process)."""
    from prmfast.models import load_policy
    from prmfast.rollout import HFGenerateBackend
    if args.backend == "vllm":
        from transformers import AutoTokenizer

        from prmfast.rollout.vllm_backend import VLLMBackend
        if not Path(args.model).is_dir():
            raise SystemExit("--backend vllm needs an HF folder (a .gguf loads once with "
                             "--backend hf, which caches a converted folder)")
        backend = VLLMBackend(args.model, python=args.vllm_python,
                              engine_args=json.loads(args.vllm_args))
        return backend, AutoTokenizer.from_pretrained(args.model)
    from prmfast.device import select_device
    model, tokenizer = load_policy(args.model, dtype=args.dtype,
                                   device=select_device(args.device))
    return HFGenerateBackend(model, tokenizer, batch_size=args.batch_size), tokenizer


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m prmfast.eval", description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="HF folder or .gguf file")
    p.add_argument("--tasks", required=True,
                   help=f"comma-separated benchmarks from {', '.join(BENCHMARKS)}")
    p.add_argument("--samples", type=int, default=10)
    p.add_argument("--temperature", type=float, default=0.2)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--max-new-tokens", type=int, default=512)
    p.add_argument("--limit", type=int, default=None, help="first N problems of each benchmark")
    p.add_argument("--out", default="runs/eval")
    p.add_argument("--prompt-style", choices=["auto", "chat", "completion"], default="auto",
                   help="auto: chat when the tokenizer has a chat template")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-k", type=int, default=30, help="best-of-K curve up to K")
    p.add_argument("--length-threshold", type=int, default=100)
    p.add_argument("--backend", choices=["hf", "vllm"], default="hf")
    p.add_argument("--batch-size", type=int, default=32, help="hf: sequences per generate batch")
    p.add_argument("--device", default="cpu", help="hf: auto | cpu | cuda | cuda:N")
    p.add_argument("--dtype", default="float32", help="hf: float32 | bfloat16 | float16")
    p.add_argument("--vllm-python", default="python", help="vllm: interpreter that has vllm")
    p.add_argument("--vllm-args", default="{}", help="vllm: JSON kwargs for vllm.LLM")
    p.add_argument("--workers", type=int, default=None, help="sandbox processes (default: cores)")
    p.add_argument("--timeout-s", type=float, default=10.0, help="sandbox time limit per job")
    args = p.parse_args(argv)
    unknown = [t for t in args.tasks.split(",") if t not in BENCHMARKS]
    if unknown:
        p.error(f"unknown benchmark(s) {unknown}; choose from {', '.join(BENCHMARKS)}")
    from prmfast.device import resolve_device
    try:
        resolve_device(args.device)
    except ValueError as exc:
        p.error(f"--device: {exc}")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    backend, tokenizer = make_backend(args)
    style = args.prompt_style
    if style == "auto":
        style = "chat" if getattr(tokenizer, "chat_template", None) else "completion"
    sandbox = Sandbox(workers=args.workers, timeout_s=args.timeout_s)
    per_batch = max(1, args.batch_size // args.samples)
    try:
        for name in args.tasks.split(","):
            _report(name, args, run_benchmark(
                name, backend, tokenizer, sandbox, Path(args.out) / name,
                samples=args.samples, temperature=args.temperature, top_p=args.top_p,
                max_new_tokens=args.max_new_tokens, style=style, limit=args.limit,
                problems_per_batch=per_batch, seed=args.seed, max_k=args.max_k,
                length_threshold=args.length_threshold))
    finally:
        if hasattr(backend, "close"):
            backend.close()


def _report(name: str, args, s: dict) -> None:
    rates = ", ".join(f"{k} {v:.3f}" for k, v in s["pass@k"].items())
    print(f"{name}: {s['n_problems']} problems x {args.samples} samples, {rates}; "
          f"by length {json.dumps(s['by_length'])}; written to {Path(args.out) / name}")
