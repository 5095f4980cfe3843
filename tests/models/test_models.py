"""Tokenizer training, tiny policies, HF folder / GGUF loading and the ValueModel head."""
import os
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from prmfast import kernels
from prmfast.config import ModelConfig
from prmfast.models import policy as policy_module
from prmfast.models import (ValueModel, build_tiny_model, encode, load_policy, save_policy,
                            train_tokenizer)

SMOLLM_GGUF = Path("/work/shared/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf")
TEXTS = ["def f(xs):\n    xs = sorted(xs)\n    return xs[:2]\n"] * 20


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return train_tokenizer(TEXTS, 300, tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="module")
def policy(tok):
    torch.manual_seed(0)
    return build_tiny_model(tok, ModelConfig(hidden_size=32, num_layers=2, num_heads=2,
                                             intermediate_size=64, max_position=128))


def test_tokenizer_round_trip_on_cpu(tok, tmp_path):
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    text = "def g(a):\n\n    return 'héllo 日本'  # x\r\n"
    assert encode(again, text) == encode(tok, text)
    assert again.decode(encode(again, text)) == text
    assert again.eos_token_id is not None and again.pad_token_id is not None
    assert again.eos_token_id != again.pad_token_id
    assert len(again) <= 300


def test_tiny_model_from_config_on_cpu(tok, policy):
    cfg = policy.config
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.vocab_size) == (32, 2, len(tok))
    assert cfg.eos_token_id == tok.eos_token_id and cfg.pad_token_id == tok.pad_token_id


def test_policy_save_load_round_trip_on_cpu(tok, policy, tmp_path):
    save_policy(policy, tok, tmp_path)
    model, tok2 = load_policy(tmp_path)
    ids = torch.tensor([encode(tok, TEXTS[0])])
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, policy(ids).logits)
    assert encode(tok2, TEXTS[0]) == ids[0].tolist()
    with pytest.raises(FileNotFoundError):
        load_policy(tmp_path / "missing")


def test_value_model_from_causal_lm_on_cpu(tok, policy):
    vm = ValueModel.from_causal_lm(policy)
    ids = torch.tensor([encode(tok, TEXTS[0])] * 2)
    mask = torch.ones_like(ids)
    with torch.no_grad():
        h = vm.hidden(ids, mask)
        want = policy(ids, output_hidden_states=True).hidden_states[-1]
        assert h.shape == (2, ids.shape[1], 32)
        torch.testing.assert_close(h, want)
        assert torch.equal(vm.values(ids, mask), torch.zeros(2, ids.shape[1]))
    vm.backbone.embed_tokens.weight.data.add_(1.0)        # a copy: the policy is untouched
    assert not torch.equal(vm.backbone.embed_tokens.weight, policy.model.embed_tokens.weight)


def test_value_model_save_load_round_trip_on_cpu(tok, policy, tmp_path):
    vm = ValueModel.from_causal_lm(policy)
    torch.nn.init.normal_(vm.head.weight)
    torch.nn.init.normal_(vm.head.bias)
    vm.save_pretrained(tmp_path, tokenizer=tok)
    again = ValueModel.from_pretrained(tmp_path)
    ids = torch.tensor([encode(tok, TEXTS[0])])
    with torch.no_grad():
        torch.testing.assert_close(again.values(ids), vm.values(ids))
    assert (tmp_path / "value_head.safetensors").exists()
    assert AutoTokenizer.from_pretrained(tmp_path).eos_token == tok.eos_token


def test_value_model_from_policy_folder_has_zero_head_on_cpu(tok, policy, tmp_path):
    save_policy(policy, tok, tmp_path)
    vm = ValueModel.from_pretrained(tmp_path)
    ids = torch.tensor([encode(tok, TEXTS[0])])
    with torch.no_grad():
        torch.testing.assert_close(vm.hidden(ids), policy(ids, output_hidden_states=True).hidden_states[-1])
        assert torch.equal(vm.values(ids), torch.zeros(1, ids.shape[1]))


@pytest.mark.skipif(not hasattr(kernels, "line_scores"), reason="prmfast.kernels.line_scores not built yet")
def test_value_model_line_scores_on_cpu(tok, policy):
    vm = ValueModel.from_causal_lm(policy)
    torch.nn.init.normal_(vm.head.weight)
    ids = torch.tensor([encode(tok, TEXTS[0])] * 2)
    line_end = torch.zeros_like(ids, dtype=torch.bool)
    line_end[:, ::3] = True
    with torch.no_grad():
        scores = vm.line_scores(ids, line_end)
        want = torch.where(line_end, vm.values(ids), torch.zeros(()))
    torch.testing.assert_close(scores, want)


@pytest.mark.slow
@pytest.mark.skipif(not SMOLLM_GGUF.exists(), reason=f"SmolLM2 GGUF not found at {SMOLLM_GGUF}")
def test_load_smollm2_from_gguf_on_cpu(tmp_path, monkeypatch):
    monkeypatch.setenv("PRMFAST_CACHE", str(tmp_path))
    model, tok = load_policy(SMOLLM_GGUF)
    assert (tmp_path / SMOLLM_GGUF.stem / "DONE").exists()
    assert model.config.model_type == "llama" and model.num_parameters() > 100_000_000
    assert tok.pad_token is not None
    again, _ = load_policy(SMOLLM_GGUF)            # from the safetensors cache
    ids = torch.tensor([encode(tok, "def add(a, b):\n    return")])
    with torch.no_grad():
        torch.testing.assert_close(again(ids).logits, model(ids).logits)
        nxt = model(ids).logits[0, -1].argmax().item()
    assert tok.decode([nxt]).strip() in {"a", "(a", "sum", "a+b"}


# -- what the model helpers refuse or keep apart ------------------------------------------------

def _fake_conversion(monkeypatch, tok, policy):
    """Count GGUF conversions; each returns the tiny policy (no real GGUF parsing)."""
    calls = []

    def read(gguf):
        calls.append(gguf)
        return policy, tok
    monkeypatch.setattr(policy_module, "_read_gguf", read)
    return calls


def test_gguf_cache_is_converted_again_for_another_or_a_changed_file_on_cpu(
        tok, policy, tmp_path, monkeypatch):
    monkeypatch.setenv("PRMFAST_CACHE", str(tmp_path / "cache"))
    calls = _fake_conversion(monkeypatch, tok, policy)
    first, second = tmp_path / "a" / "m.gguf", tmp_path / "b" / "m.gguf"  # one name, two files
    for path, data in ((first, b"one"), (second, b"two")):
        path.parent.mkdir()
        path.write_bytes(data)
    load_policy(first)
    load_policy(first)                       # from the cache
    assert len(calls) == 1
    load_policy(second)                      # the same cache folder name, another file
    assert len(calls) == 2
    load_policy(first)
    first.write_bytes(b"ONE")                # rewritten in place: same size, new mtime
    os.utime(first, ns=(first.stat().st_atime_ns, first.stat().st_mtime_ns + 10**9))
    load_policy(first)
    assert len(calls) == 4


@pytest.mark.parametrize("content", [b"def f(): pass\n", b"GGUF" + b"\0" * 64])
def test_a_file_that_is_no_complete_gguf_is_a_clear_error_on_cpu(tmp_path, monkeypatch, content):
    monkeypatch.setenv("PRMFAST_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "broken.gguf"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="not a valid or complete GGUF file"):
        load_policy(path)
    assert not (tmp_path / "cache" / "broken" / "DONE").exists()


def test_missing_or_empty_model_folders_are_named_on_cpu(tok, policy, tmp_path):
    with pytest.raises(FileNotFoundError, match="no model folder"):
        ValueModel.from_pretrained(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_policy(tmp_path / "empty")
    save_policy(policy, tok, tmp_path / "no_weights")
    for weights in (tmp_path / "no_weights").glob("*.safetensors"):
        weights.unlink()
    with pytest.raises(FileNotFoundError, match="no weights"):
        ValueModel.from_pretrained(tmp_path / "no_weights")


@pytest.mark.parametrize("shape", [(0, 4), (2, 0), (5,)])
def test_value_model_needs_batch_by_time_ids_on_cpu(policy, shape):
    vm = ValueModel.from_causal_lm(policy)
    with pytest.raises(ValueError, match=r"input_ids: expected shape \[B, T\]"):
        vm.values(torch.zeros(shape, dtype=torch.long))


def test_line_scores_need_line_ends_shaped_like_input_ids_on_cpu(policy):
    vm = ValueModel.from_causal_lm(policy)
    with pytest.raises(ValueError, match="line_end: expected the shape of input_ids"):
        vm.line_scores(torch.ones(2, 5, dtype=torch.long), torch.zeros(2, 4, dtype=torch.bool))


@pytest.mark.parametrize("text", ["x = '<|pad|>'\n", "print('<|endoftext|>')\n"])
def test_special_token_text_in_code_stays_text_on_cpu(tok, text):
    ids = encode(tok, text)
    assert tok.eos_token_id not in ids and tok.pad_token_id not in ids
    assert tok.decode(ids) == text
