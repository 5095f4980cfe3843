"""`python -m prmfast.eval`: a model on the real benchmarks, resumable.

    python -m prmfast.eval --model PATH --tasks humanevalplus,mbppplus [--samples 10]
        [--temperature 0.2] [--limit N] [--out DIR] [--backend hf|vllm]

PATH is an HF folder or a .gguf file. Chat-template models get format_chat_prompt and their
fenced code block is extracted; other models continue the prompt (--prompt-style to force).
Per benchmark, DIR/<name>/results.jsonl gets one line per problem as soon as it is scored (a
rerun skips problems already there), DIR/<name>/settings.json the settings those lines depend on
(a rerun with other ones is refused), and DIR/<name>/summary.json the unbiased pass@k, the
best-of-K curve and pass@1 split by response length. Estimators: prmfast.eval.estimators.
Errors are one `error:` line: exit 2 for a bad argument, --model or --out (or other settings
than the folder's), 130 on Ctrl-C (rerunning the command resumes). Outputs are compared as each
benchmark's own evaluator does (load_tasks' default grader: EvalPlus's, LiveCodeBench's).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm.auto import tqdm

from prmfast.data import extract_program, format_chat_prompt, load_tasks
from prmfast.data.load import GRADED
from prmfast.data.validate import job_timeout
from prmfast.eval.estimators import best_of_k_curve, bucket_rates, length_bucket, mean_pass_at_k
from prmfast.models.tokenizer import encode
from prmfast.runio import append_jsonl, read_jsonl, write_json
from prmfast.sandbox import Job, Sandbox
from prmfast.sandbox.sandbox import UID_RANGE
from prmfast.sandbox.specs import MAX_TIMEOUT_S

BENCHMARKS = ("humaneval", "humanevalplus", "mbpp", "mbppplus", "livecodebench")
DTYPES = ("float32", "bfloat16", "float16")
SHOWN_IDS = 3                        # task ids a warning names
# What versions from before a setting was recorded did, per benchmark: before `grader`, the
# outputs of those whose grader it picks were compared strictly, so their results are not
# resumed under another grader (humaneval and mbpp are judged by their asserts either way).
LEGACY_SETTINGS = {name: {"grader": "strict"} for name in GRADED}
# (flag dest, check, what the value must be); None (unset --limit / --workers) passes
RANGES = (
    ("samples", lambda v: v >= 1, ">= 1"),
    ("batch_size", lambda v: v >= 1, ">= 1"),
    ("max_new_tokens", lambda v: v >= 1, ">= 1"),
    ("limit", lambda v: v >= 1, ">= 1"),
    ("workers", lambda v: 1 <= v <= UID_RANGE, f"in [1, {UID_RANGE}]"),
    ("max_k", lambda v: v >= 1, ">= 1"),
    ("length_threshold", lambda v: v >= 0, ">= 0"),
    ("temperature", lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0"),
    ("top_p", lambda v: 0 < v <= 1, "in (0, 1]"),
    ("timeout_s", lambda v: 0 < v <= MAX_TIMEOUT_S, f"in (0, {MAX_TIMEOUT_S:g}] seconds"),
)


class EvalError(Exception):
    """A bad --model / --out, a results folder made with other settings, or a prompt the chat
    template cannot carry (exit 2)."""


@dataclass(frozen=True)
class Settings:
    """What the rows of DIR/<name>/results.jsonl depend on (DIR/<name>/settings.json). Batch
    size, workers, device, limit, max-k and length threshold may change between runs."""
    model: str                       # resolved path
    model_files: str                 # model_fingerprint: weights replaced in place change it
    backend: str
    dtype: str
    samples: int
    temperature: float
    top_p: float
    max_new_tokens: int
    prompt_style: str
    seed: int
    timeout_s: float
    grader: str = "official"         # how outputs were compared (load_tasks' default)


def build_prompts(tasks, tokenizer, style: str) -> list[list[int]]:
    """Token ids per task: the chat template with a generation prompt (its special tokens kept),
    or the raw prompt. Special-token text in a task's own text stays text (models.encode)."""
    if style != "chat":
        return [encode(tokenizer, t.prompt) for t in tasks]
    return [chat_prompt_ids(tokenizer, t) for t in tasks]


CONTENT_MARK = "\ue000prmfast-content\ue000"  # private-use characters: in no template or task


def chat_prompt_ids(tokenizer, task) -> list[int]:
    """The chat template's tokens with its special tokens parsed, the task's message encoded
    apart so that special-token text in it stays text (EvalError when the template alters
    such a message, as then it cannot be told apart)."""
    messages = format_chat_prompt(task)
    content = messages[-1]["content"]
    rendered = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    if not any(token in content for token in added_token_texts(tokenizer)):
        return tokenizer.encode(rendered, add_special_tokens=False)
    marked = messages[:-1] + [{**messages[-1], "content": CONTENT_MARK}]
    parts = tokenizer.apply_chat_template(marked, add_generation_prompt=True,
                                          tokenize=False).split(CONTENT_MARK)
    if len(parts) != 2 or parts[0] + content + parts[1] != rendered:
        raise EvalError(f"task {task.task_id}: its prompt holds special-token text and the chat "
                         "template changes the message; use --prompt-style completion")
    return (tokenizer.encode(parts[0], add_special_tokens=False) + encode(tokenizer, content)
            + tokenizer.encode(parts[1], add_special_tokens=False))


def added_token_texts(tokenizer) -> list[str]:
    """The texts the tokenizer turns into added (special or extra) tokens wherever they occur."""
    decoder = getattr(tokenizer, "added_tokens_decoder", None)
    texts = [t.content for t in decoder.values()] if decoder else []
    return [t for t in {*texts, *tokenizer.all_special_tokens} if t]


def read_results(path: Path, *, repair: bool = False) -> dict[str, dict]:
    """task_id -> its results line (prmfast.runio.read_jsonl: a torn last line, from an
    interrupted run, is skipped, or cut from the file with repair)."""
    return {row["task_id"]: row for row in read_jsonl(path, repair=repair)}


def check_settings(out_dir: Path, settings: Settings) -> None:
    """Record `settings` in out_dir/settings.json; EvalError naming each changed key when
    out_dir (DIR/<benchmark>) already has results made with other ones."""
    path = out_dir / "settings.json"
    new = asdict(settings)
    if read_results(out_dir / "results.jsonl"):
        if path.exists():
            old = _read_settings(path)
            # a key an older version did not record is not compared, unless that version
            # behaved as one value of it (LEGACY_SETTINGS)
            old = {**LEGACY_SETTINGS.get(out_dir.name, {}), **old}
            changes = [f"{key}: {json.dumps(old[key])} -> {json.dumps(value)}"
                       for key, value in new.items() if key in old and old[key] != value]
            if changes:
                raise EvalError(f"{out_dir} was evaluated with other settings "
                                f"({'; '.join(changes)}): rerun with the same settings to "
                                "resume it, or use a new --out")
        else:
            print(f"warning: {out_dir} has results but no settings.json (an older run); "
                  "assuming they were made with these settings", file=sys.stderr)
    write_json(path, new)


def model_fingerprint(model: Path) -> str:
    """A digest of the name, size and modification time of the model's files (a GGUF file,
    or the files of an HF folder); "" for a name that is not on disk."""
    if not model.exists():
        return ""
    files = [model] if model.is_file() else sorted(f for f in model.iterdir() if f.is_file())
    digest = hashlib.sha256()
    for f in files:
        st = f.stat()
        digest.update(f"{f.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def _read_settings(path: Path) -> dict:
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise EvalError(f"{path} is not readable ({exc}); use a new --out") from None
    if not isinstance(saved, dict):
        raise EvalError(f"{path} is not a settings object; use a new --out")
    return saved


def over_context(tasks, prompts, max_new_tokens: int, context: int | None) -> list[str]:
    """Ids of the tasks whose prompt plus max_new_tokens exceeds the model's context."""
    if context is None:
        return []
    return [t.task_id for t, p in zip(tasks, prompts) if len(p) + max_new_tokens > context]


def run_benchmark(name: str, backend, tokenizer, sandbox: Sandbox, out_dir: Path,
                  settings: Settings, *, limit: int | None, problems_per_batch: int, max_k: int,
                  length_threshold: int, context: int | None = None,
                  progress: bool = True) -> dict:
    """Score the first `limit` problems of `name` (skipping those already in results.jsonl)
    and write and return the summary. Batches are aligned to the task list and seeded by the
    index of their first task, so a resumed run draws the samples an uninterrupted one would."""
    tasks = load_tasks(name)[:limit]
    prompts = build_prompts(tasks, tokenizer, settings.prompt_style)
    too_long = over_context(tasks, prompts, settings.max_new_tokens, context)
    if too_long:
        shown = ", ".join(too_long[:SHOWN_IDS]) + (", ..." if len(too_long) > SHOWN_IDS else "")
        print(f"warning: {name}: {len(too_long)} of {len(tasks)} prompts + max_new_tokens "
              f"{settings.max_new_tokens} exceed the model's context of {context} tokens "
              f"({shown})", file=sys.stderr)
    out_dir.mkdir(parents=True, exist_ok=True)
    results_path = out_dir / "results.jsonl"
    done = read_results(results_path, repair=True)      # appends start on a line of their own
    started = time.perf_counter()
    bar = tqdm(total=len(tasks), initial=sum(t.task_id in done for t in tasks), desc=name,
               unit="problem", disable=not progress)
    with bar:
        for b in range(0, len(tasks), problems_per_batch):
            chunk = tasks[b:b + problems_per_batch]
            if all(t.task_id in done for t in chunk):
                continue
            groups = backend.generate(prompts[b:b + problems_per_batch], n=settings.samples,
                                      max_new_tokens=settings.max_new_tokens,
                                      temperature=settings.temperature, top_p=settings.top_p,
                                      seed=settings.seed + b)
            fresh = [(t, g) for t, g in zip(chunk, groups) if t.task_id not in done]
            for row in score(fresh, sandbox, settings.prompt_style):
                append_jsonl(results_path, [row])
                done[row["task_id"]] = row
            bar.update(len(fresh))
    summary = summarize([done[t.task_id] for t in tasks], max_k=max_k,
                        length_threshold=length_threshold)
    summary.update(benchmark=name, **asdict(settings), limit=limit,
                   over_context={"context": context, "n": len(too_long), "task_ids": too_long},
                   wall_s_this_run=round(time.perf_counter() - started, 1))
    write_json(out_dir / "summary.json", summary)
    return summary


def score(groups, sandbox: Sandbox, style: str) -> list[dict]:
    """(task, samples) pairs -> one results row per task; each job gets the task's own time
    limit when it is above the sandbox's (data.validate.job_timeout) and stops at its first
    failing case (only the verdict is kept)."""
    jobs = [Job(extract_program(task, s.text, style), task.tests,
                timeout_s=job_timeout(task, sandbox.timeout_s), stop_on_failure=True)
            for task, group in groups for s in group]
    outcome = iter(sandbox.run(jobs))
    return [{"task_id": task.task_id,
             "passed": [next(outcome).passed for _ in group],
             "n_tokens": [len(s.response_ids) for s in group],
             "finish": [s.finish_reason for s in group],
             "responses": [s.text for s in group]} for task, group in groups]


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
    """(backend, tokenizer) for --backend hf (in process) or vllm (worker process); EvalError
    when --model does not load."""
    from prmfast.models.policy import one_line
    try:
        return _load_backend(args)
    except (OSError, ValueError) as exc:
        raise EvalError(f"--model: {one_line(exc)}") from None


def _load_backend(args):
    from prmfast.models import load_policy
    from prmfast.models.policy import check_model_folder
    from prmfast.rollout import HFGenerateBackend
    if args.backend == "vllm":
        from transformers import AutoTokenizer

        from prmfast.rollout.vllm_backend import VLLMBackend
        if Path(args.model).suffix == ".gguf":
            raise ValueError("--backend vllm needs an HF folder (a .gguf loads once with "
                             "--backend hf, which caches a converted folder)")
        check_model_folder(args.model)
        tokenizer = AutoTokenizer.from_pretrained(args.model)
        return VLLMBackend(args.model, python=args.vllm_python,
                           engine_args=args.vllm_args), tokenizer
    from prmfast.device import select_device
    model, tokenizer = load_policy(args.model, dtype=args.dtype,
                                   device=select_device(args.device))
    return HFGenerateBackend(model, tokenizer, batch_size=args.batch_size), tokenizer


def context_length(backend, model: str) -> int | None:
    """The model's max_position_embeddings (None when its config has none)."""
    config = getattr(getattr(backend, "model", None), "config", None)
    if config is None:                                  # vllm: read the HF folder's config
        from transformers import AutoConfig
        config = AutoConfig.from_pretrained(model)
    return getattr(config, "max_position_embeddings", None)


def prompt_style(requested: str, tokenizer) -> str:
    """auto -> chat when the tokenizer has a chat template, else completion; EvalError for
    chat without one."""
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if requested == "auto":
        return "chat" if has_template else "completion"
    if requested == "chat" and not has_template:
        raise EvalError("--prompt-style chat: the model's tokenizer has no chat template; use "
                        "--prompt-style completion (or auto)")
    return requested


def out_folders(args) -> dict[str, Path]:
    """DIR/<name> per benchmark, created; EvalError when a path is in the way."""
    folders = {name: Path(args.out) / name for name in args.tasks}
    for folder in folders.values():
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            reason = ("a file is in the way" if isinstance(exc, (FileExistsError,
                                                                 NotADirectoryError))
                      else exc.strerror or exc)
            raise EvalError(f"--out {args.out}: cannot create {folder}: {reason}") from None
    return folders


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m prmfast.eval", description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="HF folder or .gguf file")
    p.add_argument("--tasks", required=True,
                   help=f"comma-separated benchmarks from {', '.join(BENCHMARKS)}")
    p.add_argument("--samples", type=int, default=10)
    p.add_argument("--temperature", type=float, default=0.2,
                   help="0: greedy (then every sample of a problem is the same)")
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
    p.add_argument("--dtype", choices=DTYPES, default="float32", help="hf: weights dtype")
    p.add_argument("--vllm-python", default="python", help="vllm: interpreter that has vllm")
    p.add_argument("--vllm-args", default="{}", help="vllm: JSON kwargs for vllm.LLM")
    p.add_argument("--workers", type=int, default=None, help="sandbox processes (default: cores)")
    p.add_argument("--timeout-s", type=float, default=10.0,
                   help="sandbox time limit per job (a task's own larger limit wins)")
    args = p.parse_args(argv)
    args.tasks = list(dict.fromkeys(args.tasks.split(",")))
    unknown = [t for t in args.tasks if t not in BENCHMARKS]
    if unknown:
        p.error(f"unknown benchmark(s) {unknown}; choose from {', '.join(BENCHMARKS)}")
    for dest, ok, need in RANGES:
        value = getattr(args, dest)
        if value is not None and not ok(value):
            p.error(f"--{dest.replace('_', '-')}: must be {need}, got {value}")
    try:
        args.vllm_args = json.loads(args.vllm_args)
    except ValueError as exc:
        p.error(f"--vllm-args: not JSON ({exc})")
    if not isinstance(args.vllm_args, dict):
        p.error("--vllm-args: must be a JSON object of vllm.LLM keyword arguments")
    from prmfast.device import resolve_device
    try:
        resolve_device(args.device)
    except ValueError as exc:
        p.error(f"--device: {exc}")
    return args


def eval_settings(args, style: str) -> Settings:
    """The Settings of this command (the prompt style resolved)."""
    dtype = args.dtype if args.backend == "hf" else str(args.vllm_args.get("dtype", "auto"))
    model = Path(args.model).resolve()
    return Settings(model=str(model), model_files=model_fingerprint(model),
                    backend=args.backend, dtype=dtype,
                    samples=args.samples, temperature=args.temperature, top_p=args.top_p,
                    max_new_tokens=args.max_new_tokens, prompt_style=style, seed=args.seed,
                    timeout_s=args.timeout_s)


def main(argv=None) -> int:
    """The CLI; returns the exit code (0, 2: bad --model / --out / other settings, 130: Ctrl-C)."""
    args = parse_args(argv)
    backend = None
    try:
        folders = out_folders(args)
        backend, tokenizer = make_backend(args)
        settings = eval_settings(args, prompt_style(args.prompt_style, tokenizer))
        for folder in folders.values():
            check_settings(folder, settings)
        if settings.temperature == 0 and settings.samples > 1:
            print(f"note: --temperature 0 is greedy decoding: the {settings.samples} samples of "
                  "a problem are identical (pass@k = pass@1); --samples 1 gives the same numbers",
                  file=sys.stderr)
        context = context_length(backend, args.model)
        with Sandbox(workers=args.workers, timeout_s=args.timeout_s) as sandbox:
            for name, folder in folders.items():
                _report(name, args, run_benchmark(
                    name, backend, tokenizer, sandbox, folder, settings, limit=args.limit,
                    problems_per_batch=max(1, args.batch_size // args.samples),
                    max_k=args.max_k, length_threshold=args.length_threshold,
                    context=context))
    except EvalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\ninterrupted; rerun the same command (--out {args.out}) to resume",
              file=sys.stderr)
        return 130
    finally:
        if hasattr(backend, "close"):
            backend.close()
    return 0


def _report(name: str, args, s: dict) -> None:
    rates = ", ".join(f"{k} {v:.3f}" for k, v in s["pass@k"].items())
    print(f"{name}: {s['n_problems']} problems x {args.samples} samples, {rates}; "
          f"by length {json.dumps(s['by_length'])}; written to {Path(args.out) / name}")
