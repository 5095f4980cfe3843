"""Packed forwards (prmfast.models.packed) equal padded forwards of the same sequences."""
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from prmfast.models import ValueModel
from prmfast.models.packed import (PackedLayout, attn_implementation_for, block_causal_mask,
                                   pack_sequences, pack_shared, packed_attention_kind,
                                   packed_hidden, packed_line_scores, packed_logprobs,
                                   packed_position_ids, packed_predecessors, packed_values)

LENGTHS = (7, 1, 0, 12, 5)


def _model(attn="sdpa"):
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         tie_word_embeddings=True, attn_implementation=attn)
    return LlamaForCausalLM(config).eval()


def _batch():
    gen = torch.Generator().manual_seed(3)
    return [torch.randint(0, 97, (n,), generator=gen).tolist() for n in LENGTHS]


def _padded_logprobs(model, seqs):
    """The naive path: padded [B, T] forward, full [B, T, V] logits, log_softmax + gather."""
    out = []
    for s in seqs:
        if len(s) == 0:
            continue
        ids = torch.tensor(s)[None]
        logp = model(input_ids=ids).logits.log_softmax(-1)[0]
        lp = logp[:-1].gather(1, ids[0, 1:, None])[:, 0]
        out.append(torch.cat([lp.new_zeros(1), lp]))
    return torch.cat(out)


def _padded_batch(seqs):
    nonempty = [torch.tensor(s) for s in seqs if s]
    ids = torch.nn.utils.rnn.pad_sequence(nonempty, batch_first=True)
    mask = torch.nn.utils.rnn.pad_sequence([torch.ones_like(s) for s in nonempty],
                                           batch_first=True).bool()
    return ids, mask


def test_positions_and_mask_on_cpu():
    cu = torch.tensor([0, 2, 2, 5])
    assert packed_position_ids(cu).tolist() == [0, 1, 0, 1, 2]
    allowed = block_causal_mask(cu, torch.float32)[0, 0] == 0
    expected = torch.tensor([[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [0, 0, 1, 0, 0],
                             [0, 0, 1, 1, 0], [0, 0, 1, 1, 1]]).bool()
    assert torch.equal(allowed, expected)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_logprobs_equal_padded_on_cpu(attn):
    model, seqs = _model(attn), _batch()
    ids, cu = pack_sequences(seqs)
    lp, ent = packed_logprobs(model, ids, cu)
    with torch.no_grad():
        ref = _padded_logprobs(model, seqs)
    torch.testing.assert_close(lp, ref, rtol=1e-5, atol=1e-5)
    starts = cu[:-1][cu.diff() > 0]
    assert torch.all(lp[starts] == 0) and torch.all(ent[starts] == 0)
    assert torch.all(ent[packed_position_ids(cu) > 0] > 0)


def test_packed_logprob_gradients_equal_padded_on_cpu():
    model, seqs = _model(), _batch()
    ids, cu = pack_sequences(seqs)
    packed_logprobs(model, ids, cu)[0].sum().backward()
    packed_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    _padded_logprobs(model, seqs).sum().backward()
    for got, want in zip(packed_grads, (p.grad for p in model.parameters())):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_packed_values_and_line_scores_equal_padded_on_cpu():
    value_model = ValueModel.from_causal_lm(_model()).eval()
    torch.nn.init.normal_(value_model.head.weight)
    torch.nn.init.constant_(value_model.head.bias, 0.5)
    seqs = _batch()
    ids, cu = pack_sequences(seqs)
    padded_ids, mask = _padded_batch(seqs)
    with torch.no_grad():
        values = packed_values(value_model, ids, cu)
        ref = value_model.values(padded_ids, mask.long())[mask]
        torch.testing.assert_close(values, ref, rtol=1e-5, atol=1e-5)
        line_end = torch.arange(len(ids)) % 3 == 0
        scores = packed_line_scores(value_model, ids, cu, line_end)
    torch.testing.assert_close(scores, torch.where(line_end, ref, 0.0), rtol=1e-5, atol=1e-5)


def test_bad_packed_input_raises_on_cpu():
    model = _model()
    with pytest.raises(ValueError, match="cu_seqlens"):
        packed_logprobs(model, torch.tensor([1, 2, 3]), torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="input_ids"):
        packed_logprobs(model, torch.tensor([[1, 2]]), torch.tensor([0, 2]))


# ---- bucketed attention (the CPU path) against the padded reference, fresh random inputs ----

def _random_lengths(gen, n, longest):
    """n lengths in 0..longest with 0 and 1 always among them (empty and one-token sequences)."""
    lengths = torch.randint(1, longest + 1, (n,), generator=gen).tolist()
    return [0, 1, *lengths, 1]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("attn,kv_heads", [("sdpa", 2), ("sdpa", 4), ("eager", 2)])
def test_bucketed_attention_equals_padded_on_fresh_inputs_on_cpu(seed, attn, kv_heads):
    """Logprobs, entropies and their parameter gradients of the packed forward equal a padded
    forward of each sequence, with lengths spread over several buckets (1 to 40 tokens)."""
    gen = torch.Generator().manual_seed(100 + seed)
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=kv_heads,
                         max_position_embeddings=64, tie_word_embeddings=True,
                         attn_implementation=attn)
    model = LlamaForCausalLM(config).eval()
    seqs = [torch.randint(0, 97, (n,), generator=gen).tolist()
            for n in _random_lengths(gen, 9, 40)]
    ids, cu = pack_sequences(seqs)
    assert packed_attention_kind(model.base_model) == "bucketed"
    assert len(PackedLayout.from_cu_seqlens(cu).buckets) > 1
    lp, ent = packed_logprobs(model, ids, cu)
    (lp.sum() + 0.1 * ent.sum()).backward()
    packed_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    ref_lp, ref_ent = [], []
    for s in seqs:                          # padded reference, one sequence at a time
        if not s:
            continue
        seq = torch.tensor(s)[None]
        logp = model(input_ids=seq).logits[0, :-1].log_softmax(-1)
        ref_lp += [logp.new_zeros(1), logp.gather(1, seq[0, 1:, None])[:, 0]]
        ref_ent += [logp.new_zeros(1), -(logp.exp() * logp).sum(-1)]
    ref_lp, ref_ent = torch.cat(ref_lp), torch.cat(ref_ent)
    (ref_lp.sum() + 0.1 * ref_ent.sum()).backward()
    torch.testing.assert_close(lp, ref_lp.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ent, ref_ent.detach(), rtol=1e-5, atol=1e-5)
    for got, want in zip(packed_grads, (p.grad for p in model.parameters())):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    assert model.config._attn_implementation == attn        # restored after the forward


def test_bucketed_equals_the_dense_mask_and_a_padded_batch_on_cpu():
    """The three CPU layouts agree on hidden states: bucketed, the [N, N] block mask, and one
    right-padded [S, T] batch with its attention mask."""
    gen = torch.Generator().manual_seed(7)
    backbone = _model().base_model
    seqs = [torch.randint(0, 97, (n,), generator=gen).tolist() for n in (1, 33, 16, 2, 40, 1)]
    ids, cu = pack_sequences(seqs)
    padded_ids, mask = _padded_batch(seqs)
    with torch.no_grad():
        bucketed = packed_hidden(backbone, ids, cu)
        dense = packed_hidden(backbone, ids, cu, attention="mask")
        padded = backbone(input_ids=padded_ids, attention_mask=mask.long()).last_hidden_state
    torch.testing.assert_close(bucketed, dense, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(bucketed, padded[mask], rtol=1e-5, atol=1e-5)


def test_packed_layout_buckets_on_cpu():
    cu = torch.tensor([0, 5, 5, 6, 16, 19, 29, 30])      # lengths 5, 0, 1, 10, 3, 10, 1
    layout = PackedLayout.from_cu_seqlens(cu)
    assert layout.max_length == 10
    assert [(b.n_seq, b.q_width) for b in layout.buckets] == [(2, 10), (2, 5), (2, 1)]
    assert all(b.mask is None and b.key is b.query for b in layout.buckets)
    rows = torch.cat([b.query[b.valid] for b in layout.buckets])
    assert sorted(rows.tolist()) == list(range(30))          # every token once
    assert torch.equal(rows[layout.order], torch.arange(30))
    one = PackedLayout.from_cu_seqlens(torch.tensor([0, 3, 7]))
    assert one.order is None and len(one.buckets) == 1
    # a prompt of 4 tokens shared by responses of 2 and 3 tokens: they see it all, then
    # their own tokens causally
    shared = PackedLayout.from_cu_seqlens(torch.tensor([0, 4, 6, 9]), torch.tensor([-1, 0, 0]))
    root, children = shared.buckets
    assert root.mask is None and (children.n_seq, children.q_width, children.k_width) == (2, 3, 7)
    assert children.key.view(2, 7).tolist() == [[0, 1, 2, 3, 4, 5, 4], [0, 1, 2, 3, 6, 7, 8]]
    assert children.mask[0, 0].int().tolist() == [[1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1, 0],
                                                 [1, 1, 1, 1, 1, 1, 1]]
    assert shared.max_length == 7 and shared.order is None


def test_positions_subset_equals_the_full_forward_on_cpu():
    model, seqs = _model(), _batch()
    value_model = ValueModel.from_causal_lm(model).eval()
    torch.nn.init.normal_(value_model.head.weight)
    ids, cu = pack_sequences(seqs)
    at = torch.tensor([0, 3, 7, 8, 20, 24])                 # 0, 7 and 8 start a sequence
    line_end = torch.arange(len(ids)) % 2 == 0
    with torch.no_grad():
        lp, ent = packed_logprobs(model, ids, cu)
        lp_at, ent_at = packed_logprobs(model, ids, cu, at=at)
        values = packed_values(value_model, ids, cu)
        scores = packed_line_scores(value_model, ids, cu, line_end)
        torch.testing.assert_close(packed_values(value_model, ids, cu, at=at), values[at])
        torch.testing.assert_close(packed_line_scores(value_model, ids, cu, line_end[at], at=at),
                                   scores[at])
    torch.testing.assert_close(lp_at, lp[at])
    torch.testing.assert_close(ent_at, ent[at])
    with pytest.raises(ValueError, match="at"):
        packed_logprobs(model, ids, cu, at=torch.tensor([len(ids)]))
    with pytest.raises(ValueError, match="at"):
        packed_values(value_model, ids, cu, at=torch.tensor([[1]]))


def test_attention_kind_is_picked_per_model_on_cpu():
    backbone = _model().base_model
    assert packed_attention_kind(backbone) == "bucketed"
    backbone.config._attn_implementation = "flash_attention_2"   # what a CUDA load picks
    assert packed_attention_kind(backbone) == "flash"
    no_interface = type("Backbone", (), {"config": backbone.config,
                                         "_supports_attention_backend": False})()
    no_interface.config._attn_implementation = "sdpa"
    assert packed_attention_kind(no_interface) == "mask"
    assert attn_implementation_for("cpu") == "sdpa"
    with pytest.raises(ValueError, match="attention"):
        packed_hidden(backbone, torch.tensor([1, 2]), torch.tensor([0, 2]), attention="dense")


def test_sliding_window_longer_than_a_sequence_is_refused_on_cpu():
    from transformers import Qwen2Config, Qwen2Model
    torch.manual_seed(0)
    backbone = Qwen2Model(Qwen2Config(
        vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=2, use_sliding_window=True, sliding_window=4,
        max_window_layers=0, layer_types=["sliding_attention"], attn_implementation="sdpa"))
    ids, cu = pack_sequences([[1, 2, 3], [4, 5, 6, 7, 8, 9]])
    with pytest.raises(ValueError, match="sliding window"):
        packed_hidden(backbone, ids, cu)
    assert backbone.config._attn_implementation == "sdpa"    # restored after the error
    short_ids, short_cu = pack_sequences([[1, 2, 3], [4, 5]])
    assert packed_hidden(backbone, short_ids, short_cu).shape == (5, 16)


# ---- prompts shared by several responses (pack_shared): equal to packing each whole --------

def _shared_samples(gen, n_prompts=4):
    """Prompts of 1-20 tokens, each with 1-4 responses of 0-15 tokens (some of 0 and 1)."""
    prompts, responses = [], []
    for g in range(n_prompts):
        prompt = torch.randint(0, 97, (int(torch.randint(1, 21, (), generator=gen)),),
                               generator=gen).tolist()
        for r in range(int(torch.randint(1, 5, (), generator=gen))):
            n = [0, 1][r] if g == 0 and r < 2 else int(torch.randint(0, 16, (), generator=gen))
            prompts.append(prompt)
            responses.append(torch.randint(0, 97, (n,), generator=gen).tolist())
    order = torch.randperm(len(prompts), generator=gen).tolist()     # samples interleaved
    return [prompts[i] for i in order], [responses[i] for i in order]


def test_pack_shared_packs_each_shared_prompt_once_on_cpu():
    ids, cu, parents, response = pack_shared([[1, 2], [5], [1, 2], [1, 2]],
                                             [[3], [6, 7], [], [4, 4]])
    assert ids.tolist() == [1, 2, 3, 4, 4, 5, 6, 7]
    assert cu.tolist() == [0, 2, 3, 3, 5, 8] and parents.tolist() == [-1, 0, 0, 0, -1]
    assert response.tolist() == [2, 6, 7, 3, 4]
    assert packed_position_ids(cu, parents).tolist() == [0, 1, 2, 2, 3, 0, 1, 2]
    assert packed_predecessors(cu, parents)[response].tolist() == [1, 5, 6, 1, 3]
    with pytest.raises(ValueError, match="prompts"):
        pack_shared([[1]], [])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_shared_prompts_equal_whole_sequences_on_cpu(seed):
    """Log-probs, entropies, values, line scores and all their parameter gradients at the
    response tokens are those of every prompt + response packed whole (bucketed and dense-mask
    attention), on fresh random samples."""
    gen = torch.Generator().manual_seed(200 + seed)
    prompts, responses = _shared_samples(gen)
    model = _model()
    critic = ValueModel.from_causal_lm(model).eval()
    torch.nn.init.normal_(critic.head.weight)
    shared = pack_shared(prompts, responses)
    whole_ids, whole_cu = pack_sequences([p + r for p, r in zip(prompts, responses)])
    whole_response = torch.tensor([int(whole_cu[i]) + len(p) + j for i, (p, r) in
                                   enumerate(zip(prompts, responses)) for j in range(len(r))])
    assert len(shared[0]) < len(whole_ids)

    def run(ids, cu, parents, response, attention):
        model.zero_grad()
        critic.zero_grad()
        act = packed_predecessors(cu, parents)[response]
        lp, ent = packed_logprobs(model, ids, cu, at=response, parents=parents,
                                  attention=attention)
        values = packed_values(critic, ids, cu, at=act, parents=parents, attention=attention)
        line_end = torch.arange(len(response)) % 3 == 1
        scores = packed_line_scores(critic, ids, cu, line_end, at=response, parents=parents,
                                    attention=attention)
        (lp.sum() + ent.sum() + values.sum() + scores.sum()).backward()
        grads = [p.grad.clone() for p in [*model.parameters(), *critic.parameters()]]
        return [t.detach() for t in (lp, ent, values, scores)] + grads

    want = run(whole_ids, whole_cu, None, whole_response, "bucketed")
    for attention in ("bucketed", "mask"):
        for got, expected in zip(run(*shared, attention), want):   # sums of float32 terms:
            scale = max(1.0, float(expected.abs().max()))             # to their rounding
            torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5 * scale)


def test_bad_parents_are_refused_on_cpu():
    model = _model()
    ids, cu = pack_sequences([[1, 2], [3], [4]])
    for parents in (torch.tensor([-1, 0]), torch.tensor([-1, 2, 0]), torch.tensor([1, -1, -1]),
                    torch.tensor([-1, 0, 1]), torch.tensor([-1, 0, 7]), torch.tensor([-1., 0, 0])):
        with pytest.raises(ValueError, match="parents"):
            packed_logprobs(model, ids, cu, parents=parents)


def test_flash_models_run_shared_prompts_as_whole_sequences_on_cpu():
    """flash-attn varlen sees no parents, so packed_hidden runs a flash model on every child
    whole after a copy of its parent (_whole_sequences) and reads the shared layout back."""
    from prmfast.models.packed import _whole_sequences
    backbone = _model().base_model
    gen = torch.Generator().manual_seed(5)
    prompts, responses = _shared_samples(gen)
    ids, cu, parents, _ = pack_shared(prompts, responses)
    gather, whole_cu, back = _whole_sequences(cu, parents)
    whole = ids[gather]
    seqs = [whole[a:b].tolist() for a, b in zip(whole_cu.tolist(), whole_cu[1:].tolist())]
    assert sorted(seqs) == sorted(p + r for p, r in zip(prompts, responses))
    assert torch.equal(whole[back], ids)
    with torch.no_grad():
        torch.testing.assert_close(packed_hidden(backbone, whole, whole_cu)[back],
                                   packed_hidden(backbone, ids, cu, parents=parents),
                                   rtol=1e-5, atol=1e-5)
