"""PairRunner: two models' passes side by side on two CPU threads give what they give in order."""
import copy
import threading

import pytest
import torch

from prmfast.models import ValueModel
from prmfast.prm import ValuePRM
from prmfast.rl.experience import make_experience
from prmfast.rl.pairs import PairRunner
from prmfast.rl.trainer import PPOTrainer, StepTimer


@pytest.fixture
def threads():
    """Restores torch's thread count after the test."""
    saved = torch.get_num_threads()
    yield
    torch.set_num_threads(saved)


def test_side_by_side_only_on_a_cpu_with_two_threads(threads):
    torch.set_num_threads(2)
    assert PairRunner("cpu").parallel
    assert not PairRunner("cpu", allowed=False).parallel
    assert not PairRunner("cuda").parallel
    torch.set_num_threads(1)
    assert not PairRunner("cpu").parallel


def test_run_gives_both_results_in_order_on_two_threads(threads):
    torch.set_num_threads(2)
    runner = PairRunner("cpu")
    seen = {}

    def job(name):
        def run():
            seen[name] = (threading.get_ident(), torch.get_num_threads(), torch.is_grad_enabled())
            return name
        return run
    with torch.no_grad():
        assert runner.run(job("a"), job("b")) == ("a", "b")
    assert seen["a"][0] == threading.get_ident() != seen["b"][0]
    assert seen["a"][1:] == seen["b"][1:] == (1, False)        # one thread each, caller's grad mode
    assert torch.get_num_threads() == 2
    assert runner.run_all([job("c"), job("d")]) == ["c", "d"] and seen["d"][2]
    assert runner.run_all([job("e")]) == ["e"] and seen["e"][0] == threading.get_ident()
    runner.close()


@pytest.mark.parametrize("failing", [0, 1])
def test_an_error_on_either_side_is_raised_and_threads_restored(threads, failing):
    torch.set_num_threads(2)
    runner = PairRunner("cpu")

    def bad():
        raise KeyError("boom")
    jobs = [lambda: 1, lambda: 2]
    jobs[failing] = bad
    with pytest.raises(KeyError, match="boom"):
        runner.run(*jobs)
    assert torch.get_num_threads() == 2
    assert runner.run(lambda: 3, lambda: 4) == (3, 4)
    runner.close()


def _trainer(models):
    cfg, tok, policy, reference, critic = (copy.deepcopy(m) for m in models)
    cfg.rl.reward, cfg.rl.ppo_epochs, cfg.rl.minibatches = "dense", 2, 2
    cfg.rl.policy_lr = cfg.rl.critic_lr = 1e-3
    return PPOTrainer(cfg, policy=policy, reference=reference, critic=critic, tokenizer=tok,
                      tasks=[], backend=None, sandbox=None)


def test_experience_and_update_side_by_side_equal_in_order(models, random_batch, threads):
    """The same experience (policy / reference, critic / PRM forwards) and the same parameters
    after an update (policy / critic forwards and backwards) with the passes side by side (two
    threads) as one after the other (one thread)."""
    torch.manual_seed(3)
    for p in models[4].parameters():            # a critic unlike the policy, a live value head
        torch.nn.init.normal_(p, std=0.1)
    prm = ValuePRM.of(ValueModel.from_causal_lm(models[2]))
    torch.nn.init.normal_(prm.head.weight, std=0.3)
    batch, facts = random_batch(models[1], n_seq=8, seed=4)
    results = {}
    for n_threads in (1, 2):
        torch.set_num_threads(n_threads)
        trainer = _trainer(models)
        assert trainer.pairs.parallel == (n_threads == 2)
        timer = StepTimer()
        exp = make_experience(batch, facts, policy=trainer.policy_engine,
                              reference=trainer.reference_fwd, critic=trainer.critic_engine,
                              prm=copy.deepcopy(prm), cfg=trainer.exp_cfg, timer=timer,
                              run_pair=trainer.pairs.run)
        assert {"policy_fwd", "ref_fwd", "critic_fwd", "prm_fwd"} <= set(timer.times)
        stats = trainer.update(exp)
        results[n_threads] = (exp, stats, trainer)
    (exp1, stats1, t1), (exp2, stats2, t2) = results[1], results[2]
    for name in ("old_logprobs", "ref_logprobs", "values", "line_scores", "advantages"):
        torch.testing.assert_close(getattr(exp2, name), getattr(exp1, name), rtol=0, atol=0)
    assert stats1.keys() == stats2.keys()
    for model in ("policy", "critic"):
        one, two = getattr(t1, model).state_dict(), getattr(t2, model).state_dict()
        assert any(not torch.equal(v, models[2 if model == "policy" else 4].state_dict()[k])
                   for k, v in one.items())                        # the update moved them
        for k in one:
            torch.testing.assert_close(two[k], one[k], rtol=1e-5, atol=1e-6)
