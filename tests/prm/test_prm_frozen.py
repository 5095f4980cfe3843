"""prmfast.prm.frozen: line ends carried across tokenizers, the ridge head, and the frozen
pretrained-backbone PRM (fit, predict, save/load, RL dense-reward scoring) on tiny models."""
import dataclasses
import random
from pathlib import Path

import pytest
import torch

from prmfast.config import load_config
from prmfast.lines import segment
from prmfast.models import build_tiny_model, encode, save_policy, train_tokenizer
from prmfast.prm import load_prm
from prmfast.prm.data import example
from prmfast.prm.frozen import FrozenBackbonePRM, fit_ridge, is_frozen_prm, map_line_ends
from prmfast.rl.experience import PackedBatch

PROMPT = "# Write f(xs):\n# 1. keep every second number\ndef f(xs):\n"
GOOD = "    xs = xs[::2]\n    # keep it\n\n    return sum(xs[:3])\n"
BAD = "    xs = xs[1::3]\n    return max(xs)\n"
CORPUS = [PROMPT + GOOD, PROMPT + BAD, "def g(a, b):\n    return a + b\n"] * 20


@pytest.fixture(scope="module")
def tokenizers():
    """(the run's tokenizer: merges newline + indent, a backbone tokenizer: a lone newline)."""
    run_tok = train_tokenizer(CORPUS, 300)
    backbone_tok = train_tokenizer([c.replace("\n", " ; ") for c in CORPUS] + ["\n"], 280)
    return run_tok, backbone_tok


def _example(tok, response, targets=None):
    ids = encode(tok, response)
    spans = segment(ids, tok).spans
    return example(encode(tok, PROMPT), ids, spans,
                   targets if targets is not None else [0.0] * len(spans))


def test_line_ends_map_to_the_newline_token_of_another_tokenizer_on_cpu(tokenizers):
    run_tok, backbone_tok = tokenizers
    ex = _example(run_tok, GOOD)
    ids, ends = map_line_ends(run_tok, backbone_tok, ex.input_ids, ex.line_ends)
    assert len(ex.line_ends) == 4 and ends == sorted(set(ends))
    text = PROMPT + GOOD
    enc = backbone_tok(text, return_offsets_mapping=True)
    assert enc["input_ids"] == ids
    newlines = [i for i, c in enumerate(text) if c == "\n" and i >= len(PROMPT)]
    for end, newline in zip(ends, newlines):     # line m -> the token holding its newline
        start, stop = enc["offset_mapping"][end]
        assert start <= newline < stop, (text[start:stop], newline)


def test_special_token_text_in_code_stays_text_for_the_backbone_on_cpu(tokenizers):
    from prmfast.models.tokenizer import EOS

    run_tok, backbone_tok = tokenizers
    response = f"    s = '{EOS}'\n    return s\n"
    ex = _example(run_tok, response)
    ids, ends = map_line_ends(run_tok, backbone_tok, ex.input_ids, ex.line_ends)
    assert backbone_tok.eos_token_id not in ids
    assert backbone_tok.decode(ids) == PROMPT + response
    assert [backbone_tok.decode(ids[:end + 1]).endswith("\n") for end in ends] == [True, True]


def test_line_ends_on_random_code_like_texts_on_cpu(tokenizers):
    """Random lines (indents, blank lines, spaces before the newline, no final newline): each
    line's backbone token holds the line's last non-blank character."""
    run_tok, backbone_tok = tokenizers
    rng = random.Random(0)
    words = ["xs", "=", "[x", "for", "x", "in", "if", "return", "sum(xs)", "# note", "é", "1"]
    for _ in range(30):
        lines = [" " * rng.choice([0, 4, 8]) + " ".join(rng.choices(words, k=rng.randint(0, 5)))
                 + " " * rng.randint(0, 2) for _ in range(rng.randint(1, 6))]
        response = "\n".join(lines) + rng.choice(["\n", ""])
        ex = _example(run_tok, response)
        text = run_tok.decode(ex.input_ids)
        ids, ends = map_line_ends(run_tok, backbone_tok, ex.input_ids, ex.line_ends)
        offsets = backbone_tok(text, return_offsets_mapping=True)["offset_mapping"]
        for pos, end in zip(ex.line_ends, ends):
            prefix = run_tok.decode(ex.input_ids[:pos + 1])
            last = len(prefix.rstrip(" \t")) - 1
            start, stop = offsets[end]
            assert start <= last < stop, (response, pos)


GGUF = (Path(__file__).resolve().parents[3] / "shared" / "models" / "smollm2-135m-instruct"
        / "SmolLM2-135M-Instruct.Q4_1.gguf")


@pytest.mark.slow
@pytest.mark.skipif(not GGUF.exists(), reason=f"SmolLM2 GGUF not found at {GGUF}")
def test_frozen_smollm2_prm_maps_and_scores_real_code_on_cpu(tokenizers):
    """The real backbone and tokenizer: every line of HumanEval canonical solutions maps to the
    SmolLM2 token holding its newline, and the packed RL path scores like predict."""
    from prmfast.data import load_tasks

    run_tok, _ = tokenizers
    prm = FrozenBackbonePRM.from_backbone(GGUF, run_tok)
    torch.nn.init.normal_(prm.model.head.weight, std=0.1)
    examples, prompt_lens = [], []
    for task in load_tasks("humaneval")[:12]:
        prompt, response = encode(run_tok, task.prompt), encode(run_tok, task.reference)
        ex = example(prompt, response, segment(response, run_tok).spans, [])
        text = run_tok.decode(ex.input_ids)
        ids, ends = map_line_ends(run_tok, prm.tokenizer, ex.input_ids, ex.line_ends)
        offsets = prm.tokenizer(text, return_offsets_mapping=True)["offset_mapping"]
        for pos, end in zip(ex.line_ends, ends):
            last = len(run_tok.decode(ex.input_ids[:pos + 1]).rstrip(" \t")) - 1
            assert offsets[end][0] <= last < offsets[end][1]
        examples.append(ex)
        prompt_lens.append(len(prompt))
    scores = prm.predict(examples[:3])
    assert [len(s) for s in scores] == [len(e.line_ends) for e in examples[:3]]
    batch = PackedBatch.from_sequences([e.input_ids for e in examples[:3]], prompt_lens[:3], 0)
    line_end = torch.zeros(int(batch.cu_seqlens[-1]), dtype=torch.bool)
    for s, (e, plen) in enumerate(zip(examples[:3], prompt_lens)):
        line_end[[int(batch.cu_seqlens[s]) + pos - plen for pos in e.line_ends]] = True
    packed = prm.packed_line_scores(batch, line_end)
    assert packed[line_end].tolist() == pytest.approx([v for s in scores for v in s], abs=1e-4)


def test_weighted_ridge_recovers_a_linear_score_on_cpu():
    gen = torch.Generator().manual_seed(0)
    features = torch.randn(400, 6, generator=gen, dtype=torch.float64) * 3 + 1
    true = torch.tensor([1.0, -2.0, 0.0, 0.5, 0.0, 0.0], dtype=torch.float64)
    targets = features @ true + 0.3
    weights = torch.rand(400, generator=gen, dtype=torch.float64) + 0.5
    (w, b), (w_big, _) = fit_ridge(features, targets, weights, [1e-6, 1e6])
    assert torch.allclose(w, true, atol=1e-5) and b == pytest.approx(0.3, abs=1e-5)
    assert w_big.abs().max() < 1e-2                 # a huge ridge shrinks to the bias alone
    noisy = targets + torch.randn(400, generator=gen, dtype=torch.float64)
    (w1, b1), = fit_ridge(features, noisy, torch.ones(400, dtype=torch.float64), [10.0])
    x = torch.cat([(features - features.mean(0)) / (features.std(0) + 1e-6),
                   torch.ones(400, 1, dtype=torch.float64)], 1)   # the same fit, written out
    reg = 10.0 * torch.eye(7, dtype=torch.float64)
    reg[-1, -1] = 0
    coef = torch.linalg.solve(x.T @ x + reg, x.T @ noisy)
    assert torch.allclose(features @ w1 + b1, x @ coef, atol=1e-8)


@pytest.fixture(scope="module")
def backbone_dir(tokenizers, tmp_path_factory):
    """A tiny 'pretrained' causal LM with the backbone tokenizer, saved as an HF folder."""
    _, backbone_tok = tokenizers
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("backbone")
    save_policy(build_tiny_model(backbone_tok, load_config("smoke").model), backbone_tok, folder)
    return folder


def test_frozen_prm_fits_predicts_and_round_trips_on_cpu(tokenizers, backbone_dir, tmp_path):
    run_tok, _ = tokenizers
    prm = FrozenBackbonePRM.from_backbone(backbone_dir, run_tok)
    frozen = {k: v.clone() for k, v in prm.model.backbone.state_dict().items()}
    n_good, n_bad = (len(_example(run_tok, r).line_ends) for r in (GOOD, BAD))
    examples = [_example(run_tok, GOOD, [1.0, 0.0, 0.0, 1.0]) if i % 2 else
                _example(run_tok, BAD, [1.0] + [-1.0] * (n_bad - 1)) for i in range(12)]
    cfg = load_config("smoke", sets=["prm.ridge=[0.01,1,100]", "prm.batch_size=5"]).prm
    hist = prm.fit(examples[:8], examples[8:], cfg, progress=False)
    assert hist["best_ridge"] in cfg.ridge and len(hist["val_loss"]) == 3
    assert hist["best_val_loss"] == min(hist["val_loss"]) < 0.05     # learnable: content differs
    assert all(torch.equal(v, prm.model.backbone.state_dict()[k]) for k, v in frozen.items())
    assert not any(p.requires_grad for p in prm.parameters())
    scores = prm.predict(examples[:2], batch_size=1)
    assert [len(s) for s in scores] == [n_bad, n_good]
    assert scores[0][-1] < 0 < scores[1][-1]
    states = prm.line_end_states(examples[:1])[0]          # the head on the line-end states
    manual = states.double() @ prm.model.head.weight[0].double() + prm.model.head.bias.double()
    assert torch.allclose(torch.tensor(scores[0], dtype=torch.float64), manual, atol=1e-5)

    prm.save(tmp_path / "prm")
    assert is_frozen_prm(tmp_path / "prm") and not (tmp_path / "prm" / "model.safetensors").exists()
    again = load_prm(tmp_path / "prm")
    assert isinstance(again, FrozenBackbonePRM)
    reloaded = again.predict(examples[:2])
    assert all(a == pytest.approx(b, abs=1e-6) for a, b in zip(reloaded, scores))


@pytest.mark.parametrize("early_stop, chosen", [("loss", 0.01), ("auc", 1.0),
                                                ("within_task", 100.0)])
def test_frozen_prm_picks_the_ridge_by_the_asked_validation_metric_on_cpu(
        tokenizers, backbone_dir, monkeypatch, early_stop, chosen):
    import prmfast.prm.frozen as frozen_module
    from prmfast.prm.metrics import validation_metrics

    run_tok, _ = tokenizers
    prm = FrozenBackbonePRM.from_backbone(backbone_dir, run_tok)
    n_bad = len(_example(run_tok, BAD).line_ends)
    examples = [dataclasses.replace(
        _example(run_tok, GOOD, [1.0, 0.0, 0.0, 1.0]) if i % 2 else
        _example(run_tok, BAD, [1.0] + [-1.0] * (n_bad - 1)), task=f"t{i // 2}",
        passed=bool(i % 2)) for i in range(12)]
    # the validation metrics of the three strengths, in order: each mode has its own winner
    designed = iter([{"loss": 0.1, "auc": 0.6, "within_task": 0.5},
                     {"loss": 0.3, "auc": 0.9, "within_task": 0.6},
                     {"loss": 0.5, "auc": 0.7, "within_task": 0.9}])
    monkeypatch.setattr(frozen_module, "validation_metrics", lambda ex, sc: (
        validation_metrics(ex, sc) if len(ex) == 8 else next(designed)))
    cfg = load_config("smoke", sets=["prm.ridge=[0.01,1,100]", "prm.batch_size=5",
                                     f"prm.early_stop={early_stop}"]).prm
    hist = prm.fit(examples[:8], examples[8:], cfg, progress=False)
    assert hist["best_ridge"] == chosen and hist["val_within_task"] == [0.5, 0.6, 0.9]
    assert hist["best_val_loss"] == {0.01: 0.1, 1.0: 0.3, 100.0: 0.5}[chosen]


def test_frozen_prm_scores_packed_rl_batches_like_predict_on_cpu(tokenizers, backbone_dir):
    """The dense-reward path (packed_line_scores on a PackedBatch, EOS and empty responses
    included) puts each line's score on its line-end token and 0 elsewhere."""
    run_tok, _ = tokenizers
    prm = FrozenBackbonePRM.from_backbone(backbone_dir, run_tok)
    torch.nn.init.normal_(prm.model.head.weight, std=0.5)
    prompt = encode(run_tok, PROMPT)
    responses = [encode(run_tok, GOOD) + [run_tok.eos_token_id], [], encode(run_tok, BAD)]
    batch = PackedBatch.from_sequences([prompt + r for r in responses], [len(prompt)] * 3,
                                       run_tok.pad_token_id)
    line_end = []
    for r in responses:                 # lines of the response proper; EOS closes none
        ends = {b - 1 for _, b in segment(r[:-1] if r[-1:] == [run_tok.eos_token_id] else r,
                                          run_tok).spans}
        line_end += [i in ends for i in range(len(r))]
    line_end = torch.tensor(line_end, dtype=torch.bool)
    scores = prm.packed_line_scores(batch, line_end)
    assert scores.shape == line_end.shape and (scores[~line_end] == 0).all()
    expected = prm.predict([_example(run_tok, GOOD), _example(run_tok, BAD)])
    assert scores[line_end].tolist() == pytest.approx(expected[0] + expected[1], abs=1e-5)


def test_frozen_prm_rejects_too_long_sequences_and_no_lines_on_cpu(tokenizers, backbone_dir):
    run_tok, _ = tokenizers
    prm = FrozenBackbonePRM.from_backbone(backbone_dir, run_tok)
    prm.max_length = 8
    with pytest.raises(ValueError, match="longer than the backbone"):
        prm.predict([_example(run_tok, GOOD)])
    with pytest.raises(ValueError, match="no lines"):
        prm.fit([example([1, 2], [], [], [])], [], load_config("smoke").prm, progress=False)


def test_frozen_prm_runs_identical_examples_once_on_cpu(tokenizers, backbone_dir, monkeypatch):
    run_tok, _ = tokenizers
    prm = FrozenBackbonePRM.from_backbone(backbone_dir, run_tok)
    torch.nn.init.normal_(prm.model.head.weight, std=0.5)
    good, bad = _example(run_tok, GOOD), _example(run_tok, BAD)
    alone = [prm.predict([e])[0] for e in (good, bad)]
    rows = []
    hidden = prm.model.hidden
    monkeypatch.setattr(prm.model, "hidden", lambda ids, mask: rows.append(len(ids)) or
                        hidden(ids, mask))
    scores = prm.predict([bad, good, bad, bad, good], batch_size=8)
    assert sum(rows) == 2                                   # two distinct sequences, run once
    for got, want in zip(scores, [alone[1], alone[0], alone[1], alone[1], alone[0]]):
        assert got == pytest.approx(want, abs=1e-5)


def test_a_lower_layer_reads_that_layers_states_and_round_trips_on_cpu(tokenizers, backbone_dir,
                                                                       tmp_path):
    run_tok, _ = tokenizers
    full = FrozenBackbonePRM.from_backbone(backbone_dir, run_tok)
    low = FrozenBackbonePRM.from_backbone(backbone_dir, run_tok, layer=1)
    assert len(full.model.backbone.layers) == 2 and len(low.model.backbone.layers) == 1
    ex = _example(run_tok, GOOD)
    ids, ends = map_line_ends(run_tok, full.tokenizer, ex.input_ids, ex.line_ends)
    with torch.no_grad():
        out = full.model.backbone(input_ids=torch.tensor([ids]), output_hidden_states=True)
        expected = full.model.backbone.norm(out.hidden_states[1])[0, ends]   # layer 1, normed
    got = low.line_end_states([ex])[0]
    assert torch.allclose(got, expected.float(), atol=1e-5)
    assert not torch.allclose(full.line_end_states([ex])[0], got, atol=1e-3)
    low.model.head.weight.data.normal_()
    low.save(tmp_path / "prm")
    again = load_prm(tmp_path / "prm")
    assert again.layer == 1 and len(again.model.backbone.layers) == 1
    assert again.predict([ex])[0] == pytest.approx(low.predict([ex])[0], abs=1e-6)
    for bad in (0, 3):
        with pytest.raises(ValueError, match="has layers 1..2"):
            FrozenBackbonePRM.from_backbone(backbone_dir, run_tok, layer=bad)
