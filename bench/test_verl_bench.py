"""prmfast's verl estimator against verl's own GAE on the same batch, same run.

    .venv/bin/pip install --no-deps -r requirements-verl.txt     # once (docs/integrations.md)
    .venv/bin/python -m pytest bench/test_verl_bench.py --benchmark-only -s

Per batch size: verl's "gae" estimator (core_algos.compute_gae_advantage_return: a Python loop
over the T response positions, then whitening) and prmfast's "prmfast_line_gae" (the fused
numba kernel on the packed mask tokens, then the same whitening) on one random verl-shaped
batch with every line score zero, where both must give the same advantages and returns (checked
first); and, apart, what the DataProto path adds: turning the ragged non-tensor line lists into
[B, T] tensors (line_tensors). One JSON row per run (machine, date, commit,
versions, figures) is appended to bench/results/verl_adapter.jsonl."""
import json
import os
from pathlib import Path

import pytest
import torch

from conftest import best_time

core_algos = pytest.importorskip(
    "verl.trainer.ppo.core_algos",
    reason="verl is an optional extra: pip install --no-deps -r requirements-verl.txt")
from prmfast.integrations import verl as pv  # noqa: E402
from test_rl_iteration_bench import environment  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "verl_adapter.jsonl"
SIZES = [(64, 512), (256, 1024), (512, 2048)]
GAMMA, LAM = 1.0, 0.95
ROW: dict = {}


@pytest.fixture(scope="module", autouse=True)
def results_row():
    import ray
    import tensordict
    import verl
    ROW.clear()
    ROW.update(environment(), load_before=os.getloadavg()[0])
    ROW.pop("run", None)
    ROW["versions"].update(verl=verl.__version__, ray=ray.__version__,
                           tensordict=tensordict.__version__)
    yield ROW
    ROW["load_after"] = os.getloadavg()[0]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as f:
        f.write(json.dumps(ROW) + "\n")


def verl_batch(b, t, seed=0):
    """Right-padded responses of random lengths in [t/4, t], random rewards and values, line
    ends on ~10 % of the tokens (no scores: zero line scores)."""
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(t // 4, t + 1, (b,), generator=gen)
    mask = torch.arange(t)[None, :] < lengths[:, None]
    return dict(token_level_rewards=torch.randn(b, t, generator=gen) * mask,
                values=torch.randn(b, t, generator=gen), response_mask=mask.long(),
                line_end=(torch.rand(b, t, generator=gen) < 0.1) & mask,
                line_scores=torch.zeros(b, t), passed=torch.rand(b, generator=gen) < 0.5)


@pytest.mark.parametrize("b,t", SIZES, ids=lambda v: str(v))
def test_adapter_vs_verls_gae(benchmark, report, b, t):
    batch = verl_batch(b, t)
    mask = batch["response_mask"].bool()
    verl_gae = core_algos.get_adv_estimator_fn("gae")
    ours = core_algos.get_adv_estimator_fn(pv.ESTIMATOR)
    base = lambda: verl_gae(batch["token_level_rewards"], batch["values"], batch["response_mask"],
                            GAMMA, LAM)
    fast = lambda: ours(batch["token_level_rewards"], batch["response_mask"],
                        values=batch["values"], line_end=batch["line_end"],
                        line_scores=batch["line_scores"], passed=batch["passed"], gamma=GAMMA,
                        lam=LAM)
    for got, expected in zip(fast(), base()):
        torch.testing.assert_close(got[mask], expected[mask], rtol=1e-4, atol=1e-4)
    base_s = best_time(base, rounds=20)       # as many rounds as the adapter gets
    benchmark.pedantic(fast, rounds=20, warmup_rounds=2)
    fast_s = benchmark.stats.stats.min

    # the DataProto path's extra step: ragged non-tensor line lists -> [B, T] tensors
    ends = [row.nonzero().flatten().tolist() for row in batch["line_end"]]
    scores = [[0.5] * len(row) for row in ends]
    lists_s = best_time(lambda: pv.line_tensors(ends, scores, batch["response_mask"]), rounds=5)
    figures = dict(verl_gae_s=base_s, adapter_s=fast_s, speedup=base_s / fast_s,
                   line_lists_s=lists_s, speedup_with_lists=base_s / (fast_s + lists_s),
                   tokens=int(mask.sum()))
    ROW[f"{b}x{t}"] = figures
    report(f"verl adapter vs verl gae B={b} T={t}", **figures)
