"""Packed forwards (prmfast.models.packed) equal padded forwards of the same sequences."""
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from prmfast.models import ValueModel
from prmfast.models.packed import (block_causal_mask, pack_sequences, packed_line_scores,
                                   packed_logprobs, packed_position_ids, packed_values)

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
