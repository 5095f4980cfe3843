"""Edge inputs a new user tries on prmfast.lines, .rollout and .models (regression tests)."""
import pytest
import torch
from safetensors.torch import load_file, save_file

from prmfast.config import ModelConfig
from prmfast.lines import comment_flags, segment
from prmfast.models import (ValueModel, build_tiny_model, encode, load_policy, save_policy,
                            train_tokenizer)
from prmfast.rollout import HFGenerateBackend


class PieceTokenizer:
    """A stand-in whose token i decodes to pieces[i]; pins exact token boundaries."""

    def __init__(self, pieces):
        self.pieces = pieces

    def decode(self, ids, skip_special_tokens=True, clean_up_tokenization_spaces=False):
        return "".join(self.pieces[i] for i in ids)


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(["def f(xs):\n    return sorted(xs)\n# sort the list\n"] * 10, 300)


@pytest.fixture(scope="module")
def policy(tok):
    torch.manual_seed(0)
    return build_tiny_model(tok, ModelConfig(hidden_size=32, num_layers=2, num_heads=2,
                                             intermediate_size=64, max_position=64))


# -- lines ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("extra", ["", '\n"""elsewhere"""\n'])
def test_a_single_quoted_string_statement_is_code_wherever_triple_quotes_are_on_cpu(extra):
    # the flag of `"Doc."` used to depend on whether the response held a triple quote anywhere
    flags = comment_flags('def f():\n    "Doc."\n    return 1' + extra)
    assert flags[:3] == [False, False, False]


def test_an_f_string_statement_is_no_docstring_on_cpu():
    # complete and unfinished text agree (the line scan never took f''' for a docstring)
    assert comment_flags('f"""{x}"""\n') == [False, True]
    assert comment_flags('f"""{x}\nmore"""\n') == [False, False, True]
    assert comment_flags('x = 1\nf"""{x}') == [False, False]
    assert comment_flags('"""doc"""\nrb"""raw doc"""\n') == [True, True, True]


@pytest.mark.parametrize("text", ["# c\rx = 1", '# c\rx = 1\n"""doc"""', '"""doc"""\rx = 1'])
def test_a_lone_carriage_return_breaks_lines_for_comment_flags_on_cpu(text):
    # Python runs `x = 1` after "# c\r": a line that holds code is no comment line
    assert comment_flags(text)[0] is False


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_a_string_continued_by_a_backslash_is_no_comment_on_cpu(newline):
    # without a triple quote the line scan took the string's second line for a `#` comment
    text = newline.join(["s = 'a\\", "# b'", "x = 1", "# c", ""])
    assert comment_flags(text) == [False, False, False, True, True]


def test_lone_carriage_returns_in_segmented_lines_on_cpu():
    lines = segment(list(range(5)), PieceTokenizer(["# a\r", "# b\n", "# c\r", "y", "\r\n"]))
    assert lines.texts == ["# a\r# b", "# c\ry"]
    assert lines.is_comment == [True, False]
    assert comment_flags("a\r\r\n# c\r\n") == [False, True, True]


# -- rollout --------------------------------------------------------------------------------------

@pytest.mark.parametrize("temperature", [float("nan"), float("inf")])
def test_a_non_finite_temperature_is_refused_on_cpu(tok, policy, temperature):
    # NaN used to reach torch.multinomial ("probability tensor contains inf, nan ..."); inf
    # sampled uniformly
    backend = HFGenerateBackend(policy, tok)
    with pytest.raises(ValueError, match="finite temperature"):
        backend.generate([encode(tok, "x")], n=1, max_new_tokens=2, temperature=temperature)


def sentencepiece_style_tokenizer():
    """A Llama-2-style tokenizer from a fixed vocabulary: "▁" for spaces (one prepended), byte
    fallback, and a decoder that strips the first leading space."""
    from tokenizers import Tokenizer, decoders, models, normalizers
    from transformers import PreTrainedTokenizerFast
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "▁": 3, "▁▁": 4}
    vocab.update({f"<0x{i:02X}>": 5 + i for i in range(256)})
    tk = Tokenizer(models.BPE(vocab, [("▁", "▁")], unk_token="<unk>", byte_fallback=True))
    tk.normalizer = normalizers.Sequence([normalizers.Prepend("▁"),
                                          normalizers.Replace(" ", "▁")])
    tk.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(),
                                    decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    tk.add_special_tokens(["<unk>", "<s>", "</s>"])
    return PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="</s>", bos_token="<s>",
                                   unk_token="<unk>")


def test_response_text_keeps_its_leading_space_with_a_sentencepiece_tokenizer_on_cpu():
    # decoded alone, "▁▁" "▁▁" after "if x:\n" lost a space of indentation: "   " for "    "
    sp = sentencepiece_style_tokenizer()
    torch.manual_seed(0)
    model = build_tiny_model(sp, ModelConfig(hidden_size=32, num_layers=1, num_heads=2,
                                             intermediate_size=64, max_position=64))
    two_spaces = sp.convert_tokens_to_ids("▁▁")
    hook = model.lm_head.register_forward_hook(
        lambda module, args, logits: logits.index_fill(-1, torch.tensor([two_spaces]), 50.0))
    try:
        prompt = encode(sp, "if x:\n")
        sample = HFGenerateBackend(model, sp).generate([prompt], n=1, max_new_tokens=2,
                                                       temperature=0.0)[0][0]
    finally:
        hook.remove()
    assert sample.response_ids == [two_spaces, two_spaces]
    assert sample.text == "    "
    assert sp.decode(prompt + sample.response_ids) == "if x:\n" + sample.text


# -- models ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.bool])
def test_value_model_refuses_non_integer_ids_on_cpu(policy, dtype):
    vm = ValueModel.from_causal_lm(policy)
    with pytest.raises(ValueError, match="input_ids: expected int64 or int32"):
        vm.values(torch.ones(2, 3, dtype=dtype))


@pytest.mark.parametrize("name", ["attention_mask", "position_ids"])
def test_value_model_names_a_mask_or_positions_of_another_shape_on_cpu(policy, name):
    vm = ValueModel.from_causal_lm(policy)
    ids = torch.ones(2, 3, dtype=torch.long)
    with pytest.raises(ValueError, match=f"{name}: expected the shape of input_ids"):
        vm.hidden(ids, **{name: torch.ones(2, 4, dtype=torch.long)})


def test_a_critic_folder_is_no_untied_policy_on_cpu(tok, policy, tmp_path):
    # an untied model's critic/PRM folder has no lm_head: it used to load with a random one
    config = policy.config.to_dict() | {"tie_word_embeddings": False}
    untied = type(policy)(type(policy.config).from_dict(config))
    ValueModel.from_causal_lm(untied).save_pretrained(tmp_path, tokenizer=tok)
    with pytest.raises(ValueError, match="lack 1 of the tensors of a LlamaForCausalLM"):
        load_policy(tmp_path)


def test_a_checkpoint_without_some_weights_is_refused_on_cpu(tok, policy, tmp_path):
    save_policy(policy, tok, tmp_path)
    weights = tmp_path / "model.safetensors"
    kept = {k: v for k, v in load_file(str(weights)).items() if ".layers.1." not in k}
    save_file(kept, str(weights), metadata={"format": "pt"})
    with pytest.raises(ValueError, match="weights lack 9 of the tensors of a LlamaForCausalLM"):
        load_policy(tmp_path)
    with pytest.raises(ValueError, match="weights lack 9 of the tensors of a LlamaModel"):
        ValueModel.from_pretrained(tmp_path)


@pytest.mark.parametrize("text", ["\ud800", "x = 'a\udcffb'\n"])
def test_encode_names_text_that_is_no_valid_unicode_on_cpu(tok, text):
    # used to be tokenizers' "TextEncodeInput must be Union[TextInputSequence, ...]" TypeError
    with pytest.raises(ValueError, match="surrogates not allowed at index"):
        encode(tok, text)


def test_an_unknown_dtype_name_is_a_clear_error_on_cpu(tok, tmp_path):
    # used to be AttributeError: module 'torch' has no attribute 'bf16'
    with pytest.raises(ValueError, match="dtype: 'bf16' is not one of"):
        load_policy(tmp_path, dtype="bf16")
    with pytest.raises(ValueError, match="dtype: 'bf16' is not one of"):
        build_tiny_model(tok, ModelConfig(hidden_size=32, num_layers=1, num_heads=2,
                                          intermediate_size=64, dtype="bf16"))


@pytest.mark.parametrize("sequences", [[], [[]], [[], []]])
def test_packed_forwards_of_no_token_on_cpu(policy, sequences):
    # every sequence empty (the kernels allow it): the model used to fail with "cannot reshape
    # tensor of 0 elements"
    from prmfast.models.packed import pack_sequences, packed_logprobs, packed_values
    ids, cu_seqlens = pack_sequences(sequences)
    logprobs, entropy = packed_logprobs(policy, ids, cu_seqlens)
    values = packed_values(ValueModel.from_causal_lm(policy), ids, cu_seqlens)
    assert logprobs.shape == entropy.shape == values.shape == (0,)
    (logprobs.sum() + values.sum()).backward()


def test_packed_forwards_refuse_float_ids_on_cpu(policy):
    from prmfast.models.packed import packed_hidden
    with pytest.raises(ValueError, match="input_ids must hold int64 or int32"):
        packed_hidden(policy.base_model, torch.ones(3), torch.tensor([0, 3]))


def test_backend_construction_errors_are_clear_on_cpu(tok, policy, monkeypatch):
    # used to be "range() arg 3 must not be zero" at generate time and an IndexError
    with pytest.raises(ValueError, match="batch_size: need >= 1"):
        HFGenerateBackend(policy, tok, batch_size=0)
    bare = sentencepiece_style_tokenizer()
    bare.eos_token = None
    monkeypatch.setattr(policy.generation_config, "eos_token_id", None)
    with pytest.raises(ValueError, match="nothing to pad prompts with"):
        HFGenerateBackend(policy, bare)


def test_damaged_weight_files_are_named_on_cpu(tok, policy, tmp_path):
    # safetensors' "Error while deserializing header" named no folder and no file
    save_policy(policy, tok, tmp_path / "policy")
    weights = tmp_path / "policy" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ValueError, match="policy: a .safetensors weights file is damaged"):
        load_policy(tmp_path / "policy")
    ValueModel.from_causal_lm(policy).save_pretrained(tmp_path / "critic")
    (tmp_path / "critic" / "value_head.safetensors").write_bytes(b"xx")
    with pytest.raises(ValueError, match="value_head.safetensors is damaged or truncated"):
        ValueModel.from_pretrained(tmp_path / "critic")


@pytest.mark.parametrize("bad", [-1, 10_000])
def test_prompt_ids_outside_the_vocabulary_are_named_on_cpu(tok, policy, bad):
    # used to be torch's "IndexError: index out of range in self" from the embedding
    with pytest.raises(ValueError, match="prompt_ids: token ids must lie in 0.."):
        HFGenerateBackend(policy, tok).generate([[5, 6], [7, bad]], n=1, max_new_tokens=2,
                                                temperature=1.0)


@pytest.mark.parametrize("temperature", [1e-40, 1e-45])
def test_a_tiny_temperature_samples_the_greedy_tokens_on_cpu(tok, policy, temperature):
    # logits / 1e-40 overflowed to inf: "probability tensor contains either inf, nan or < 0"
    backend, prompts = HFGenerateBackend(policy, tok), [encode(tok, "def f(xs):\n")]
    greedy = backend.generate(prompts, n=1, max_new_tokens=4, temperature=0.0)[0][0]
    tiny = backend.generate(prompts, n=1, max_new_tokens=4, temperature=temperature, seed=0)[0][0]
    assert tiny.response_ids == greedy.response_ids
    assert tiny.logprobs == [0.0] * len(tiny.response_ids)


def test_labelling_programs_keep_their_first_indentation_with_a_sentencepiece_tokenizer_on_cpu():
    # the probe programs are decoded after the prompt, like rollouts (response_text)
    from types import SimpleNamespace

    from prmfast.data import Task
    from prmfast.labeling.policy import Policy
    from prmfast.sandbox import AssertTests

    sp = sentencepiece_style_tokenizer()
    task = Task("t", "def f(x):\n", AssertTests("assert f(1) == 1"), "f", None, {})
    prompt, two_spaces = encode(sp, task.prompt), sp.convert_tokens_to_ids("▁▁")
    policy = SimpleNamespace(tokenizer=sp)
    body = sp.convert_tokens_to_ids([f"<0x{b:02X}>" for b in b"return x\n"])  # byte tokens
    job = Policy.make_job(policy, task, prompt, [two_spaces, two_spaces], body)
    assert job.program.startswith("def f(x):\n    return x\n"), job.program
