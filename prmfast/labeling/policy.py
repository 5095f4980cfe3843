"""One policy checkpoint as a labelling resource: its tokenizer, rollout backend and a Prober.

Used by collection and by the label-quality study, so both sample and probe with the policy that
produced the responses (the paper labels each response with completions from its own policy).
"""
from __future__ import annotations

import re
from pathlib import Path

from prmfast.config import Config
from prmfast.data import build_program
from prmfast.device import select_device
from prmfast.labeling.probe import Prober
from prmfast.models import load_policy
from prmfast.rollout import HFGenerateBackend
from prmfast.rollout.hf import response_text
from prmfast.sandbox import Job, Sandbox


def list_checkpoints(run_dir: Path) -> list[Path]:
    """DIR/rl_baseline/ckpt_* folders in training order (by the number in the name)."""
    found = [p for p in run_dir.glob("ckpt_*") if p.is_dir()]
    return sorted(found, key=lambda p: int(re.sub(r"\D", "", p.name) or 0))


def pick_checkpoints(ckpts: list[Path], n: int) -> list[Path]:
    """n checkpoints evenly spaced through the run, ending with the last one."""
    if not ckpts:
        raise FileNotFoundError("no checkpoints to pick from")
    if n >= len(ckpts):
        return list(ckpts)
    return [ckpts[round((i + 1) * len(ckpts) / n) - 1] for i in range(n)]


def make_sandbox(cfg: Config) -> Sandbox:
    return Sandbox(workers=cfg.sandbox.workers, timeout_s=cfg.sandbox.timeout_s,
                   memory_mb=cfg.sandbox.memory_mb)


class Policy:
    """A loaded checkpoint: model (on model.device), tokenizer, backend and the job builder for
    its completions (token ids come back from the backend as Python lists)."""

    def __init__(self, path: Path, cfg: Config, sandbox: Sandbox):
        self.name, self.cfg, self.sandbox = path.name, cfg, sandbox
        self.model, self.tokenizer = load_policy(path, dtype=cfg.model.dtype,
                                                 device=select_device(cfg.model.device))
        self.model.eval()
        self.backend = HFGenerateBackend(self.model, self.tokenizer,
                                         batch_size=cfg.sampling.batch_size)

    def make_job(self, task, prompt_ids: list[int], prefix_ids: list[int],
                 completion_ids: list[int]) -> Job:
        """The program of prefix + completion, decoded after the prompt as rollouts are
        (rollout.hf.response_text: a SentencePiece decoder drops a leading space otherwise)."""
        text = response_text(self.tokenizer, prompt_ids, prefix_ids + completion_ids)
        return Job(build_program(task, text), task.tests)

    def prober(self, k: int, journal: Path | None, seed: int, progress: bool = False) -> Prober:
        c = self.cfg
        return Prober(self.backend, self.sandbox, self.make_job, k=k,
                      first_wave=c.collect.first_wave, temperature=c.collect.temperature,
                      top_p=c.sampling.top_p, max_new_tokens=c.sampling.max_new_tokens,
                      seed=seed, journal=journal, progress=progress)
