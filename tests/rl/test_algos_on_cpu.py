import pytest
import torch

from prmfast.rl.algos import (checkpoint_steps, lr_factor, minibatch_order, step_seed,
                              whiten)


def test_checkpoint_steps_evenly_spaced_on_cpu():
    assert checkpoint_steps(40, 4) == [10, 20, 30, 40]
    assert checkpoint_steps(2, 4) == [1, 2]
    assert checkpoint_steps(10, 3) == [3, 7, 10]
    assert checkpoint_steps(10, 0) == []


def test_lr_factor_schedules_on_cpu():
    assert lr_factor("constant", 5, 10) == 1.0
    assert lr_factor("linear", 0, 10) == 1.0 and lr_factor("linear", 10, 10) == 0.0
    assert lr_factor("cosine", 5, 10) == pytest.approx(0.5)
    assert lr_factor("constant", 0, 10, warmup=4) == 0.25
    with pytest.raises(ValueError, match="rl.lr_schedule"):
        lr_factor("step", 0, 10)


def test_whiten_on_cpu():
    x = torch.tensor([1.0, 2.0, 3.0, 4.0])
    w = whiten(x)
    assert float(w.mean()) == pytest.approx(0.0, abs=1e-6)
    assert float(w.std()) == pytest.approx(1.0, abs=1e-4)
    assert whiten(torch.tensor([3.0])).tolist() == [0.0]


def test_step_seed_depends_on_step_only_on_cpu():
    assert step_seed(0, 3) == step_seed(0, 3) != step_seed(0, 4) != step_seed(1, 4)


@pytest.mark.parametrize("seed", range(20))
def test_minibatch_order_keeps_each_prompts_sequences_together_on_cpu(seed):
    rng = torch.Generator().manual_seed(seed)
    sizes = torch.randint(1, 6, (int(torch.randint(1, 9, (), generator=rng)),), generator=rng)
    ids = torch.randperm(int(sizes.sum()), generator=rng).tolist()   # groups need not be ranges
    groups = [ids[int(a):int(b)] for a, b in zip([0, *sizes.cumsum(0)[:-1]], sizes.cumsum(0))]
    order = minibatch_order(groups, "prompt", torch.Generator().manual_seed(seed))
    assert sorted(order) == sorted(ids)
    for group in groups:                        # contiguous, in the group's own order
        start = order.index(group[0])
        assert order[start:start + len(group)] == group
    again = minibatch_order(groups, "prompt", torch.Generator().manual_seed(seed))
    assert again == order
    mixed = minibatch_order(groups, "sequence", torch.Generator().manual_seed(seed))
    assert sorted(mixed) == sorted(ids)


def test_minibatch_order_shuffles_the_prompts_and_refuses_unknown_kinds_on_cpu():
    groups = [[2 * g, 2 * g + 1] for g in range(8)]
    firsts = {minibatch_order(groups, "prompt", torch.Generator().manual_seed(s))[0]
              for s in range(20)}
    assert len(firsts) > 3
    with pytest.raises(ValueError, match="'tasks' is not one of"):
        minibatch_order(groups, "tasks", torch.Generator())
