"""The PPO loop: one iteration = rollout -> sandbox -> lines -> experience -> update.

PPOTrainer owns the policy (trained), the reference (frozen SFT policy, for the KL penalty), the
critic (ValueModel, trained), the PRM (frozen ValueModel, dense reward only), their optimizers
and LR schedules. Everything an iteration draws (prompts, samples, minibatch order) is seeded from
(seed, step), so a resumed run reproduces an uninterrupted one. Time per part of an iteration is
recorded under the names of TIMING_KEYS.

Multi-process (rl.engine = ddp | deepspeed, launched by torchrun; docs/scale.md):
each rank rolls out, scores and builds experience for its share of the iteration's prompts; the
policy and critic train under the engine (gradients averaged, loss scaled to the global token
mean, one engine backward per model); advantage whitening and the metrics row are reduced over
ranks. Under ZeRO-3 rollouts and saves gather the full policy first. One process without a
launcher: no process group, the same code.

Device: the models arrive on their device (model.device, prmfast.device; under a launcher on
GPUs cuda:LOCAL_RANK) and every tensor of an iteration is created there; the process group uses
NCCL on a GPU and gloo on the CPU. What leaves for the sandbox and the metrics row is Python
data (token lists, floats).
"""
from __future__ import annotations

import contextlib
import os
import random
import shutil
import time
from collections import defaultdict
from pathlib import Path

import torch

from prmfast import distributed as D
from prmfast.data import build_program
from prmfast.device import module_device
from prmfast.labeling.search import oracle_m_star
from prmfast.lines import segment
from prmfast.models import ValueModel, encode, load_policy, save_policy
from prmfast.models.packed import PackedCritic, PackedPolicy
from prmfast.prm import ValuePRM
from prmfast import profiling
from prmfast.profiling import nvtx_range
from prmfast.rl.algos import lr_factor, minibatch_order, step_seed
from prmfast.rl.experience import (ExperienceConfig, PackedBatch, critic_values,
                                   experience_metrics, facts_from_lines, line_view,
                                   make_experience, policy_logprobs)
from prmfast.rl.loss import PPOLoss
from prmfast.rl.pairs import PairRunner
from prmfast.rl.rewards import REWARDS
from prmfast.sandbox import Job

TIMING_KEYS = ("generate", "sandbox", "oracle", "lines", "policy_fwd", "ref_fwd", "critic_fwd",
               "prm_fwd", "kernels", "update", "sync")


class StepTimer:
    """`with timer("name"):` adds the block's wall time to times["name"] (and opens an NVTX /
    profiler range of that name)."""

    def __init__(self):
        self.times: dict[str, float] = defaultdict(float)

    @contextlib.contextmanager
    def __call__(self, name: str):
        start = time.perf_counter()
        with nvtx_range(name):
            yield
        self.times[name] += time.perf_counter() - start


class PPOTrainer:
    """PPO with a per-token KL penalty against the reference policy (Ouyang et al. 2022,
    InstructGPT) and the PRM dense reward of arXiv 2410.17621, on packed sequences.

    tasks: the training prompts (prmfast.data.Task); backend: a RolloutBackend around `policy`;
    sandbox: a prmfast.sandbox.Sandbox; oracle: first_error_lines(tasks, response_texts) ->
    0-based first wrong line per response, or None (needed by the oracle reward only).
    prm: a PRM of prmfast.prm (load_prm), or a bare ValueModel, taken as the fine-tuned kind
    (ValuePRM, its parameters shared). policy, reference, critic and prm must be on one device
    (the trainer's `device`).
    Joins the launcher's process group for rl.engine (nothing without a launcher)."""

    def __init__(self, cfg, *, policy, reference, critic, tokenizer, tasks, backend, sandbox,
                 prm=None, oracle=None):
        rl = cfg.rl
        if rl.reward not in REWARDS:
            raise ValueError(f"rl.reward: unknown variant {rl.reward!r}; choose one of {sorted(REWARDS)}")
        if REWARDS[rl.reward].needs_oracle and oracle is None:
            raise ValueError("rl.reward='oracle' needs the synthetic suite's oracle")
        self.cfg, self.rl = cfg, rl
        if isinstance(prm, ValueModel) and not isinstance(prm, ValuePRM):
            prm = ValuePRM.of(prm)
        self.policy, self.reference, self.critic, self.prm = policy, reference, critic, prm
        self.tokenizer, self.tasks = tokenizer, tasks
        self.backend, self.sandbox, self.oracle = backend, sandbox, oracle
        self.exp_cfg = ExperienceConfig.from_rl(rl)
        self.loss_fn = PPOLoss(clip_low=rl.clip_low, clip_high=rl.clip_high, dual_clip=rl.dual_clip,
                               value_clip=rl.value_clip, vf_coef=rl.vf_coef,
                               entropy_coef=rl.entropy_coef)
        for frozen in (reference, prm):
            if frozen is not None:
                frozen.requires_grad_(False).eval()
        policy.eval()                       # no dropout in rollouts and in the ratio
        if rl.freeze_embeddings:            # a tied LM head is the same tensor: frozen too
            policy.get_input_embeddings().requires_grad_(False)
        critic.eval()
        self.device = module_device(policy)
        for name, model in (("reference", reference), ("critic", critic), ("prm", prm)):
            if model is not None and module_device(model) != self.device:
                raise ValueError(f"{name} is on {module_device(model)} but the policy is on "
                                 f"{self.device}; put every model on one device")
        if rl.engine == "deepspeed" and self.device.type == "cpu" and torch.cuda.is_available() \
                and os.environ.get("DS_ACCELERATOR") != "cpu":
            raise ValueError(DEEPSPEED_ON_CPU)
        D.init_distributed(rl.engine, device=self.device)   # NCCL on a GPU, gloo on the CPU
        if rl.engine == "none" and D.get_world_size() > 1:
            raise ValueError(f"launched with {D.get_world_size()} processes but rl.engine='none'"
                             "; set rl.engine=ddp or deepspeed")
        temperature = cfg.sampling.temperature
        self.reference_fwd = PackedPolicy(reference, temperature=temperature)
        self.policy_engine, self.policy_opt, self.policy_sched = self._under_engine(
            PackedPolicy(policy, temperature=temperature), rl.policy_lr)
        self.critic_engine, self.critic_opt, self.critic_sched = self._under_engine(
            PackedCritic(critic), rl.critic_lr)
        # independent passes of two models (policy / critic, policy / reference, critic / PRM)
        # side by side on a CPU with >= 2 torch threads; not under an engine (their collectives)
        self.pairs = PairRunner(self.device, allowed=rl.engine == "none")
        self.step = 0                       # iterations finished
        self.last_rollouts: list[dict] = []   # train_step(record=True)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.eos_id = tokenizer.eos_token_id

    def _under_engine(self, module, lr: float):
        """(module under rl.engine, its AdamW, its LR schedule)."""
        rl = self.rl
        ds_config = None
        if rl.engine == "deepspeed":    # rl.max_grad_norm is the clipping, whatever the file says
            ds_config = D.load_deepspeed_config(rl.deepspeed_config,
                                                deepspeed_overrides(self.cfg, self.device),
                                                device=self.device)
        # torch's fused AdamW kernel (CPU and CUDA): a third of the per-parameter loop's time
        # for the default policy; left off under DeepSpeed (not tried with ZeRO's wrapper)
        fused = rl.engine != "deepspeed"
        engine = D.wrap_model(
            module, rl.engine,
            lambda params: torch.optim.AdamW(params, lr=lr, weight_decay=0.0, fused=fused),
            max_grad_norm=rl.max_grad_norm, ds_config=ds_config)
        total_updates = rl.steps * rl.ppo_epochs * rl.minibatches
        schedule = lambda i: lr_factor(rl.lr_schedule, i, total_updates, rl.lr_warmup_steps)  # noqa: E731
        return (engine, engine.optimizer,
                torch.optim.lr_scheduler.LambdaLR(engine.optimizer, schedule))

    # --- one iteration -------------------------------------------------------------------

    def train_step(self, *, record: bool = False) -> dict[str, float]:
        """Run iteration self.step and advance it. Returns the metrics row of the iteration.
        record: also keep this rank's responses of the iteration, per line, in
        self.last_rollouts (see rollout_records; the RL stage saves the last iteration's)."""
        rl, step = self.rl, self.step
        timer = StepTimer()
        start = time.perf_counter()
        picker = random.Random(step_seed(self.cfg.seed, step))
        tasks = D.shard(picker.sample(self.tasks, min(rl.prompts_per_step, len(self.tasks))))
        with timer("generate"), D.full_parameters(self.policy_engine):
            groups = self.backend.generate(
                [encode(self.tokenizer, t.prompt) for t in tasks], n=rl.samples_per_prompt,
                max_new_tokens=self.cfg.sampling.max_new_tokens,
                temperature=self.cfg.sampling.temperature, top_p=self.cfg.sampling.top_p,
                seed=step_seed(self.cfg.seed, step, salt=1))
        pairs = [(task, s) for task, group in zip(tasks, groups) for s in group]
        batch, facts = self._score_rollouts(pairs, timer)
        exp = make_experience(batch, facts, policy=self.policy_engine,
                              reference=self.reference_fwd, critic=self.critic_engine,
                              prm=self.prm, cfg=self.exp_cfg, timer=timer,
                              run_pair=self.pairs.run)
        if record:
            self.last_rollouts = rollout_records(pairs, facts, exp, self.tokenizer, step + 1)
        with timer("update"):
            stats = self.update(exp, train_policy=step >= rl.critic_warmup_steps)
        with timer("sync"):
            self.sync_rollout_weights()
        self.step += 1
        total = time.perf_counter() - start
        row = {"step": self.step, **experience_metrics(exp, rl.kl_coef), **stats,
               "policy_lr": self.policy_sched.get_last_lr()[0]}
        row.update({f"time_{k}": round(timer.times.get(k, 0.0), 4) for k in TIMING_KEYS})
        row["time_total"] = round(total, 4)
        row["tokens_per_s"] = batch.num_tokens / total if total > 0 else 0.0
        row = D.all_reduce_metrics(row)     # means over ranks; throughput is their sum
        row["step"], row["tokens_per_s"] = self.step, row["tokens_per_s"] * D.get_world_size()
        profiling.step()                    # a trace window counts iterations (--profile)
        return row

    def _score_rollouts(self, pairs, timer) -> tuple[PackedBatch, list]:
        """Sandbox outcomes, lines and (oracle reward) first error lines of the samples; the
        packed batch of prompt + response (+ EOS when the sample stopped)."""
        with timer("sandbox"):
            results = self.sandbox.run([Job(build_program(t, s.text), t.tests) for t, s in pairs])
        first_errors: list[int | None] = [None] * len(pairs)
        if REWARDS[self.rl.reward].needs_oracle:
            with timer("oracle"):
                failed = [i for i, res in enumerate(results) if not res.passed]
                found = self.oracle([pairs[i][0] for i in failed], [pairs[i][1].text for i in failed])
                for i, line in zip(failed, found):
                    first_errors[i] = line
        sequences, prompt_lens, facts = [], [], []
        with timer("lines"):
            for (task, sample), res, first_error in zip(pairs, results, first_errors):
                eos = [self.eos_id] if sample.finish_reason == "stop" else []
                response = list(sample.response_ids) + eos
                sequences.append(list(sample.prompt_ids) + response)
                prompt_lens.append(len(sample.prompt_ids))
                frac = sum(res.tests) / len(res.tests) if res.tests else float(res.passed)
                lines = segment(list(sample.response_ids), self.tokenizer)
                # the oracle counts physical lines of the text, oracle_reward segmented lines
                # (0-based; an error past the last line lands on the last line)
                m = oracle_m_star(lines.texts, res.passed, first_error)
                facts.append(facts_from_lines(lines, len(response), passed=res.passed,
                                              frac_passed=frac,
                                              first_error_line=None if m is None else m - 1))
        return PackedBatch.from_sequences(sequences, prompt_lens, self.pad_id, self.device), facts

    def update(self, exp, *, train_policy: bool = True) -> dict[str, float]:
        """rl.ppo_epochs passes over rl.minibatches minibatches of sequences (of this rank's
        share, in rl.minibatch_order; every rank takes the same number of steps). With
        train_policy=False (critic warm-up) only the critic learns. Returns mean loss stats."""
        rl = self.rl
        n_seq = exp.batch.cu_seqlens.numel() - 1
        n_chunks = min(rl.minibatches, max(1, int(D.all_reduce_metrics({"n": n_seq}, "min")["n"])))
        # minibatch order: drawn on the CPU whatever the device (the same on every machine)
        gen = torch.Generator(device="cpu")
        gen.manual_seed(step_seed(self.cfg.seed, self.step, salt=2))
        sums: dict[str, float] = defaultdict(float)
        count = 0
        self.policy.train(train_policy)
        self.critic.train()
        try:
            groups = exp.batch.prompt_groups()
            for _ in range(rl.ppo_epochs):
                order = minibatch_order(groups, rl.minibatch_order, gen)
                for chunk in torch.tensor_split(torch.tensor(order, dtype=torch.long,
                                                             device="cpu"), n_chunks):
                    stats = self._minibatch_step(exp, chunk.tolist(), train_policy)
                    for k, v in stats.items():
                        sums[k] += v
                    count += 1
        finally:
            self.policy.eval()
            self.critic.eval()
        return {k: v / max(1, count) for k, v in sums.items()}

    def _minibatch_step(self, exp, seq_ids: list[int], train_policy: bool) -> dict[str, float]:
        """One optimizer step of the critic (and the policy) on this rank's minibatch; the loss,
        a token mean over the rank's tokens, is scaled so the engines' gradient average is the
        token mean over all ranks' tokens. Each engine runs its own backward."""
        mb, idx = exp.batch.select(seq_ids, self.pad_id)
        if train_policy:
            (logprobs, entropy), values = self.pairs.run(
                lambda: policy_logprobs(self.policy_engine, mb),
                lambda: critic_values(self.critic_engine, mb))
        else:
            logprobs, entropy = exp.old_logprobs[idx], None
            values = critic_values(self.critic_engine, mb)
        loss, stats = self.loss_fn(logprobs, exp.old_logprobs[idx], exp.advantages[idx], values,
                                   exp.values[idx], exp.returns[idx], mb.cu_seqlens, entropy)
        engines = [("critic", self.critic_engine, self.critic_sched)]
        outputs = [(self.critic_engine, [values])]
        if train_policy:
            engines.append(("policy", self.policy_engine, self.policy_sched))
            outputs.append((self.policy_engine, [logprobs, entropy]))
        D.backward_per_model(loss * D.token_mean_scale(mb.num_tokens), outputs,
                             run_all=self.pairs.run_all)
        for name, engine, sched in engines:
            norm = engine.step()
            if norm is not None:
                stats[f"{name}_grad_norm"] = norm
            sched.step()
        stats["loss"] = float(loss.detach())
        return stats

    def sync_rollout_weights(self) -> None:
        """Hand the updated policy to a backend that serves its own copy (VLLMBackend); the
        in-process backend generates with self.policy and needs nothing."""
        if hasattr(self.backend, "sync_weights"):
            with D.full_parameters(self.policy_engine):
                self.backend.sync_weights(self.policy, self.tokenizer)

    # --- resumable state -----------------------------------------------------------------

    def save_policy(self, path: Path) -> None:
        """The policy as an HF folder (with the tokenizer), written to a temporary folder and
        renamed. Every rank calls it (ZeRO-3 gathers the weights); rank 0 writes."""
        path = Path(path)
        tmp = path.with_name(".tmp_" + path.name)       # not matched by the ckpt_* glob of collect
        with D.full_parameters(self.policy_engine):
            if D.is_main():
                _remove(tmp)
                save_policy(self.policy, self.tokenizer, tmp)
                _remove(path)
                tmp.rename(path)

    def save_state(self, path: Path) -> None:
        """policy/ and critic/ HF folders + trainer.pt (optimizers, schedules, RNG, step),
        written to a temporary folder and swapped in, so an interrupted save never leaves a
        half-written state. Every rank calls it; rank 0 writes, except that under DeepSpeed the
        optimizers are the engines' checkpoints in deepspeed/policy and deepspeed/critic (each
        rank writes its ZeRO partition there; resume with the same number of ranks)."""
        path = Path(path)
        tmp, old = path.with_name(path.name + ".tmp"), path.with_name(path.name + ".old")
        if D.is_main():
            _remove(tmp)
            tmp.mkdir(parents=True)
        D.barrier()
        self.save_policy(tmp / "policy")
        with D.full_parameters(self.critic_engine):
            if D.is_main():
                self.critic.save_pretrained(tmp / "critic")
        state = {"step": self.step, "policy_sched": self.policy_sched.state_dict(),
                 "critic_sched": self.critic_sched.state_dict(),
                 "torch_rng": torch.get_rng_state(), "python_rng": random.getstate()}
        if self.rl.engine == "deepspeed":
            for name, engine in (("policy", self.policy_engine), ("critic", self.critic_engine)):
                engine.model.save_checkpoint(str(tmp / "deepspeed" / name), tag="state")
            D.barrier()                 # every rank's partition written before the swap
        else:
            state.update(policy_opt=self.policy_opt.state_dict(),
                         critic_opt=self.critic_opt.state_dict())
        if D.is_main():
            torch.save(state, tmp / "trainer.pt")
            if path.exists():
                _remove(old)
                path.rename(old)
            tmp.rename(path)
            _remove(old)

    def load_state(self, path: Path) -> None:
        """Restore what save_state wrote, on every rank (weights are loaded into the existing
        modules; under DeepSpeed weights and optimizers come from the engines' checkpoints).
        trainer.pt loads on the CPU (the optimizers move their state to their parameters'
        device), so a state saved on a GPU resumes on the CPU and the other way round."""
        path = Path(path)
        state = torch.load(path / "trainer.pt", map_location="cpu", weights_only=False)
        if self.rl.engine == "deepspeed":
            for name, engine in (("policy", self.policy_engine), ("critic", self.critic_engine)):
                folder = path / "deepspeed" / name
                loaded, _ = engine.model.load_checkpoint(str(folder), tag="state",
                                                         load_lr_scheduler_states=False)
                if loaded is None:
                    raise FileNotFoundError(f"no DeepSpeed checkpoint in {folder}")
        else:
            policy, _ = load_policy(path / "policy")
            self.policy.load_state_dict(policy.state_dict())
            self.critic.load_state_dict(ValueModel.from_pretrained(path / "critic").state_dict())
            self.policy_opt.load_state_dict(state["policy_opt"])
            self.critic_opt.load_state_dict(state["critic_opt"])
        self.policy_sched.load_state_dict(state["policy_sched"])
        self.critic_sched.load_state_dict(state["critic_sched"])
        torch.set_rng_state(state["torch_rng"])
        random.setstate(state["python_rng"])
        self.step = int(state["step"])
        self.sync_rollout_weights()


DEEPSPEED_ON_CPU = ("rl.engine='deepspeed' with model.device='cpu' while CUDA is visible: "
                    "DeepSpeed would move the models to its GPU; use model.device=auto (or "
                    "cuda), or keep DeepSpeed on the CPU with DS_ACCELERATOR=cpu or "
                    "CUDA_VISIBLE_DEVICES=")


def rollout_records(pairs, facts, exp, tokenizer, step: int) -> list[dict]:
    """One JSON-ready row per response of an iteration (pairs of (task, sample) in batch order):
    step, task_id, prompt, prompt_ids, response_ids, response, lines (segmented texts),
    is_comment, passed and, per line,
    the mean PPO advantage of its tokens and its line reward (experience.line_view)."""
    rows = []
    for (task, sample), fact, view in zip(pairs, facts, line_view(exp, facts)):
        lines = segment(list(sample.response_ids), tokenizer)
        pad = [0.0] * (len(lines.texts) - len(view["advantage"]))
        rows.append({"step": step, "task_id": task.task_id, "prompt": task.prompt,
                     "prompt_ids": list(sample.prompt_ids),
                     "response_ids": list(sample.response_ids), "response": sample.text,
                     "lines": lines.texts,
                     "is_comment": list(lines.is_comment), "passed": fact.passed,
                     "advantage": view["advantage"] + pad, "line_reward": view["line_reward"] + pad})
    return rows


def deepspeed_overrides(cfg, device: torch.device) -> dict:
    """Keys the RL trainer sets in the DeepSpeed config: rl.max_grad_norm as the clipping and,
    on a GPU, bf16 / fp16 as model.dtype says (the engine's precision follows the models', so the
    policy, the reference and the PRM share one dtype); on the CPU both stay off."""
    overrides = {"gradient_clipping": cfg.rl.max_grad_norm}
    if device.type == "cuda":
        overrides.update({"bf16.enabled": cfg.model.dtype == "bfloat16",
                          "fp16.enabled": cfg.model.dtype == "float16"})
    return overrides


def latest_state(path: Path) -> Path | None:
    """The state folder to resume from: `path`, or `path`.old if a save was cut off mid-swap."""
    path = Path(path)
    for candidate in (path, path.with_name(path.name + ".old")):
        if (candidate / "trainer.pt").exists():
            return candidate
    return None


def _remove(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path)
