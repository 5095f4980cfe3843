"""HFGenerateBackend on a tiny random Llama: shapes, log-probs, batching, seeds, top-p."""
import pytest
import torch

from prmfast.config import ModelConfig
from prmfast.models import build_tiny_model, encode, train_tokenizer
from prmfast.rollout import HFGenerateBackend
from prmfast.rollout.hf import PreallocatedLayer, preallocate, top_p_filter

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
