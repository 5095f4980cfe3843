"""Packed layout, experience and the PPO update on tiny models."""
import copy

import pytest
import torch

from prmfast.models.packed import PackedCritic, PackedPolicy
from prmfast.prm import ValuePRM
from prmfast.rl.experience import critic_values, experience_metrics, make_experience, policy_logprobs
from prmfast.rl.trainer import PPOTrainer, StepTimer


def test_packed_indices_point_at_the_response_tokens_on_cpu(tiny, random_batch):
    _, tok, _ = tiny
    batch, _ = random_batch(tok)
    flat = batch.input_ids.reshape(-1)
    assert torch.equal(flat[batch.tok_index], batch.targets)
    assert torch.equal(flat[batch.act_index + 1], batch.targets)
    lengths = [len(s) - p for s, p in zip(batch.sequences, batch.prompt_lens)]
    assert batch.cu_seqlens.tolist() == [sum(lengths[:i]) for i in range(len(lengths) + 1)]
    sub, idx = batch.select([4, 1], tok.pad_token_id)
    assert torch.equal(batch.targets[idx], sub.targets)


def test_forwards_do_not_depend_on_padding_on_cpu(models, random_batch):
    """Log-probs, values and PRM scores of a sequence are the same alone and in a padded batch."""
    _, tok, policy, _, critic = models
    torch.nn.init.normal_(critic.head.weight, std=0.1)
    batch, facts = random_batch(tok)
    line_end = torch.tensor([b for f in facts for b in f.line_end], dtype=torch.bool)
    with torch.no_grad():
        lp, _ = policy_logprobs(PackedPolicy(policy, temperature=0.7), batch)
        v = critic_values(PackedCritic(critic), batch)
        prm = ValuePRM.of(critic)
        s = prm.packed_line_scores(batch, line_end)
        for i in range(len(facts)):
            one, idx = batch.select([i], tok.pad_token_id)
            lp1, _ = policy_logprobs(PackedPolicy(policy, temperature=0.7), one)
            assert torch.allclose(lp[idx], lp1, atol=1e-5)
            assert torch.allclose(v[idx], critic_values(PackedCritic(critic), one), atol=1e-5)
            assert torch.allclose(s[idx], prm.packed_line_scores(one, line_end[idx]), atol=1e-5)


def _trainer(models, **rl):
    cfg, tok, policy, reference, critic = models
    cfg = copy.deepcopy(cfg)
    for k, v in rl.items():
        setattr(cfg.rl, k, v)
    return PPOTrainer(cfg, policy=policy, reference=reference, critic=critic, tokenizer=tok,
                      tasks=[], backend=None, sandbox=None)


def _loss(trainer, exp):
    with torch.no_grad():
        lp, ent = policy_logprobs(trainer.policy_engine, exp.batch)
        v = critic_values(trainer.critic_engine, exp.batch)
        loss, _ = trainer.loss_fn(lp, exp.old_logprobs, exp.advantages, v, exp.values,
                                  exp.returns, exp.batch.cu_seqlens, ent)
    return float(loss)


def test_ppo_update_decreases_the_loss_on_a_fixed_batch_on_cpu(models, random_batch):
    trainer = _trainer(models, policy_lr=1e-3, critic_lr=1e-3, ppo_epochs=4)
    batch, facts = random_batch(models[1], n_seq=8, seed=1)
    exp = make_experience(batch, facts, policy=trainer.policy_engine,
                          reference=trainer.reference_fwd, critic=trainer.critic_engine, prm=None, cfg=trainer.exp_cfg, timer=StepTimer())
    before = _loss(trainer, exp)
    stats = trainer.update(exp)
    assert _loss(trainer, exp) < before - 1e-3
    assert {"pg_loss", "vf_loss", "clipfrac", "approx_kl", "entropy"} <= set(stats)


def test_critic_warmup_leaves_the_policy_alone_on_cpu(models, random_batch):
    trainer = _trainer(models, critic_lr=1e-3)
    batch, facts = random_batch(models[1], seed=2)
    exp = make_experience(batch, facts, policy=trainer.policy_engine,
                          reference=trainer.reference_fwd, critic=trainer.critic_engine, prm=None, cfg=trainer.exp_cfg, timer=StepTimer())
    policy_before = copy.deepcopy(trainer.policy.state_dict())
    critic_before = copy.deepcopy(trainer.critic.state_dict())
    trainer.update(exp, train_policy=False)
    assert all(torch.equal(v, trainer.policy.state_dict()[k]) for k, v in policy_before.items())
    assert any(not torch.equal(v, trainer.critic.state_dict()[k]) for k, v in critic_before.items())


def test_experience_rewards_and_metrics_on_cpu(models, random_batch):
    """At the start policy == reference, so KL is 0 and the sparse reward sum is the pass rate."""
    trainer = _trainer(models, kl_coef=0.1)
    batch, facts = random_batch(models[1], seed=3)
    timer = StepTimer()
    exp = make_experience(batch, facts, policy=trainer.policy_engine,
                          reference=trainer.reference_fwd, critic=trainer.critic_engine, prm=None, cfg=trainer.exp_cfg, timer=timer)
    m = experience_metrics(exp, 0.1)
    nonempty = [len(f.line_end) > 0 for f in facts]
    expected = sum(f.passed for f, ne in zip(facts, nonempty) if ne) / len(facts)
    assert m["kl"] == pytest.approx(0.0, abs=1e-6)
    assert m["reward"] == pytest.approx(expected, abs=1e-5)
    assert m["line_reward"] == pytest.approx(0.0, abs=1e-6)
    assert m["lines_per_response"] == pytest.approx(sum(sum(f.line_end) for f in facts) / len(facts))
    assert {"policy_fwd", "ref_fwd", "critic_fwd", "kernels"} <= set(timer.times)
    with pytest.raises(ValueError, match="PRM"):
        trainer.exp_cfg.reward = "dense"
        make_experience(batch, facts, policy=trainer.policy_engine,
                        reference=trainer.reference_fwd, critic=trainer.critic_engine, prm=None, cfg=trainer.exp_cfg, timer=timer)


def test_prompt_mean_baseline_by_hand_on_cpu():
    from prmfast.rl.algos import prompt_mean_baseline
    outcome = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0])
    got = prompt_mean_baseline(outcome, 3)
    # prompts of 3 samples: [1, 0, 0] -> mean 1/3; [0, 1, 1] -> 2/3; [0, 0, 0] -> 0
    expected = torch.tensor([2 / 3, -1 / 3, -1 / 3, -2 / 3, 1 / 3, 1 / 3, 0.0, 0.0, 0.0])
    assert torch.allclose(got, expected)
    assert torch.equal(prompt_mean_baseline(outcome, 1), torch.zeros(9))
    with pytest.raises(ValueError, match="do not split"):
        prompt_mean_baseline(outcome, 2)


def test_outcome_baseline_centres_each_prompts_outcomes_on_cpu(models, random_batch):
    """With rl.outcome_baseline=prompt_mean the outcome reward of a prompt's samples sums to 0
    (samples_per_prompt consecutive responses per prompt); with none it is R_UT."""
    batch, facts = random_batch(models[1], n_seq=6, seed=5)
    outcomes = {}
    for baseline in ("none", "prompt_mean"):
        trainer = _trainer(models, outcome_baseline=baseline, samples_per_prompt=3)
        exp = make_experience(batch, facts, policy=trainer.policy_engine,
                              reference=trainer.reference_fwd, critic=trainer.critic_engine,
                              prm=None, cfg=trainer.exp_cfg, timer=StepTimer())
        outcomes[baseline] = exp.outcome
    passed = torch.tensor([float(f.passed) for f in facts])
    assert torch.equal(outcomes["none"].float(), passed)
    groups = passed.reshape(2, 3)
    assert torch.allclose(outcomes["prompt_mean"], (groups - groups.mean(1, keepdim=True)).reshape(-1))


def test_frozen_embeddings_stay_while_the_rest_learns_on_cpu(models, random_batch):
    trainer = _trainer(models, policy_lr=1e-3, freeze_embeddings=True)
    batch, facts = random_batch(models[1], n_seq=8, seed=1)
    exp = make_experience(batch, facts, policy=trainer.policy_engine,
                          reference=trainer.reference_fwd, critic=trainer.critic_engine,
                          prm=None, cfg=trainer.exp_cfg, timer=StepTimer())
    embeddings = trainer.policy.get_input_embeddings().weight.detach().clone()
    before = copy.deepcopy(trainer.policy.state_dict())
    trainer.update(exp)
    assert torch.equal(trainer.policy.get_input_embeddings().weight, embeddings)
    changed = [k for k, v in before.items() if not torch.equal(v, trainer.policy.state_dict()[k])]
    assert changed and not any("embed" in k for k in changed)
