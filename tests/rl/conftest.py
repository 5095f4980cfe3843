"""Tiny models and a hand-made packed batch for the PPO tests (no rollout, no sandbox)."""
import copy
import random

import pytest
import torch

from prmfast.config import load_config
from prmfast.models import ValueModel, build_tiny_model, train_tokenizer
from prmfast.rl.experience import PackedBatch, ResponseFacts

TEXTS = ["def f(xs):\n    xs = [x for x in xs if x > 3]\n    return sum(xs)\n",
         "    xs = sorted(xs)\n    # comment\n    return xs[:2]\n"] * 20


@pytest.fixture(scope="session")
def tiny():
    """(cfg, tokenizer, policy): a 2-layer 32-wide Llama and a 300-token BPE."""
    cfg = load_config("smoke", sets=["model.hidden_size=32", "model.intermediate_size=64",
                                     "rl.ppo_epochs=1", "rl.minibatches=2"])
    tok = train_tokenizer(TEXTS, 300)
    torch.manual_seed(0)
    return cfg, tok, build_tiny_model(tok, cfg.model)


def random_batch(tok, n_seq=6, seed=0):
    """Sequences of random prompt (2-6) and response (0-9) tokens with random line ends."""
    rng = random.Random(seed)
    seqs, plens, facts = [], [], []
    for _ in range(n_seq):
        p, r = rng.randint(2, 6), rng.randint(0, 9)
        seqs.append([rng.randrange(2, len(tok)) for _ in range(p + r)])
        plens.append(p)
        ends = [rng.random() < 0.3 for _ in range(r)]
        if r:
            ends[-1] = True
        index, line = [], 0
        for e in ends:
            index.append(line)
            line += e
        facts.append(ResponseFacts(ends, index, [e and rng.random() < 0.3 for e in ends],
                                   passed=rng.random() < 0.5, frac_passed=rng.random()))
    return PackedBatch.from_sequences(seqs, plens, tok.pad_token_id), facts


@pytest.fixture(name="random_batch")
def random_batch_fixture():
    return random_batch


@pytest.fixture
def models(tiny):
    cfg, tok, policy = tiny
    policy = copy.deepcopy(policy)
    return cfg, tok, policy, copy.deepcopy(policy), ValueModel.from_causal_lm(policy)
