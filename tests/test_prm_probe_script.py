"""scripts/prm_probe.py: line ends found across two different tokenizers, and the ridge head."""
import importlib.util
from pathlib import Path

import torch

from prmfast.lines import segment
from prmfast.models.tokenizer import encode, train_tokenizer

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "prm_probe.py"
spec = importlib.util.spec_from_file_location("prm_probe", SCRIPT)
probe = importlib.util.module_from_spec(spec)
spec.loader.exec_module(probe)

PROMPT = "# Write f(xs):\n# 1. keep every second number\ndef f(xs):\n"
RESPONSE = "    xs = xs[::2]\n    # keep it\n\n    return sum(xs[:3])\n"


def test_line_ends_map_to_the_newline_token_of_another_tokenizer_on_cpu():
    corpus = [PROMPT + RESPONSE, "def g(a, b):\n    return a + b\n"] * 20
    run_tok = train_tokenizer(corpus, 300)             # merges "\n   " (newline + indent)
    backbone_tok = train_tokenizer([c.replace("\n", " ; ") for c in corpus], 300)  # "\n" alone
    prompt_ids, response_ids = encode(run_tok, PROMPT), encode(run_tok, RESPONSE)
    spans = segment(response_ids, run_tok).spans
    input_ids, ends = probe.line_end_tokens(backbone_tok, run_tok, prompt_ids, response_ids, spans)
    assert len(spans) >= 3 and len(ends) == len(spans) and ends == sorted(set(ends))
    text = PROMPT + RESPONSE
    enc = backbone_tok(text, return_offsets_mapping=True)
    assert enc["input_ids"] == input_ids[0].tolist()
    for end in ends:                    # each chosen token holds a newline of the response
        start, stop = enc["offset_mapping"][end]
        assert start >= len(PROMPT) - 1 and "\n" in text[start:stop], text[start:stop]
    assert enc["offset_mapping"][ends[-1]][1] >= len(text) - 1   # the last line's newline


def test_ridge_head_recovers_a_linear_score_on_cpu():
    gen = torch.Generator().manual_seed(0)
    features = torch.randn(400, 6, generator=gen, dtype=torch.float64) * 3 + 1
    targets = features @ torch.tensor([1.0, -2.0, 0.0, 0.5, 0.0, 0.0], dtype=torch.float64) + 0.3
    score = probe.fit_ridge(features, targets, 1e-6)
    assert torch.allclose(torch.tensor(score(features[:50]), dtype=torch.float64), targets[:50],
                          atol=1e-6)
