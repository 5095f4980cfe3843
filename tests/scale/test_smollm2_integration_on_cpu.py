"""SmolLM2-135M-Instruct end to end on CPU: generate for HumanEval problems, execute in the
sandbox, PRM line scores on the packed path, one PPO step (prmfast.rl), save and reload."""
import copy
from pathlib import Path

import pytest
import torch

from prmfast.eval.benchmarks import build_prompts
from prmfast.config import load_config
from prmfast.data import extract_program, load_tasks
from prmfast.lines import segment
from prmfast.models import ValueModel, load_policy, save_policy
from prmfast.models.packed import pack_sequences, packed_line_scores, packed_logprobs
from prmfast.rl.trainer import PPOTrainer
from prmfast.rollout import HFGenerateBackend
from prmfast.sandbox import Job, Sandbox

GGUF = (Path(__file__).resolve().parents[3] / "shared" / "models" / "smollm2-135m-instruct"
        / "SmolLM2-135M-Instruct.Q4_1.gguf")

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not GGUF.exists(), reason=f"SmolLM2 GGUF not found at {GGUF}")]


def test_smollm2_generate_execute_prm_ppo_save_reload_on_cpu(tmp_path):
    torch.manual_seed(0)
    policy, tokenizer = load_policy(GGUF)
    tasks = load_tasks("humaneval")[:2]
    backend = HFGenerateBackend(policy, tokenizer, batch_size=4)
    groups = backend.generate(build_prompts(tasks, tokenizer, "chat"), n=1, max_new_tokens=32,
                              temperature=0.2, seed=0)
    samples = [g[0] for g in groups]
    assert all(s.response_ids and len(s.logprobs) == len(s.response_ids) for s in samples)
    sandbox = Sandbox(workers=2, timeout_s=10.0)
    results = sandbox.run([Job(extract_program(t, s.text, "chat"), t.tests)
                           for t, s in zip(tasks, samples)])
    assert all(r.status in ("passed", "failed", "error", "timeout") for r in results)

    # PRM line scores on the packed layout (prompt + response), equal to the padded path
    prm = ValueModel.from_causal_lm(policy).eval()
    torch.nn.init.normal_(prm.head.weight, std=0.02)
    ids, cu = pack_sequences([s.prompt_ids + s.response_ids for s in samples])
    line_end = torch.tensor([flag for s in samples for flag in
                             [False] * len(s.prompt_ids)
                             + segment(s.response_ids, tokenizer).line_end])
    assert line_end.any()
    with torch.no_grad():
        scores = packed_line_scores(prm, ids, cu, line_end)
        first = samples[0].prompt_ids + samples[0].response_ids
        ref = prm.line_scores(torch.tensor([first]), line_end[None, :len(first)])[0]
    torch.testing.assert_close(scores[:len(first)], ref, rtol=1e-4, atol=1e-4)
    assert torch.all(scores[~line_end] == 0)

    # one PPO iteration of prmfast.rl with the PRM dense reward
    cfg = load_config("smoke", sets=["rl.reward=dense", "rl.prompts_per_step=1",
                                     "rl.samples_per_prompt=2", "sampling.max_new_tokens=16"])
    critic = ValueModel.from_causal_lm(policy)
    torch.nn.init.normal_(critic.head.weight, std=0.02)    # values != returns: a real update
    trainer = PPOTrainer(cfg, policy=policy, reference=copy.deepcopy(policy), critic=critic,
                         prm=prm, tokenizer=tokenizer, tasks=tasks, backend=backend,
                         sandbox=sandbox)
    before = {k: v.detach().clone() for k, v in policy.state_dict().items()}
    row = trainer.train_step()
    assert row["step"] == 1 and torch.isfinite(torch.tensor(row["loss"])), row
    changed = [k for k, v in policy.state_dict().items() if not torch.equal(before[k], v)]
    assert changed, row

    # save and reload: the same packed log-probs and PRM scores
    save_policy(policy, tokenizer, tmp_path / "policy")
    prm.save_pretrained(tmp_path / "prm")
    reloaded, _ = load_policy(tmp_path / "policy")
    reloaded_prm = ValueModel.from_pretrained(tmp_path / "prm").eval()
    policy.eval()
    with torch.no_grad():
        torch.testing.assert_close(packed_logprobs(reloaded, ids, cu)[0],
                                   packed_logprobs(policy, ids, cu)[0])
        torch.testing.assert_close(packed_line_scores(reloaded_prm, ids, cu, line_end), scores)
