"""Edge inputs of the RL side: constant advantages, blank-line merges under the oracle reward,
non-finite rewards."""
import math
from types import SimpleNamespace

import pytest
import torch

from prmfast.models import ValueModel
from prmfast.prm import ValuePRM
from prmfast.rl.algos import whiten
from prmfast.rl.experience import make_experience
from prmfast.rl.rewards import RewardInputs, oracle_reward
from prmfast.rl.trainer import PPOTrainer, StepTimer
from prmfast.sandbox import AssertTests


def test_whiten_leaves_constant_advantages_at_zero_on_cpu():
    # 0.1 is not exact in float32: the mean is off by ~1 ulp (7.45e-9) and the std is ~7e-9,
    # which used to whiten to -0.4269 everywhere; a negligible spread is only centred
    assert whiten(torch.full((1000,), 0.1)).abs().max() < 1e-6
    assert whiten(torch.full((7,), -3.0)).tolist() == [0.0] * 7
    w = whiten(torch.tensor([0.1, 0.1, 0.1, 0.1 + 1e-3]))    # a real spread is still whitened
    assert w.std().item() == pytest.approx(1.0, abs=1e-4)


class PieceTokenizer:
    """Token i decodes to pieces[i] (exact token boundaries)."""

    def __init__(self, pieces):
        self.pieces = pieces

    def decode(self, ids, skip_special_tokens=True, clean_up_tokenization_spaces=False):
        return "".join(self.pieces[i] for i in ids)


def _oracle_scores(response_pieces, passed, physical_first_error):
    """Line scores at the line ends of one response scored by PPOTrainer._score_rollouts with
    the oracle reward (fake sandbox and oracle)."""
    tok = PieceTokenizer(["<p>"] + response_pieces)
    ids = list(range(1, len(response_pieces) + 1))
    text = "".join(response_pieces)
    sample = SimpleNamespace(text=text, prompt_ids=[0], response_ids=ids, finish_reason="length")
    task = SimpleNamespace(prompt="def f(xs):\n", tests=AssertTests("pass"), meta={})
    result = SimpleNamespace(passed=passed, tests=[passed])
    trainer = SimpleNamespace(
        sandbox=SimpleNamespace(run=lambda jobs: [result] * len(jobs)),
        oracle=lambda tasks, texts: [physical_first_error] * len(texts),
        rl=SimpleNamespace(reward="oracle"), eos_id=0, pad_id=0, tokenizer=tok, device="cpu")
    batch, facts = PPOTrainer._score_rollouts(trainer, [(task, sample)], StepTimer())
    (f,) = facts
    inp = RewardInputs(batch.cu_seqlens, torch.tensor(f.line_end), torch.tensor(f.line_index),
                       torch.tensor(f.comment_end), torch.tensor([f.passed]),
                       torch.tensor([f.frac_passed]), [f.first_error_line])
    scores, _ = oracle_reward(inp)
    return scores[torch.tensor(f.line_end)].tolist()


def test_oracle_reward_counts_segmented_lines_on_cpu():
    # physical lines: 0 "    a = 1", 1 "", 2 "    b = 2" (the oracle's first error), 3 "    c";
    # the "\n\n" token merges lines 0 and 1, so b is segmented line 1, not 2
    pieces = ["    a = 1", "\n\n", "    b = 2", "\n", "    c", "\n"]
    assert _oracle_scores(pieces, False, 2) == [1.0, -1.0, -1.0]
    # an error past the last line (a missing step) lands on the last line: -1 there only
    assert _oracle_scores(pieces, False, 4) == [1.0, 1.0, -1.0]
    assert _oracle_scores(pieces, False, None) == [1.0, 1.0, -1.0]
    assert _oracle_scores(pieces, True, None) == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("field", ["frac_passed", "prm_scores"])
def test_make_experience_rejects_non_finite_rewards_on_cpu(models, random_batch, field):
    # one NaN reward would make every whitened advantage of the batch NaN
    cfg, tok, policy, reference, critic = models
    trainer = PPOTrainer(cfg, policy=policy, reference=reference, critic=critic, tokenizer=tok,
                         tasks=[], backend=None, sandbox=None)
    batch, facts = random_batch(tok, seed=4)
    prm = None
    if field == "frac_passed":
        trainer.exp_cfg.reward = "partial"
        facts[0].frac_passed = math.nan
    else:
        trainer.exp_cfg.reward = "dense"
        prm = ValuePRM.of(ValueModel.from_causal_lm(policy))
        with torch.no_grad():
            prm.head.bias.fill_(math.nan)
    with pytest.raises(ValueError, match=field):
        make_experience(batch, facts, policy=trainer.policy_engine,
                        reference=trainer.reference_fwd, critic=trainer.critic_engine, prm=prm,
                        cfg=trainer.exp_cfg, timer=StepTimer())


def test_oracle_reward_clamps_an_error_line_past_the_last_on_cpu():
    # one response of 3 lines (tokens 0-5, line ends at 1, 3, 5), failing
    line_end = torch.tensor([False, True, False, True, False, True])
    inp = RewardInputs(torch.tensor([0, 6]), line_end, torch.tensor([0, 0, 1, 1, 2, 2]),
                       torch.zeros(6, dtype=torch.bool), torch.tensor([False]), torch.tensor([0.0]),
                       [7])
    scores, _ = oracle_reward(inp)
    assert scores[line_end].tolist() == [1.0, 1.0, -1.0]  # as with no error line found
    inp.first_error_line = [-1]
    with pytest.raises(ValueError, match="cannot be negative"):
        oracle_reward(inp)
