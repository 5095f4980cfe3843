"""experience.line_view (what the RL stage saves per line of the last iteration's responses)
against masks over the packed tokens, on random batches."""
import pytest
import torch

from prmfast.rl.experience import Experience, line_view


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_line_view_is_the_mean_advantage_and_the_score_at_the_line_end_on_cpu(
        tiny, random_batch, seed):
    _, tok, _ = tiny
    batch, facts = random_batch(tok, n_seq=8, seed=seed)
    n = batch.num_tokens
    torch.manual_seed(seed)
    adv, scores = torch.randn(n), torch.randn(n)
    zeros, flags = torch.zeros(n), torch.zeros(len(facts))
    exp = Experience(batch, zeros, zeros, zeros, torch.zeros(n, dtype=torch.bool), zeros.bool(),
                     scores, zeros, zeros, adv, zeros, flags.bool(), flags, flags)
    views = line_view(exp, facts)
    cu = batch.cu_seqlens
    assert len(views) == len(facts)
    for s, (f, view) in enumerate(zip(facts, views)):
        index = torch.tensor(f.line_index, dtype=torch.long)
        ends = torch.tensor(f.line_end, dtype=torch.bool)
        a, sc = adv[cu[s]:cu[s + 1]], scores[cu[s]:cu[s + 1]]
        n_lines = int(index.max()) + 1 if index.numel() else 0
        assert len(view["advantage"]) == len(view["line_reward"]) == n_lines
        for m in range(n_lines):
            assert view["advantage"][m] == pytest.approx(float(a[index == m].mean()), abs=1e-6)
            assert view["line_reward"][m] == pytest.approx(float(sc[(index == m) & ends][0]),
                                                           abs=1e-6)
