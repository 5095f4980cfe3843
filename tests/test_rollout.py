"""HFGenerateBackend on a tiny random Llama: shapes, log-probs, batching, seeds, top-p."""
import pytest
import torch

from prmfast.config import ModelConfig
from prmfast.models import build_tiny_model, encode, train_tokenizer
from prmfast.rollout import HFGenerateBackend
from prmfast.rollout.hf import (PreallocatedLayer, preallocate, sample_categorical,
                                top_p_filter)

PROMPTS = ["def f(xs):\n", "# 1. sort the list\ndef f(xs):\n    xs = sorted(xs)\n", "x"]


@pytest.fixture(scope="module")
def policy():
    torch.manual_seed(0)
    tok = train_tokenizer(["def f(xs):\n    return sorted(xs)\n# sort the list\n"] * 10, 300)
    cfg = ModelConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64)
    model = build_tiny_model(tok, cfg)
    return model, tok, [encode(tok, p) for p in PROMPTS]


def test_shapes_and_finish_reasons_on_cpu(policy):
    model, tok, prompts = policy
    out = HFGenerateBackend(model, tok, batch_size=4).generate(
        prompts, n=3, max_new_tokens=12, temperature=1.0, seed=0)
    assert [len(group) for group in out] == [3, 3, 3]
    for prompt, group in zip(prompts, out):
        for s in group:
            assert s.prompt_ids == prompt
            assert len(s.logprobs) == len(s.response_ids)
            assert tok.eos_token_id not in s.response_ids
            assert s.finish_reason in ("stop", "length")
            assert (s.finish_reason == "length") == (len(s.response_ids) == 12)
            assert s.text == tok.decode(s.response_ids, skip_special_tokens=True)
            assert all(lp <= 0 for lp in s.logprobs)


def test_stop_on_eos_on_cpu(policy):
    model, tok, prompts = policy

    def eos_first(module, args, logits):   # make EOS the only likely token
        return logits.index_fill(-1, torch.tensor([tok.eos_token_id]), 50.0)

    hook = model.lm_head.register_forward_hook(eos_first)
    try:
        out = HFGenerateBackend(model, tok).generate(prompts, n=2, max_new_tokens=5,
                                                      temperature=1.0, seed=0)
    finally:
        hook.remove()
    assert all(s.finish_reason == "stop" and s.response_ids == [] for g in out for s in g)


def test_logprobs_match_teacher_forcing_on_cpu(policy):
    model, tok, prompts = policy
    out = HFGenerateBackend(model, tok, batch_size=8).generate(
        prompts, n=2, max_new_tokens=10, temperature=1.0, top_p=1.0, seed=1)
    for s in (s for g in out for s in g):
        ids = torch.tensor([s.prompt_ids + s.response_ids])
        with torch.no_grad():
            logp = torch.log_softmax(model(ids).logits[0].float(), -1)
        p = len(s.prompt_ids)
        want = logp[p - 1:-1].gather(1, ids[0, p:, None]).squeeze(1)
        torch.testing.assert_close(torch.tensor(s.logprobs), want, atol=1e-4, rtol=1e-4)


def test_left_padded_batches_equal_unbatched_greedy_on_cpu(policy):
    model, tok, prompts = policy
    kw = dict(n=1, max_new_tokens=15, temperature=0.0)
    batched = HFGenerateBackend(model, tok, batch_size=8).generate(prompts, **kw)
    for prompt, group in zip(prompts, batched):
        alone = HFGenerateBackend(model, tok, batch_size=1).generate([prompt], **kw)[0][0]
        assert group[0].response_ids == alone.response_ids
        torch.testing.assert_close(torch.tensor(group[0].logprobs), torch.tensor(alone.logprobs),
                                   atol=1e-4, rtol=1e-4)


def test_seeded_reproducibility_on_cpu(policy):
    model, tok, prompts = policy
    backend = HFGenerateBackend(model, tok, batch_size=4)
    kw = dict(n=4, max_new_tokens=8, temperature=1.0, top_p=0.9)
    a, b, c = (backend.generate(prompts, seed=s, **kw) for s in (7, 7, 8))
    ids = lambda out: [s.response_ids for g in out for s in g]  # noqa: E731
    assert ids(a) == ids(b) and ids(a) != ids(c)


@pytest.mark.parametrize("temperature, top_p", [(1.0, 0.9), (1.0, 1.0), (0.0, 1.0)])
def test_preallocated_cache_gives_the_dynamic_caches_samples_on_cpu(policy, temperature, top_p):
    """Same seed, fresh random prompts of several lengths (left padding), several batches:
    the same tokens, finish reasons and log-probs, bitwise."""
    model, tok, _ = policy
    gen = torch.Generator().manual_seed(11)
    prompts = [torch.randint(3, len(tok), (int(n),), generator=gen).tolist()
               for n in torch.randint(1, 30, (6,), generator=gen)]
    kw = dict(n=3, max_new_tokens=25, temperature=temperature, top_p=top_p, seed=5)
    out = {kind: HFGenerateBackend(model, tok, batch_size=7, kv_cache=kind).generate(prompts, **kw)
           for kind in HFGenerateBackend.KV_CACHES}
    flat = {kind: [(s.response_ids, s.logprobs, s.finish_reason) for g in groups for s in g]
            for kind, groups in out.items()}
    assert flat["preallocated"] == flat["dynamic"]
    assert len({tuple(ids) for ids, _, _ in flat["dynamic"]}) > 1


@pytest.mark.parametrize("kv_cache", HFGenerateBackend.KV_CACHES)
def test_stopped_rows_leave_the_batch_without_changing_the_samples_on_cpu(policy, kv_cache):
    """EOS made likely, so rows stop at many different steps: dropping stopped rows from the
    decode batch (the default) gives the tokens of never dropping them, and log-probs equal to
    rounding (the matmuls see fewer rows)."""
    model, tok, _ = policy
    gen = torch.Generator().manual_seed(3)
    prompts = [torch.randint(3, len(tok), (int(n),), generator=gen).tolist()
               for n in torch.randint(1, 20, (5,), generator=gen)]

    def likely_eos(module, args, logits):
        return logits + 3.5 * torch.nn.functional.one_hot(
            torch.tensor(tok.eos_token_id), logits.shape[-1])

    kw = dict(n=4, max_new_tokens=30, temperature=1.0, top_p=0.95, seed=9)
    never = HFGenerateBackend(model, tok, batch_size=20, kv_cache=kv_cache)
    never.SHRINK_AT = float("inf")
    hook = model.lm_head.register_forward_hook(likely_eos)
    try:
        out = [b.generate(prompts, **kw)
               for b in (HFGenerateBackend(model, tok, batch_size=20, kv_cache=kv_cache), never)]
    finally:
        hook.remove()
    shrunk, full = ([s for g in groups for s in g] for groups in out)
    assert [s.response_ids for s in shrunk] == [s.response_ids for s in full]
    assert [s.finish_reason for s in shrunk] == [s.finish_reason for s in full]
    for a, b in zip(shrunk, full):
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-5)
    assert len({len(s.response_ids) for s in full}) >= 5       # stops at many steps


def test_sample_categorical_draws_each_token_with_its_probability_on_cpu():
    gen = torch.Generator().manual_seed(0)
    probs = torch.rand(3, 6, generator=gen) * (torch.rand(3, 6, generator=gen) > 0.3)
    probs[:, 2] += 0.1                                  # no row all zero
    draws = 40_000
    uniform = torch.rand(3 * draws, generator=gen)
    tok = sample_categorical(probs.repeat_interleave(draws, 0), uniform).view(3, draws)
    freq = torch.stack([torch.bincount(row, minlength=6) for row in tok]).double() / draws
    expected = (probs / probs.sum(1, keepdim=True)).double()
    sigma = (expected * (1 - expected) / draws).sqrt()
    assert ((freq - expected).abs() <= 5 * sigma + 1e-12).all()
    assert (freq[expected == 0] == 0).all()             # a weight of 0 is never drawn
    # a draw that rounds to the row's total takes the likeliest token, not a weight-0 one
    edge = sample_categorical(torch.tensor([[0.3, 0.7, 0.0]]), torch.tensor([1.0]))
    assert edge.tolist() == [1]


def test_preallocated_layer_equals_dynamic_layer_on_cpu():
    from transformers.cache_utils import DynamicLayer
    torch.manual_seed(0)
    ours, theirs = PreallocatedLayer(capacity=9), DynamicLayer()
    for n in (5, 1, 1, 2):
        k, v = torch.randn(2, 3, n, 4), torch.randn(2, 3, n, 4)
        for a, b in zip(ours.update(k, v), theirs.update(k, v)):
            assert torch.equal(a, b)
        assert ours.get_seq_length() == theirs.get_seq_length()
    with pytest.raises(ValueError, match="capacity of 9"):
        ours.update(torch.randn(2, 3, 1, 4), torch.randn(2, 3, 1, 4))


def test_preallocated_layer_keeps_rows_as_dynamic_layer_does_on_cpu():
    from transformers.cache_utils import DynamicLayer
    torch.manual_seed(1)
    ours, theirs = PreallocatedLayer(capacity=12), DynamicLayer()
    for n, keep in ((5, None), (1, [0, 2, 3]), (1, None), (2, [2]), (1, None)):
        if keep is not None:
            for layer in (ours, theirs):
                layer.batch_select_indices(torch.tensor(keep))
        rows = theirs.keys.shape[0] if theirs.is_initialized else 4
        k, v = torch.randn(rows, 3, n, 4), torch.randn(rows, 3, n, 4)
        for a, b in zip(ours.update(k, v), theirs.update(k, v)):
            assert torch.equal(a, b)
    assert ours.keys.shape == (1, 3, 10, 4)


def test_preallocate_keeps_other_layer_kinds_on_cpu():
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer
    cache = DynamicCache()
    cache.layers = [DynamicLayer(), DynamicSlidingWindowLayer(sliding_window=4)]
    kinds = [type(layer) for layer in preallocate(cache, 10).layers]
    assert kinds == [PreallocatedLayer, DynamicSlidingWindowLayer]


def test_top_p_filter_on_cpu():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.05, 0.15, 0.3, 0.5]]))
    kept = torch.isfinite(top_p_filter(logits, 0.7))
    assert kept.tolist() == [[True, True, False, False], [False, False, True, True]]
    assert torch.isfinite(top_p_filter(logits, 0.01)).sum(1).tolist() == [1, 1]
    assert torch.equal(top_p_filter(logits, 1.0), logits)


def test_bad_arguments_on_cpu(policy):
    model, tok, prompts = policy
    backend = HFGenerateBackend(model, tok)
    with pytest.raises(ValueError, match="top_p"):
        backend.generate(prompts, n=1, max_new_tokens=4, temperature=1.0, top_p=0.0)
    with pytest.raises(ValueError, match="prompt_ids"):
        backend.generate([[]], n=1, max_new_tokens=4, temperature=1.0)
    with pytest.raises(ValueError, match="kv_cache"):
        HFGenerateBackend(model, tok, kv_cache="static")
