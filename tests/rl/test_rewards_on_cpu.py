"""Reward variants against hand-computed rewards (docs/design.md, "Method": the rewards)."""
import pytest
import torch

from prmfast import kernels
from prmfast.rl.rewards import RewardInputs, line_rewards

# Two responses, packed: seq 0 has 4 tokens and 2 code lines (ends at t=1, t=3), fails with half
# of its tests passed; seq 1 has 3 tokens + EOS, a comment line (ends at t=0) and a code line
# (ends at t=2), passes. The kernel's 1/T uses T = 2 lines for both.
CU = torch.tensor([0, 4, 8])
LINE_END = torch.tensor([0, 1, 0, 1, 1, 0, 1, 0], dtype=torch.bool)
LINE_INDEX = torch.tensor([0, 0, 1, 1, 0, 1, 1, -1])
COMMENT_END = torch.tensor([0, 0, 0, 0, 1, 0, 0, 0], dtype=torch.bool)
PRM = torch.tensor([0.0, 0.8, 0.0, -0.4, 0.3, 0.0, 0.6, 0.0])


def rewards(variant, *, neutral=True, normalize=True, kl=None, kl_coef=0.0, first_error=(1, None)):
    inp = RewardInputs(cu_seqlens=CU, line_end=LINE_END, line_index=LINE_INDEX,
                       comment_end=COMMENT_END, passed=torch.tensor([False, True]),
                       frac_passed=torch.tensor([0.5, 1.0]), first_error_line=list(first_error),
                       prm_scores=PRM)
    scores, outcome = line_rewards(variant, inp, neutral_comments=neutral)
    kl = torch.zeros(8) if kl is None else kl
    return kernels.dense_rewards(scores, LINE_END, kl, outcome, inp.passed, CU, kl_coef=kl_coef,
                                 prm_coef_fail=0.25, prm_coef_pass=0.025,
                                 normalize_by_lines=normalize, impl="torch").tolist()


CASES = {
    "sparse": [0, 0, 0, 0, 0, 0, 0, 1],
    "partial": [0, 0, 0, 0.5, 0, 0, 0, 1],
    # lambda_fail * (+1, -1) / 2 on seq 0; lambda_pass * (comment -> 0, +1) / 2 on seq 1
    "oracle": [0, 0.125, 0, -0.125, 0, 0, 0.0125, 1],
    # 0.25 * 0.8 / 2, 0.25 * -0.4 / 2; comment neutral, 0.025 * 0.6 / 2
    "dense": [0, 0.1, 0, -0.05, 0, 0, 0.0075, 1],
}


@pytest.mark.parametrize("variant", sorted(CASES))
def test_variant_rewards_match_hand_computed_on_cpu(variant):
    assert rewards(variant) == pytest.approx(CASES[variant], abs=1e-6)


def test_without_length_normalisation_on_cpu():
    assert rewards("oracle", normalize=False) == pytest.approx(
        [0, 0.25, 0, -0.25, 0, 0, 0.025, 1], abs=1e-6)
    assert rewards("dense", normalize=False) == pytest.approx(
        [0, 0.2, 0, -0.1, 0, 0, 0.015, 1], abs=1e-6)


def test_without_neutral_comments_the_comment_line_is_rewarded_on_cpu():
    assert rewards("dense", neutral=False)[4] == pytest.approx(0.025 * 0.3 / 2)
    assert rewards("oracle", neutral=False)[4] == pytest.approx(0.025 * 1 / 2)


def test_kl_penalty_on_every_token_on_cpu():
    out = rewards("sparse", kl=torch.full((8,), 0.1), kl_coef=0.5)
    assert out == pytest.approx([-0.05] * 7 + [0.95], abs=1e-6)


def test_oracle_edge_cases_on_cpu():
    # first error at line 0: every line of seq 0 is -1
    assert rewards("oracle", first_error=(0, None))[:4] == pytest.approx([0, -0.125, 0, -0.125])
    # failing but the oracle found no wrong step: only the last line is -1
    assert rewards("oracle", first_error=(None, None))[:4] == pytest.approx([0, 0.125, 0, -0.125])
    # a passing response is all +1 whatever the oracle says
    assert rewards("oracle", first_error=(1, 0))[4:] == pytest.approx([0, 0, 0.0125, 1])


def test_bad_variant_and_missing_inputs_fail_on_cpu():
    inp = RewardInputs(cu_seqlens=CU, line_end=LINE_END, line_index=LINE_INDEX,
                       comment_end=COMMENT_END, passed=torch.tensor([False, True]),
                       frac_passed=torch.tensor([0.5, 1.0]))
    with pytest.raises(ValueError, match="rl.reward"):
        line_rewards("dens", inp, neutral_comments=True)
    with pytest.raises(ValueError, match="prm_scores"):
        line_rewards("dense", inp, neutral_comments=True)
    with pytest.raises(ValueError, match="first_error_line"):
        line_rewards("oracle", inp, neutral_comments=True)
