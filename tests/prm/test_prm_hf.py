"""The PRM in the standard format (DIR/prm/hf): ValuePRM.save_token_classifier writes a one-label
token-classification folder that transformers loads with no prmfast code, giving the same line
scores (at line ends, to 1e-5); prmfast loads it back as a PRM (load_prm), as a PRM to start
from (prm.init: ValueModel.from_pretrained) and as a frozen backbone (prm.pretrained)."""
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from prmfast.config import ModelConfig
from prmfast.lines import segment
from prmfast.models import (ValueModel, build_tiny_model, encode, is_token_classifier,
                            save_policy, train_tokenizer)
from prmfast.prm import FrozenBackbonePRM, ValuePRM, load_prm
from prmfast.prm.data import example

ROOT = Path(__file__).resolve().parents[2]


def random_program(rng: random.Random) -> str:
    lines = []
    for i in range(rng.randint(1, 6)):
        indent = "    " * rng.randint(0, 2)
        lines.append(rng.choice([f"{indent}x{i} = {rng.randint(0, 99)} + y",
                                 f"{indent}# note {rng.randint(0, 9)}",
                                 f"{indent}return sorted(xs)[:{rng.randint(1, 5)}]",
                                 f"{indent}for k in range({rng.randint(1, 9)}):", ""]))
    return "\n".join(lines) + rng.choice(["", "\n"])


@pytest.fixture(scope="module")
def tiny_prm(tmp_path_factory):
    """(a ValuePRM of a tiny random model with a random head, its tokenizer, its standard
    folder)."""
    rng = random.Random(0)
    texts = ["def f(xs, y):\n" + random_program(rng) for _ in range(60)]
    tokenizer = train_tokenizer(texts, 300, tmp_path_factory.mktemp("tok"))
    torch.manual_seed(0)
    policy = build_tiny_model(tokenizer, ModelConfig(hidden_size=32, num_layers=2, num_heads=2,
                                                     intermediate_size=64, max_position=256))
    prm = ValuePRM.of(ValueModel.from_causal_lm(policy))
    with torch.no_grad():                      # a head that is not the zero start
        prm.head.weight.normal_()
        prm.head.bias.normal_()
    folder = tmp_path_factory.mktemp("prm") / "hf"
    prm.save_token_classifier(folder, tokenizer)
    return prm.eval(), tokenizer, folder


def fresh_examples(tokenizer, seed: int, n: int = 12):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        prompt = encode(tokenizer, f"def f(xs, y):\n    \"\"\"task {rng.randint(0, 999)}\"\"\"\n")
        response = encode(tokenizer, random_program(rng) or "pass")
        spans = segment(response, tokenizer).spans
        out.append(example(prompt, response, spans, [0.0] * len(spans)))
    return out


def test_transformers_alone_reads_the_same_line_scores(tiny_prm, tmp_path):
    prm, tokenizer, folder = tiny_prm
    examples = fresh_examples(tokenizer, seed=1)
    (tmp_path / "inputs.json").write_text(json.dumps([e.input_ids for e in examples]))
    code = f"""
import json, sys, torch
from transformers import AutoModelForTokenClassification, AutoTokenizer
model = AutoModelForTokenClassification.from_pretrained({str(folder)!r}).eval()
AutoTokenizer.from_pretrained({str(folder)!r})
assert model.config.num_labels == 1 and "score" in model.config.prm, model.config
out = []
with torch.no_grad():
    for ids in json.load(open({str(tmp_path / 'inputs.json')!r})):
        out.append(model(torch.tensor([ids])).logits[0, :, 0].tolist())
assert not [m for m in sys.modules if m.startswith("prmfast")]
print(json.dumps(out))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    logits = json.loads(proc.stdout.strip().splitlines()[-1])
    want = prm.predict(examples)
    for e, row, scores in zip(examples, logits, want):
        assert [row[i] for i in e.line_ends] == pytest.approx(scores, abs=1e-5)
    assert (folder / "README.md").read_text().startswith("---\nlibrary_name: transformers")
    assert json.loads((folder / "config.json").read_text())["architectures"] == [
        "LlamaForTokenClassification"]


def test_prmfast_loads_the_folder_as_a_prm_and_as_prm_init(tiny_prm):
    prm, tokenizer, folder = tiny_prm
    assert is_token_classifier(folder)
    examples = fresh_examples(tokenizer, seed=2)
    loaded = load_prm(folder)
    assert isinstance(loaded, ValuePRM)
    for got, want in zip(loaded.predict(examples), prm.predict(examples)):
        assert got == pytest.approx(want, abs=1e-5)
    start = ValueModel.from_pretrained(folder)                  # prm.init=<folder>
    assert torch.equal(start.head.weight, prm.head.weight)
    assert torch.equal(start.head.bias, prm.head.bias)
    again = start.to_token_classifier()                          # and out again: same weights
    for name, tensor in again.state_dict().items():
        source = prm.head if name.startswith("score.") else prm.backbone
        assert torch.equal(tensor, source.state_dict()[name.split(".", 1)[1]]), name


def test_prm_pretrained_takes_the_folder_as_a_frozen_backbone(tiny_prm):
    prm, tokenizer, folder = tiny_prm
    frozen = FrozenBackbonePRM.from_backbone(folder, tokenizer)
    state = frozen.model.backbone.state_dict()
    assert state.keys() == prm.backbone.state_dict().keys()
    assert all(torch.equal(state[k], v) for k, v in prm.backbone.state_dict().items())
    assert not frozen.model.head.weight.any()                   # its head is fitted by ridge


def test_other_folders_are_not_token_classifiers(tiny_prm, tmp_path):
    prm, tokenizer, _ = tiny_prm
    prm.save_pretrained(tmp_path / "native", tokenizer)          # backbone + value_head
    save_policy(build_tiny_model(tokenizer, ModelConfig(hidden_size=32, num_layers=1,
                                                        num_heads=2, intermediate_size=64,
                                                        max_position=64)),
                tokenizer, tmp_path / "policy")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{")
    for name in ("native", "policy", "broken", "missing"):
        assert not is_token_classifier(tmp_path / name), name


@pytest.mark.slow
def test_the_prm_stage_writes_the_standard_folder(tmp_path):
    """A smoke run's DIR/prm/hf, read by transformers, scores its rerank samples as
    DIR/prm/model does through prmfast."""
    from transformers import AutoModelForTokenClassification
    run = tmp_path / "run"
    for stage in ("sft", "rl_baseline", "collect", "prm"):
        proc = subprocess.run([sys.executable, "-m", "prmfast.train", stage, "--preset", "smoke",
                               "--out", str(run)], cwd=ROOT, capture_output=True, text=True,
                              timeout=1800)
        assert proc.returncode == 0, proc.stderr[-3000:]
    hf = AutoModelForTokenClassification.from_pretrained(run / "prm" / "hf").eval()
    native = load_prm(run / "prm" / "model")
    from transformers import AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(run / "prm" / "hf")
    rows = [json.loads(line) for line in (run / "prm" / "rerank_samples.jsonl").open()]
    spans = [segment(r["response_ids"], tokenizer).spans for r in rows[:16]]
    examples = [example(r["prompt_ids"], r["response_ids"], s, [0.0] * len(s))
                for r, s in zip(rows, spans)]
    for e, want in zip(examples, native.predict(examples)):
        with torch.no_grad():
            logits = hf(torch.tensor([e.input_ids])).logits[0, :, 0]
        assert [logits[i].item() for i in e.line_ends] == pytest.approx(want, abs=1e-5)
