"""PPO iterations of the RL trainer (smoke preset, tiny models), for the distributed tests.

    python rl_dist_step.py none OUT.pt                           # one process, whole batch
    torchrun --nproc_per_node 2 rl_dist_step.py ddp OUT.pt       # each rank its share of prompts
    torchrun --nproc_per_node 2 rl_dist_step.py deepspeed OUT.pt --ds-config ZERO.json \
        [--save STATE | --resume STATE]
Rollouts are greedy (the real HF backend at temperature 0, one prompt at a time), so the global
batch does not depend on the world size; 3 prompts give the ranks unequal shares and token
counts; 1 PPO epoch of 1 minibatch makes the update see the same global batch. The reference is
perturbed so the KL reward (and hence every gradient) is non-zero. Rank 0 writes the policy and
critic parameters after iteration 1 to OUT.pt. --save STATE then saves the trainer state into
STATE and runs iteration 2 (parameters to OUT.step2.pt); --resume STATE loads it and runs
iteration 2 (parameters to OUT.pt).
"""
import argparse
from pathlib import Path

import torch

from prmfast import distributed as D
from prmfast.config import load_config
from prmfast.data import split_tasks
from prmfast.models import ValueModel, build_tiny_model, train_tokenizer
from prmfast.rl.trainer import PPOTrainer
from prmfast.rollout import HFGenerateBackend
from prmfast.sandbox import Sandbox


class Greedy:
    """The HF backend with temperature 0 whatever the trainer asks."""

    def __init__(self, backend):
        self.backend = backend

    def generate(self, prompt_ids, **kw):
        return self.backend.generate(prompt_ids, **{**kw, "temperature": 0.0})


def dump(trainer: PPOTrainer, row: dict, out: Path) -> None:
    """Rank 0 writes the metrics row and the full policy / critic parameters (all ranks gather
    them)."""
    params = {f"{name}.{k.removeprefix('model.')}": v
              for name, engine in (("policy", trainer.policy_engine),
                                   ("critic", trainer.critic_engine))
              for k, v in D.full_state_dict(engine).items()}
    if D.is_main():
        torch.save({"row": row, **params}, out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("engine")
    parser.add_argument("out", type=Path)
    parser.add_argument("--ds-config")
    parser.add_argument("--save", type=Path)
    parser.add_argument("--resume", type=Path)
    args = parser.parse_args()
    sets = [f"rl.engine={args.engine}", "rl.prompts_per_step=3", "rl.samples_per_prompt=1",
            "rl.ppo_epochs=1", "rl.minibatches=1", "rl.kl_coef=1.0", "rl.steps=2",
            "sampling.max_new_tokens=12", "data.n_train=8", "model.hidden_size=32",
            "model.intermediate_size=64"]
    if args.ds_config:
        sets.append(f"rl.deepspeed_config={args.ds_config}")
    cfg = load_config("smoke", sets=sets)
    tasks = split_tasks(cfg, "train")
    tok = train_tokenizer([t.prompt + (t.reference or "") for t in tasks], 300)
    torch.manual_seed(0)
    policy = build_tiny_model(tok, cfg.model)
    reference = build_tiny_model(tok, cfg.model)
    reference.load_state_dict({k: v + 0.05 * torch.randn_like(v)
                               for k, v in policy.state_dict().items()})
    critic = ValueModel.from_causal_lm(policy)
    torch.nn.init.normal_(critic.head.weight, std=0.1)
    trainer = PPOTrainer(cfg, policy=policy, reference=reference, critic=critic, tokenizer=tok,
                         tasks=tasks, backend=Greedy(HFGenerateBackend(policy, tok, batch_size=1)),
                         sandbox=Sandbox(workers=1, timeout_s=5.0))
    if args.resume:
        trainer.load_state(args.resume)
    row = trainer.train_step()
    if args.engine == "deepspeed" and trainer.policy_engine.model.zero_optimization_stage() == 3:
        assert all(p.numel() == 0 for p in policy.parameters()), "ZeRO-3 left full weights"
    dump(trainer, row, args.out)
    if args.save:
        trainer.save_state(args.save)
        dump(trainer, trainer.train_step(), args.out.with_suffix(".step2.pt"))
    D.exit_rank(0)      # not a return: locals freed after leaving the group can deadlock


if __name__ == "__main__":
    main()
