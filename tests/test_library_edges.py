"""Edge cases of the PRM and labelling library: mismatched lengths, empty inputs, repeated
objects or keys, non-finite scores, a torn probe journal."""
import dataclasses
import json
import math
from types import SimpleNamespace

import pytest
import torch

from prmfast.config import load_config
from prmfast.labeling import Prober, Response, label_responses
from prmfast.labeling.search import line_labels, m_star
from prmfast.prm.data import collate, example, make_batch
from prmfast.prm.metrics import aggregate, rerank, rerank_margins, roc_auc, within_task_auc
from prmfast.prm.train import train_prm


@pytest.fixture(scope="module")
def tiny():
    from prmfast.models import build_tiny_model, encode, train_tokenizer
    from prmfast.prm import ValuePRM

    texts = ["    xs = sorted(xs)\n    return xs[:2]\n", "def f(xs):\n"]
    tok = train_tokenizer(texts * 30, vocab_size=300)
    torch.manual_seed(0)
    prm = ValuePRM.from_causal_lm(build_tiny_model(tok, load_config("smoke").model))
    with torch.no_grad():                  # every line scores exactly the bias
        prm.head.weight.zero_()
        prm.head.bias.fill_(0.5)
    return tok, prm, encode(tok, texts[1]), encode(tok, texts[0])


def test_make_batch_and_example_reject_mismatched_lengths_on_cpu(tiny):
    from prmfast.lines import segment

    tok, _, p, r = tiny
    spans = segment(r, tok).spans
    assert len(spans) == 2
    with pytest.raises(ValueError, match="prompts has 2 rows but responses has 1"):
        make_batch([p, p], [r], tok)
    with pytest.raises(ValueError, match="targets has 2 rows but responses has 1"):
        make_batch([p], [r], tok, targets=[[1.0, -1.0], [1.0, -1.0]])
    with pytest.raises(ValueError, match="targets has 1 values for 2 line spans"):
        make_batch([p], [r], tok, targets=[[1.0]])
    with pytest.raises(ValueError, match="targets has 3 values for 2 line spans"):
        example(p, r, spans, [1.0, -1.0, 1.0])
    unlabelled = example(p, r, spans, [])                  # allowed: prediction only
    with pytest.raises(ValueError, match=r"examples\[0\]: targets has 0 values for 2 line"):
        collate([unlabelled], tok.pad_token_id)
    batch = make_batch([p], [r], tok, targets=[[1.0, -1.0]])
    assert batch.targets[batch.line_end].tolist() == [1.0, -1.0]


def test_empty_batch_and_unknown_aggregate_are_rejected_on_cpu(tiny):
    tok = tiny[0]
    with pytest.raises(ValueError, match="batch is empty"):
        collate([], tok.pad_token_id)
    with pytest.raises(ValueError, match="batch is empty"):
        make_batch([], [], tok)
    with pytest.raises(ValueError, match="unknown aggregate 'bogus'"):
        aggregate([0.1], "bogus")
    with pytest.raises(ValueError, match="unknown aggregate 'bogus'"):
        aggregate([], "bogus")
    with pytest.raises(ValueError, match="unknown aggregate 'max'"):
        within_task_auc([], how="max")


def test_roc_auc_rejects_a_length_mismatch_on_cpu():
    with pytest.raises(ValueError, match="scores has 2 values but positive has 3"):
        roc_auc([0.1, 0.2], [True, False, True])
    assert roc_auc([0.1, 0.2], [False, True]) == 1.0


def test_predict_scores_the_same_example_object_twice_on_cpu(tiny):
    from prmfast.lines import segment

    tok, prm, p, r = tiny
    e1 = example(p, r, segment(r, tok).spans, [1.0, -1.0])
    e2 = example(p, r[:3], [(0, 3)], [1.0])
    assert prm.predict([e1, e1]) == [[0.5, 0.5], [0.5, 0.5]]
    got = prm.predict([e1, e2, e1], batch_size=1)
    assert got == [[0.5, 0.5], [0.5], [0.5, 0.5]]
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        prm.predict([e1], batch_size=0)


def test_rerank_and_within_task_auc_reject_empty_groups_and_non_finite_scores_on_cpu():
    nan = float("nan")
    with pytest.raises(ValueError, match=r"groups\[0\] \(task 0\) has no samples"):
        rerank([[]])
    with pytest.raises(ValueError, match=r"groups\[1\] \(task 1\) has no samples"):
        within_task_auc([[(True, [0.1])], []])
    for group in ([(True, [nan]), (False, [0.1])], [(True, [0.2]), (False, [nan])],
                  [(True, [0.2]), (False, [math.inf])]):
        with pytest.raises(ValueError, match=r"groups\[1\] \(task 1\) has a non-finite"):
            rerank([[(True, [0.3])], group])
        with pytest.raises(ValueError, match=r"groups\[0\] \(task 0\) has a non-finite"):
            within_task_auc([group])
    with pytest.raises(ValueError, match=r"groups\[1\] \(task 1\) has a non-finite"):
        rerank_margins([[(True, [0.3])], [(True, [nan])]])
    # finite scores still work: the passing sample scores higher on every aggregate
    out = rerank([[(True, [0.2, 0.4]), (False, [0.1, 0.1])]])
    assert out["prm_min"] == out["prm_last"] == out["prm_mean"] == 1.0 and out["random"] == 0.5
    assert within_task_auc([[(True, [0.2]), (False, [0.1]), (False, [0.2])]]) == \
        {"auc": 0.75, "pairs": 2}


def test_train_prm_rejects_no_examples_and_zero_batch_size_on_cpu(tiny):
    from prmfast.lines import segment

    tok, prm, p, r = tiny
    e1 = example(p, r, segment(r, tok).spans, [1.0, -1.0])
    cfg = dataclasses.replace(load_config("smoke").prm, epochs=1)
    with pytest.raises(ValueError, match="no training examples"):
        train_prm(prm, [], [], cfg, progress=False)
    with pytest.raises(ValueError, match="no training examples"):
        train_prm(prm, [], [e1], cfg, progress=False)
    with pytest.raises(ValueError, match="prm.batch_size must be >= 1, got 0"):
        train_prm(prm, [e1], [], dataclasses.replace(cfg, batch_size=0), progress=False)


# ---------------------------------------------------------------- labelling

class Backend:
    """Every completion is one token; the sandbox passes it while the prefix has <= 2 tokens."""

    def generate(self, prompt_ids, *, n, max_new_tokens, temperature, top_p=1.0, seed=None,
                 progress=False):
        return [[SimpleNamespace(response_ids=[0]) for _ in range(n)] for _ in prompt_ids]


class Sandbox:
    def run(self, jobs):
        return [SimpleNamespace(passed=job) for job in jobs]


def make_prober(journal=None):
    return Prober(Backend(), Sandbox(), lambda task, prompt, prefix, comp: len(prefix) <= 2, k=4,
                  first_wave=2, temperature=1.0, top_p=1.0, max_new_tokens=4, seed=0,
                  journal=journal)


def response(key, n_lines, passed=False):
    return Response(key, SimpleNamespace(task_id="t0", prompt=""), [100],
                    list(range(1, n_lines + 1)), [(i, i + 1) for i in range(n_lines)],
                    [False] * n_lines, passed)


def test_prober_resumes_from_a_torn_journal_on_cpu(tmp_path):
    journal = tmp_path / "probes.jsonl"
    first = label_responses([response("r0", 5)], make_prober(journal))[0]
    # 5 code lines, prefixes of <= 2 lines recoverable: probes 2 (ok) then 3 (bad) -> m* = 3
    assert first.probed == [(2, True), (3, False)] and first.m_star == 3
    assert first.labels == [1, 1, -1, -1, -1]
    whole = journal.read_text()
    rows = [json.loads(line) for line in whole.splitlines()]
    assert len(rows) == 2
    journal.write_text(whole + whole.splitlines()[0][:15])       # interrupted append
    prober = make_prober(journal)
    assert set(prober.cache) == {("t0", (1, 2)), ("t0", (1, 2, 3))}
    assert journal.read_text() == whole                          # the torn fragment is cut
    again = label_responses([response("r0", 5)], prober)[0]
    assert again.probed == first.probed and again.cost.cached == 2
    label_responses([response("r1", 6)], prober)                  # probes new prefixes
    lines = journal.read_text().splitlines()
    assert len(lines) > 2 and all(json.loads(line) for line in lines)
    # a last row complete but for its newline is kept, and the newline added
    journal.write_text(whole.removesuffix("\n"))
    assert len(make_prober(journal).cache) == 2 and journal.read_text() == whole


def test_label_responses_rejects_repeated_keys_on_cpu():
    with pytest.raises(ValueError, match="key 'dup' appears more than once"):
        label_responses([response("dup", 5), response("dup", 2, passed=True)], make_prober())


def test_m_star_requires_a_search_point_within_the_code_lines_on_cpu():
    with pytest.raises(ValueError, match=r"first_bad must be in 0\.\.2 .* got 3"):
        m_star([False, False], 3)
    with pytest.raises(ValueError, match=r"first_bad must be in 0\.\.2 .* got -1"):
        m_star([False, False], -1)
    with pytest.raises(ValueError, match=r"first_bad must be in 0\.\.1 .* got 2"):
        line_labels([True, False], 2)
    assert m_star([True, False, False], 2) == 3     # code line 2 is line 3
    assert m_star([True, False], 0) == 0 and m_star([], 0) == 0
    assert m_star([False, False], None) is None
    assert line_labels([True, False, False], 2) == [0, 1, -1]


def test_metric_helpers_name_the_mismatched_argument_on_cpu(tiny):
    from prmfast.lines import segment
    from prmfast.prm.data import comment_targets
    from prmfast.prm.metrics import group_by_task, validation_metrics

    tok, _, p, r = tiny
    e = example(p, r, segment(r, tok).spans, [1.0, -1.0])
    with pytest.raises(ValueError, match="scores has 2 rows for 1 examples"):
        validation_metrics([e], [[0.1, 0.2], [0.3]])
    with pytest.raises(ValueError, match=r"scores\[0\] has 3 values for 2 line targets"):
        validation_metrics([e], [[0.1, 0.2, 0.3]])
    assert validation_metrics([e], [[1.0, -1.0]])["loss"] == pytest.approx(0.0)
    groups = [[(True, [0.2]), (False, [0.1])]]
    with pytest.raises(ValueError, match="keys has 2 groups but groups has 1"):
        rerank(groups, keys=[["a", "b"], ["c"]])
    with pytest.raises(ValueError, match=r"keys\[0\] has 1 keys for the 2 samples of groups\[0\]"):
        rerank(groups, keys=[["a"]])
    with pytest.raises(ValueError, match=r"keys\[1\] has 1 keys for the 2 samples of groups\[1\]"):
        rerank_margins(groups * 2, keys=[["a", "b"], ["a"]])
    assert rerank(groups, keys=[["a", "a"]])["majority"] == 0.5
    with pytest.raises(ValueError, match="task_ids has 3 values but items has 2"):
        group_by_task(["t", "t", "u"], [1, 2])
    with pytest.raises(ValueError, match="labels has 3 values but is_comment has 2"):
        comment_targets([1, -1, -1], [False, True])
    assert comment_targets([1, -1, -1], [False, True, False], neutral=False) == [1.0, 1.0, -1.0]


def test_roc_auc_rejects_nan_scores_on_cpu():
    with pytest.raises(ValueError, match="non-finite"):
        roc_auc([0.1, float("nan"), 0.3], [True, False, True])


def test_collate_rejects_a_line_end_past_the_tokens_on_cpu(tiny):
    tok, _, p, r = tiny
    beyond = example(p, r, [(0, len(r) + 1)], [1.0])      # a span one token past the response
    with pytest.raises(ValueError, match=r"examples\[0\]: a line end lies outside its"):
        collate([beyond], tok.pad_token_id)
