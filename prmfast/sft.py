"""The SFT stage: supervised training on reference solutions, then the pass@1 evaluation.

    DIR/tokenizer/      the run's byte-level BPE (tiny-model runs; trained once per run)
    DIR/sft/state/      resumable state: checkpoint.pt (removed once DONE is written)
    DIR/sft/model/      the SFT policy (HF folder: safetensors, config, tokenizer)
    DIR/sft/eval.json   pass@1 at sft.eval_temperature with sft.eval_samples per test task,
                        overall, per horizon bucket and per response-length bucket; timings
    DIR/sft/DONE        written last; a rerun skips the stage

Training data: the train split's tasks whose reference passes its own tests (the others are
left out with a one-line warning; prmfast.data.drop_failing_references). Loss on response tokens
only (prompt masked), response = reference + EOS; AdamW with linear
warmup and cosine decay to zero; batches drawn from a per-epoch permutation seeded by
(seed, epoch), so a run resumed from a checkpoint gives the same weights as an uninterrupted one.
The model trains on model.device (prmfast.device); checkpoint.pt loads onto the model's device
whichever device wrote it.
"""
from __future__ import annotations

import functools
import math
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import AutoTokenizer

from prmfast import trackers
from prmfast.config import Config, SFTConfig
from prmfast.data import drop_failing_references, split_tasks
from prmfast.device import module_device, select_device
from prmfast.eval import evaluate_policy
from prmfast.models import build_tiny_model, encode, load_policy, save_policy, train_tokenizer
from prmfast.rollout import HFGenerateBackend
from prmfast.runio import save_whole, write_json
from prmfast.sandbox import Sandbox

CHECKPOINT = "checkpoint.pt"


def run(cfg: Config, run_dir: str | Path, *, progress: bool = True) -> Path:
    """The whole stage into run_dir/sft; skips when DONE exists. Returns the stage folder."""
    run_dir = Path(run_dir)
    out = run_dir / "sft"
    if (out / "DONE").exists():
        print(f"sft: {out / 'DONE'} exists, skipping")
        return out
    t0 = time.perf_counter()
    test_split = split_tasks(cfg, "test")     # bad data fails here, before any training
    with _sandbox(cfg) as sandbox:            # references failing their own tests: left out
        train_split = drop_failing_references(split_tasks(cfg, "train"), sandbox, "train-split")
    model, tokenizer = initial_policy(cfg, run_dir, train_split)
    examples = build_examples(tokenizer, train_split, max_len=model.config.max_position_embeddings)
    losses: list[float] = []                 # every step's loss, those before a resume too
    train(model, examples, cfg.sft, out / "state", seed=cfg.seed, progress=progress,
          history=losses, log_row=functools.partial(trackers.log, cfg, run_dir, "sft"))
    save_whole(out / "model", lambda folder: save_policy(model, tokenizer, folder))
    t1 = time.perf_counter()
    with _sandbox(cfg) as sandbox:
        metrics = evaluate_policy(
            HFGenerateBackend(model, tokenizer, batch_size=cfg.sampling.batch_size), tokenizer,
            test_split, sandbox, samples=cfg.sft.eval_samples,
            temperature=cfg.sft.eval_temperature, max_new_tokens=cfg.sampling.max_new_tokens,
            length_threshold=cfg.eval.length_threshold, seed=cfg.seed, progress=progress)
    metrics["train"] = {"examples": len(examples), "steps": len(losses),
                        "final_loss": losses[-1] if losses else None,
                        "wall_s": round(t1 - t0, 1)}
    metrics["eval_wall_s"] = round(time.perf_counter() - t1, 1)
    write_json(out / "eval.json", metrics, indent=1)
    shutil.rmtree(out / "state", ignore_errors=True)
    (out / "DONE").write_text("ok\n")
    buckets = ", ".join(f"{k} {v['pass@1']:.3f}" for k, v in metrics["by_horizon"].items())
    print(f"sft: pass@1 {metrics['pass@1']:.3f}{f' ({buckets})' if buckets else ''}; stop rate "
          f"{metrics['stop_rate']:.2f}; train {t1 - t0:.0f}s, eval {metrics['eval_wall_s']:.0f}s")
    return out


def _sandbox(cfg: Config) -> Sandbox:
    """The stage's sandbox (cfg.sandbox)."""
    return Sandbox(workers=cfg.sandbox.workers, timeout_s=cfg.sandbox.timeout_s,
                   memory_mb=cfg.sandbox.memory_mb)


def initial_policy(cfg: Config, run_dir: Path, train_split) -> tuple:
    """(model, tokenizer) to start SFT from: a tiny model (seeded by cfg.seed) with the run's
    tokenizer, trained on the train split's prompts and references on first use; or the HF
    folder / GGUF file named by model.init."""
    device = select_device(cfg.model.device)
    if cfg.model.init != "tiny":
        return load_policy(cfg.model.init, cfg.model.dtype, device=device)
    tok_dir = run_dir / "tokenizer"
    if not (tok_dir / "tokenizer.json").exists():   # written whole: a kill leaves none or all
        texts = [t.prompt + (t.reference or "") for t in train_split]
        tmp = tok_dir.with_name(tok_dir.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        train_tokenizer(texts, cfg.model.vocab_size, tmp)
        shutil.rmtree(tok_dir, ignore_errors=True)
        tmp.rename(tok_dir)
    # read back even when just trained, so that a resumed run saves the very same files
    tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    torch.manual_seed(cfg.seed)           # initialised on the CPU: the same weights on any device
    return build_tiny_model(tokenizer, cfg.model).to(device), tokenizer


def build_examples(tokenizer, tasks, max_len: int) -> list[tuple[list[int], list[int]]]:
    """(input_ids, labels) per task with a reference: prompt + reference + EOS, labels -100 on
    the prompt. Prompt and response are tokenized apart, as at generation time. Examples longer
    than max_len are dropped."""
    examples = []
    for task in tasks:
        if task.reference is None:
            continue
        prompt = encode(tokenizer, task.prompt)
        response = encode(tokenizer, task.reference) + [tokenizer.eos_token_id]
        if len(prompt) + len(response) <= max_len:
            examples.append((prompt + response, [-100] * len(prompt) + response))
    if not examples:
        raise ValueError("no task with a reference response fits the model's context")
    return examples


def train(model, examples: list[tuple[list[int], list[int]]], cfg: SFTConfig, state_dir: Path,
          *, seed: int, progress: bool = True, history: list[float] | None = None,
          log_row: Callable[[dict], None] | None = None) -> list[float]:
    """Train in place for ceil(epochs * steps_per_epoch) steps, checkpointing to state_dir every
    cfg.checkpoint_every steps and at the end; resumes from state_dir's checkpoint when present.
    Returns the losses of the steps run by this call; `history`, when given, is filled with the
    loss of every step from the first (the checkpoint keeps those before a resume). log_row, when
    given, gets {"step", "loss", "lr"} after every step (the trackers, log.backends)."""
    batch_size = min(cfg.batch_size, len(examples))
    per_epoch = len(examples) // batch_size
    total = max(1, math.ceil(cfg.epochs * per_epoch))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(cfg.warmup_steps, total))
    history = [] if history is None else history
    step = load_checkpoint(state_dir, model, opt, sched, history)
    pad = model.config.pad_token_id if model.config.pad_token_id is not None else 0
    device = module_device(model)
    losses = []
    model.train()
    with tqdm(total=total, initial=step, desc="sft", unit="step", disable=not progress) as bar:
        while step < total:
            order = epoch_order(len(examples), step // per_epoch, seed)
            pos = (step % per_epoch) * batch_size
            batch = collate([examples[i] for i in order[pos:pos + batch_size]], pad, device)
            loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            losses.append(loss.item())
            history.append(losses[-1])
            bar.set_postfix(loss=f"{losses[-1]:.3f}", lr=f"{sched.get_last_lr()[0]:.2e}")
            if log_row is not None:
                log_row({"step": step, "loss": losses[-1], "lr": sched.get_last_lr()[0]})
            bar.update()
            if step % cfg.checkpoint_every == 0 or step == total:
                save_checkpoint(state_dir, step, model, opt, sched, history)
    model.eval()
    return losses


def warmup_cosine(warmup: int, total: int):
    """LR multiplier per step: linear warmup over `warmup` steps, then cosine decay to zero."""
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))
    return factor


def epoch_order(n: int, epoch: int, seed: int) -> list[int]:
    """The example order of one epoch: a permutation of range(n) fixed by (seed, epoch)."""
    gen = torch.Generator(device="cpu").manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=gen, device="cpu").tolist()


def collate(batch: list[tuple[list[int], list[int]]], pad_id: int,
            device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Right-pad to the longest example: input_ids, attention_mask, labels (-100 on padding),
    each [B, T] on `device`."""
    width = max(len(ids) for ids, _ in batch)

    def fill(seqs, value):
        return torch.tensor([s + [value] * (width - len(s)) for s in seqs], device=device)

    return {"input_ids": fill([ids for ids, _ in batch], pad_id),
            "attention_mask": fill([[1] * len(ids) for ids, _ in batch], 0),
            "labels": fill([labels for _, labels in batch], -100)}


def save_checkpoint(state_dir: Path, step: int, model, opt, sched,
                    losses: list[float] = ()) -> None:
    """Write state_dir/checkpoint.pt atomically (a crash mid-write keeps the previous one);
    `losses`: the loss of every step so far."""
    state_dir.mkdir(parents=True, exist_ok=True)
    tmp = state_dir / (CHECKPOINT + ".tmp")
    torch.save({"step": step, "model": model.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(), "losses": list(losses)}, tmp)
    os.replace(tmp, state_dir / CHECKPOINT)


def load_checkpoint(state_dir: Path, model, opt, sched, losses: list[float] | None = None) -> int:
    """Restore the latest checkpoint into model/opt/sched (and its step losses into `losses`);
    returns its step (0 when none). Tensors load onto the model's device, whichever device saved
    them."""
    path = state_dir / CHECKPOINT
    if not path.exists():
        return 0
    state = torch.load(path, map_location=module_device(model), weights_only=True)
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    if losses is not None:
        losses[:] = state.get("losses", [])
    return state["step"]
