"""prmfast.integrations.verl against the real verl package: the estimator equals verl's own GAE
when every line score is zero and prmfast's float64 reference otherwise (fresh random batches,
ragged masks), through verl's registry, a DataProto and verl's trainer function; compute_score
loads through verl's reward-function loader; bad input is a clear error."""
import numpy as np
import pytest
import torch

core_algos = pytest.importorskip(
    "verl.trainer.ppo.core_algos",
    reason="verl is an optional extra: pip install --no-deps -r requirements-verl.txt "
           "(docs/integrations.md)")
from omegaconf import OmegaConf  # noqa: E402
from verl import DataProto  # noqa: E402
from verl.trainer.ppo.reward import get_custom_reward_fn  # noqa: E402
from verl.utils.torch_functional import masked_whiten  # noqa: E402

from prmfast import kernels  # noqa: E402
from prmfast.config import RLConfig  # noqa: E402
from prmfast.data.task import Task  # noqa: E402
from prmfast.integrations import verl as pv  # noqa: E402
from prmfast.integrations.rewards import task_ground_truth  # noqa: E402
from prmfast.sandbox import AssertTests  # noqa: E402

SHAPES = [(1, 5), (3, 7), (8, 33), (16, 200)]   # verl's whitening needs 2+ tokens


def random_batch(b, t, seed, holes=False, scored=True):
    """A verl-shaped batch: right-padded responses of random lengths (0 and t included), with
    `holes` also masked-out spans inside (multi-turn observation tokens); random line ends on
    the mask, their scores (zero unless `scored`), passed flags."""
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(0, t + 1, (b,), generator=gen)
    lengths[0] = t
    mask = torch.arange(t)[None, :] < lengths[:, None]
    if holes:
        mask &= torch.rand(b, t, generator=gen) > 0.3
        mask[0, :2] = True
    line_end = (torch.rand(b, t, generator=gen) < 0.2) & mask
    scores = torch.randn(b, t, generator=gen) * line_end * float(scored)
    return dict(token_level_rewards=torch.randn(b, t, generator=gen) * mask,
                values=torch.randn(b, t, generator=gen), response_mask=mask.long(),
                line_end=line_end, line_scores=scores,
                passed=torch.rand(b, generator=gen) < 0.5)


def as_dataproto(batch):
    """The batch as verl holds it: tensors in .batch, ragged line lists in .non_tensor_batch."""
    ends, scores = np.empty(len(batch["passed"]), object), np.empty(len(batch["passed"]), object)
    for i, (row_ends, row_scores) in enumerate(zip(batch["line_end"], batch["line_scores"])):
        where = row_ends.nonzero().flatten()
        ends[i], scores[i] = where.tolist(), row_scores[where].tolist()
    return DataProto.from_dict(
        tensors={k: batch[k] for k in ("token_level_rewards", "values", "response_mask")},
        non_tensors={pv.LINE_ENDS_KEY: ends, pv.LINE_SCORES_KEY: scores,
                     pv.PASSED_KEY: batch["passed"].numpy()})


def adapter(batch, gamma, lam, config=None):
    fn = core_algos.get_adv_estimator_fn(pv.ESTIMATOR)
    return fn(batch["token_level_rewards"], batch["response_mask"], values=batch["values"],
              line_end=batch["line_end"], line_scores=batch["line_scores"],
              passed=batch["passed"], gamma=gamma, lam=lam, config=config)


def float64_reference(batch, gamma, lam, prm_coef_fail, prm_coef_pass, normalize_by_lines):
    """Rewards assembled in float64 by hand, GAE by prmfast's float64 torch reference, whitened
    as verl's gae whitens."""
    mask = batch["response_mask"].bool()
    rewards = batch["token_level_rewards"].double().clone()
    for i in range(mask.shape[0]):
        n_lines = int(batch["line_end"][i].sum()) if normalize_by_lines else 1
        coef = (prm_coef_pass if batch["passed"][i] else prm_coef_fail) / max(n_lines, 1)
        rewards[i] += coef * batch["line_scores"][i].double() * batch["line_end"][i]
    cu, r, v = kernels.pack(mask, rewards, batch["values"].double())
    adv, ret = kernels.unpack(mask, *kernels.gae(r, v, cu, gamma=gamma, lam=lam, impl="torch"))
    return masked_whiten(adv, mask) * mask, ret


@pytest.mark.parametrize("holes", [False, True], ids=["right_padded", "with_holes"])
@pytest.mark.parametrize("b,t", SHAPES)
def test_zero_line_scores_equal_verls_gae(b, t, holes):
    for seed in range(3):
        batch = random_batch(b, t, seed=1000 * b + t + seed, holes=holes, scored=False)
        gamma, lam = [(1.0, 0.95), (0.99, 1.0), (0.9, 0.5)][seed]
        expected = core_algos.get_adv_estimator_fn("gae")(
            batch["token_level_rewards"], batch["values"], batch["response_mask"], gamma, lam)
        got = adapter(batch, gamma, lam)
        mask = batch["response_mask"].bool()
        for g, e in zip(got, expected):
            torch.testing.assert_close(g[mask], e[mask], rtol=1e-5, atol=1e-5)
        assert not got[0][~mask].any() and not got[1][~mask].any()


@pytest.mark.parametrize("holes", [False, True], ids=["right_padded", "with_holes"])
@pytest.mark.parametrize("b,t", SHAPES[1:])
def test_line_scores_equal_the_float64_reference(b, t, holes):
    defaults = RLConfig()
    options = [{}, {"prm_coef_fail": 0.7, "prm_coef_pass": 0.1, "normalize_by_lines": False}]
    for seed, option in enumerate(options):
        batch = random_batch(b, t, seed=7 * b + t + seed, holes=holes)
        coefs = {k: option.get(k, getattr(defaults, k))
                 for k in ("prm_coef_fail", "prm_coef_pass", "normalize_by_lines")}
        expected = float64_reference(batch, 0.99, 0.95, **coefs)
        config = OmegaConf.create({"gamma": 0.99, "prmfast": option})
        got = adapter(batch, 0.99, 0.95, config=config)
        mask = batch["response_mask"].bool()
        for g, e in zip(got, expected):
            torch.testing.assert_close(g.double()[mask], e[mask], rtol=1e-4, atol=1e-5)
        # the line scores do move the advantages (the check above is not vacuous)
        plain = adapter(dict(batch, line_scores=torch.zeros_like(batch["line_scores"])), 0.99, 0.95)
        assert (plain[0] - got[0])[mask].abs().max() > 1e-3


def test_dataproto_and_verls_trainer_function():
    """compute_advantage on a DataProto (ragged non-tensor line lists); patch_ray_trainer routes
    verl's own ray_trainer.compute_advantage through it and leaves 'gae' to verl."""
    ray_trainer = pytest.importorskip(
        "verl.trainer.ppo.ray_trainer", reason="verl.trainer.ppo.ray_trainer needs verl's trainer "
        "dependencies (torchdata, peft, accelerate, ...) beyond requirements-verl.txt")
    batch = random_batch(6, 40, seed=3, holes=True)
    expected = float64_reference(batch, 1.0, 0.95, **{k: getattr(RLConfig(), k) for k in
                                 ("prm_coef_fail", "prm_coef_pass", "normalize_by_lines")})
    pv.patch_ray_trainer()
    pv.patch_ray_trainer()
    data = ray_trainer.compute_advantage(as_dataproto(batch), adv_estimator=pv.ESTIMATOR,
                                         gamma=1.0, lam=0.95, config={})
    mask = batch["response_mask"].bool()
    for key, e in zip(("advantages", "returns"), expected):
        torch.testing.assert_close(data.batch[key].double()[mask], e[mask], rtol=1e-4, atol=1e-5)
    verl_gae = ray_trainer.compute_advantage(
        as_dataproto(batch), adv_estimator="gae", gamma=1.0, lam=0.95, config={})
    own = core_algos.compute_gae_advantage_return(batch["token_level_rewards"], batch["values"],
                                                  batch["response_mask"], 1.0, 0.95)
    torch.testing.assert_close(verl_gae.batch["advantages"], own[0])


def test_bad_input_is_a_clear_error():
    batch = random_batch(4, 10, seed=5)
    data = as_dataproto(batch)
    data.non_tensor_batch.pop(pv.LINE_SCORES_KEY)
    with pytest.raises(ValueError, match="non_tensor_batch\\['line_scores'\\] is missing"):
        pv.compute_advantage(data, pv.ESTIMATOR, config={})
    data = as_dataproto(batch)
    data.batch.pop("values")
    with pytest.raises(ValueError, match="batch\\['values'\\] is missing"):
        pv.compute_advantage(data, pv.ESTIMATOR, config={})
    with pytest.raises(ValueError, match="values must have token_level_rewards' shape"):
        adapter(dict(batch, values=batch["values"][:, :-1]), 1.0, 0.95)
    with pytest.raises(ValueError, match="passed must be a bool tensor of shape \\(4,\\)"):
        adapter(dict(batch, passed=batch["passed"][:3]), 1.0, 0.95)
    with pytest.raises(ValueError, match="response_mask must have"):
        adapter(dict(batch, response_mask=batch["response_mask"][:2]), 1.0, 0.95)
    with pytest.raises(ValueError, match="needs the critic's values"):
        core_algos.get_adv_estimator_fn(pv.ESTIMATOR)(
            token_level_rewards=batch["token_level_rewards"],
            response_mask=batch["response_mask"], config={}, index=np.arange(4))
    with pytest.raises(ValueError, match="gamma and lam: .* needs them"):
        adapter(batch, None, 0.95)
    with pytest.raises(ValueError, match="algorithm.prmfast.prm_coef is not an option"):
        adapter(batch, 1.0, 0.95, config={"prmfast": {"prm_coef": 1.0}})
    one_token = dict(batch, response_mask=torch.zeros_like(batch["response_mask"]))
    one_token["response_mask"][2, 0] = 1
    with pytest.raises(ValueError, match="at least 2 tokens to whiten the advantages .*got 1"):
        adapter(one_token, 1.0, 0.95)
    mask = torch.ones(2, 5, dtype=torch.long)
    mask[1, 3:] = 0
    with pytest.raises(ValueError, match="response 1: line end at token 4 lies outside"):
        pv.line_tensors([[4], [0, 4]], [[1.0], [1.0, 2.0]], mask)
    with pytest.raises(ValueError, match="response 0: 'line_ends' and 'line_scores' must be"):
        pv.line_tensors([[1, 2], []], [[1.0], []], mask)
    with pytest.raises(ValueError, match="must be token positions in \\[0, 5\\)"):
        pv.line_tensors([[5], []], [[1.0], []], mask)
    with pytest.raises(ValueError, match="one entry per response \\(2\\), got 1"):
        pv.line_tensors([[1]], [[1.0], []], mask)


def test_compute_score_loads_as_a_verl_reward_function():
    """verl's own loader (reward.custom_reward_function, a pkg:// path) finds compute_score; it
    runs the response in the process-wide sandbox (the cases: tests/integrations/test_rewards)."""
    task = Task("sq", "def sq(x):\n", AssertTests("assert sq(2) == 4\nassert sq(3) == 9\n"),
                "sq", None)
    cfg = OmegaConf.create({"reward": {"custom_reward_function": {
        "path": "pkg://prmfast.integrations.verl", "name": "compute_score", "reward_kwargs": {}}}})
    score = get_custom_reward_fn(cfg)
    for text, expected in (("    return x * x\n", 1.0), ("    return x + x\n", 0.0)):
        got = score(data_source="prmfast", solution_str=text,
                    ground_truth=task_ground_truth(task), extra_info={})
        assert (got["score"], got[pv.PASSED_KEY]) == (expected, bool(expected))
