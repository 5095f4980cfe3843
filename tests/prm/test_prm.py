"""PRM: targets, batches, metrics on hand-made cases, and training on a tiny model."""
import dataclasses
import math
import random

import pytest
import torch

from prmfast.config import load_config
from prmfast.errors import StageError
from prmfast.prm.data import (collate, comment_targets, example, line_values, loss_weights,
                              make_batch, with_weights)
from prmfast.prm.metrics import (aggregate, first_bad_index, group_by_task, line_metrics,
                                 localisation, oracle_labels, rerank, rerank_margins, roc_auc,
                                 selection_key, validation_metrics, within_task_auc)
from prmfast.prm.stage import split_by_task
from prmfast.prm.train import mse_loss, train_prm


def test_comment_targets_neutral_and_hack_on_cpu():
    labels, com = [0, 1, 0, -1, 0], [True, False, True, False, True]
    assert comment_targets(labels, com) == [0.0, 1.0, 0.0, -1.0, 0.0]
    assert comment_targets(labels, com, neutral=False) == [1.0, 1.0, 1.0, -1.0, -1.0]


def test_roc_auc_on_hand_made_cases_on_cpu():
    assert roc_auc([0.1, 0.2, 0.8, 0.9], [False, False, True, True]) == 1.0
    assert roc_auc([0.9, 0.8, 0.2, 0.1], [False, False, True, True]) == 0.0
    assert roc_auc([0.5, 0.5, 0.5, 0.5], [False, True, False, True]) == 0.5
    assert roc_auc([0.1, 0.4, 0.35, 0.8], [False, False, True, True]) == 0.75
    assert math.isnan(roc_auc([1.0, 2.0], [True, True]))


def test_line_metrics_skip_neutral_and_unlabelled_on_cpu():
    scores = [[0.5, 9.0, -0.2], [0.3, 0.1], [-5.0]]
    labels = [[1, 0, -1], [1, -1], None]
    m = line_metrics(scores, labels)
    assert m["lines"] == 4 and m["positive"] == 2
    assert m["accuracy"] == 0.75          # 0.1 on a -1 line is wrong
    assert m["auc"] == 1.0


def test_localisation_and_first_bad_on_cpu():
    com = [False, True, False, False]
    assert first_bad_index([1, 0, 1, -1]) == 3 and first_bad_index([1, 0, 1, 1]) is None
    scores = [[0.5, -9.0, -0.1, -0.3],   # comment line ignored: first negative code line is 2
              [0.5, 0.0, 0.4, -0.2],     # 3
              [0.5, 0.0, 0.4, 0.2]]      # none
    out = localisation(scores, [com] * 3, [2, 2, 3])
    assert out["responses"] == 3
    assert out["accuracy"] == pytest.approx(1 / 3) and out["within_one"] == pytest.approx(2 / 3)


def test_rerank_on_hand_made_groups_on_cpu():
    groups = [[(False, [0.9, -0.5]), (True, [0.2, 0.3])],    # min picks pass, last picks pass
              [(True, [0.9, 0.6]), (False, [0.5, 0.8])],     # min picks pass, last picks fail
              [(False, []), (False, [0.1])]]
    out = rerank(groups)
    assert out["random"] == pytest.approx(1 / 3)
    assert out["prm_min"] == pytest.approx(2 / 3) and out["prm_last"] == pytest.approx(1 / 3)
    assert out["oracle"] == pytest.approx(2 / 3)


def test_rerank_ties_share_the_pick_and_mean_aggregate_on_cpu():
    assert aggregate([], "min") == -math.inf and aggregate([0.2, -0.4, 0.8], "mean") == \
        pytest.approx(0.2)
    with pytest.raises(ValueError, match="aggregate"):
        aggregate([1.0], "max")
    groups = [[(True, [0.5, 0.5]), (False, [0.5, 0.5]), (False, [0.1, 0.9])],
              [(False, [0.9, -0.9, 0.9]), (True, [0.2, 0.2, 0.2])]]
    out = rerank(groups)
    # min: group 1 ties the first two (0.5): half a pass; group 2 picks the pass
    assert out["prm_min"] == pytest.approx((0.5 + 1) / 2)
    # last: group 1 picks the 0.9 fail; group 2 picks the 0.9 fail
    assert out["prm_last"] == 0.0
    # mean: group 1 ties all three at 0.5 (1/3); group 2: 0.3 (fail) > 0.2 (pass)
    assert out["prm_mean"] == pytest.approx((1 / 3) / 2)


def test_loss_weights_balance_classes_and_responses_on_cpu():
    targets = [[1.0, -1.0, -1.0], [-1.0, 0.0]]
    w = loss_weights(targets, class_balance=False)
    assert w == [[1.0, 1.0, 1.0], [1.0, 1.0]]
    w = loss_weights(targets)       # 1 positive, 3 negatives: each class carries weight 2
    assert w[0] == pytest.approx([2.0, 2 / 3, 2 / 3]) and w[1] == pytest.approx([2 / 3, 1.0])
    w = loss_weights(targets, class_balance=True, response_norm=True)   # each sums to 2.5
    assert w[0] == pytest.approx([1.5, 0.5, 0.5]) and w[1] == pytest.approx([1.0, 1.5])
    w = loss_weights(targets, class_balance=False, response_norm=True)
    assert w[0] == pytest.approx([2.5 / 3] * 3) and w[1] == pytest.approx([1.25, 1.25])
    assert loss_weights([[-1.0, -1.0], []]) == [[1.0, 1.0], []]    # one class only: unweighted


def test_weighted_mse_on_a_hand_made_batch_on_cpu():
    cfg = load_config("smoke", sets=["prm.class_balance=true"]).prm
    exs = with_weights([example([7], [1, 2], [(0, 1), (1, 2)], [1.0, -1.0]),
                        example([7], [3, 4], [(0, 1), (1, 2)], [-1.0, -1.0])], cfg)
    b = collate(exs, pad_id=0)
    assert b.weights[b.line_end].tolist() == pytest.approx([2.0, 2 / 3, 2 / 3, 2 / 3])
    scores = torch.zeros_like(b.targets)          # error 1 on every line
    assert mse_loss(scores, b).item() == pytest.approx(1.0)
    scores[0, 1] = 1.0                           # the positive line right: only negatives err
    assert mse_loss(scores, b).item() == pytest.approx(2.0 / 4.0)    # (3 * 2/3) / 4
    b.weights = None                             # unweighted: 3 of 4 lines err
    assert mse_loss(scores, b).item() == pytest.approx(3 / 4)
    mixed = collate([exs[0], example([7], [5], [(0, 1)], [1.0])], pad_id=0)
    assert mixed.weights[1, 1] == 1.0 and mixed.weights[1, 0] == 0.0


def test_oracle_labels_on_cpu():
    com = [False, True, False]
    assert oracle_labels(com, True, None) == [1, 0, 1]
    assert oracle_labels(com, False, 3) == [1, 0, -1]
    assert oracle_labels(com, False, None) is None


def test_split_by_task_holds_out_whole_tasks_on_cpu():
    recs = [{"task_id": f"t{i % 10}"} for i in range(40)]
    train, val = split_by_task(recs, 0.2, seed=0)
    assert len({r["task_id"] for r in val}) == 2
    assert not {r["task_id"] for r in val} & {r["task_id"] for r in train}


def test_collate_puts_targets_on_line_end_tokens_on_cpu():
    ex = example([7, 8], [1, 2, 3, 4], [(0, 2), (2, 4)], [1.0, -1.0])
    b = collate([ex, example([7], [5], [(0, 1)], [1.0])], pad_id=0)
    assert b.input_ids.tolist() == [[7, 8, 1, 2, 3, 4], [7, 5, 0, 0, 0, 0]]
    assert b.line_end.nonzero().tolist() == [[0, 3], [0, 5], [1, 1]]
    assert b.targets[0, 3] == 1.0 and b.targets[0, 5] == -1.0 and b.targets[1].sum() == 1.0


@pytest.fixture
def tiny():
    from prmfast.models import build_tiny_model, train_tokenizer
    from prmfast.prm import ValuePRM

    texts = ["    xs = [x for x in xs if x > 3]\n    xs = sorted(xs)\n    # note\n    return sum(xs)\n",
             "    xs = [x * 2 for x in xs]\n    return len(xs)\n", "# Write f(xs):\ndef f(xs):\n"]
    tok = train_tokenizer(texts * 30, vocab_size=300)
    torch.manual_seed(0)
    cfg = load_config("smoke").model
    return tok, ValuePRM.from_causal_lm(build_tiny_model(tok, cfg)), texts


def test_score_lines_api_places_scores_on_line_ends_on_cpu(tiny):
    from prmfast.lines import segment
    from prmfast.models import encode

    tok, prm, texts = tiny
    with torch.no_grad():
        prm.head.bias.fill_(0.5)
    prompt, resp = encode(tok, texts[2]), [encode(tok, t) for t in texts[:2]]
    batch = make_batch([prompt, prompt], resp, tok)
    scores = prm.line_scores(batch.input_ids, batch.line_end, batch.attention_mask)
    assert scores.shape == batch.input_ids.shape
    assert (scores[~batch.line_end] == 0).all() and (scores[batch.line_end] != 0).all()
    values = line_values(scores, batch)
    assert [len(v) for v in values] == [len(segment(r, tok).spans) for r in resp]
    for row, r in enumerate(resp):   # each scored token holds its line's newline (or ends it)
        ends = batch.line_end[row].nonzero().flatten().tolist()
        pieces = [tok.decode([batch.input_ids[row, i].item()]) for i in ends]
        assert all("\n" in p for p in pieces[:-1])
        assert ends[-1] == len(prompt) + len(r) - 1


@pytest.mark.slow
def test_prm_training_lowers_the_loss_on_cpu(tiny):
    from prmfast.models import encode

    tok, prm, texts = tiny
    prompt = encode(tok, texts[2])
    examples = []
    for i in range(24):   # the label depends on the response's content: learnable
        ids = encode(tok, texts[i % 2])
        spans = _spans(ids, tok)
        examples.append(example(prompt, ids, spans, [1.0 if i % 2 == 0 or j == 0 else -1.0
                                                     for j in range(len(spans))]))
    cfg = load_config("smoke", sets=["prm.epochs=6", "prm.batch_size=8", "prm.lr=3e-3"]).prm
    before = prm.predict(examples[:2])
    hist = train_prm(prm, examples[:20], examples[20:], cfg, progress=False)
    assert hist["train_loss"][-1] < 0.5 * hist["train_loss"][0]
    assert hist["val_loss"][-1] < hist["val_loss"][0]
    after = prm.predict(examples[:2])
    assert after != before
    assert after[1][-1] < 0 < after[0][-1]


@pytest.mark.parametrize("early_stop", ["auc", "within_task"])
def test_head_lr_and_early_stop_on_a_validation_metric_on_cpu(tiny, early_stop):
    from prmfast.models import encode

    tok, prm, texts = tiny
    prompt = encode(tok, texts[2])
    examples = []
    for i in range(8):
        ids = encode(tok, texts[i % 2])
        n = len(_spans(ids, tok))
        examples.append(example(prompt, ids, _spans(ids, tok), [1.0 if i % 2 else -1.0] * n,
                                task="t", passed=bool(i % 2)))
    with pytest.raises(ValueError, match="early_stop"):
        train_prm(prm, examples, [], load_config("smoke", sets=["prm.early_stop=x"]).prm,
                  progress=False)
    backbone = {k: v.clone() for k, v in prm.backbone.state_dict().items()}
    cfg = load_config("smoke", sets=["prm.epochs=2", "prm.batch_size=4", "prm.lr=0",
                                     "prm.head_lr=1e-2", "prm.patience=5",
                                     f"prm.early_stop={early_stop}"]).prm
    hist = train_prm(prm, examples[:6], examples[6:], cfg, progress=False)
    assert all(torch.equal(v, prm.backbone.state_dict()[k]) for k, v in backbone.items())
    assert prm.head.weight.abs().sum() > 0          # only the head learned
    assert len(hist[f"val_{early_stop}"]) == hist["epochs_run"] == 2
    assert 1 <= hist["best_epoch"] <= 2
    assert hist[f"best_val_{early_stop}"] == max(hist[f"val_{early_stop}"])


def _spans(ids, tok):
    from prmfast.lines import segment
    return segment(ids, tok).spans


def test_stages_check_prerequisites_up_front_on_cpu(tmp_path):
    from prmfast.labeling import collect
    from prmfast.prm import stage as prm

    cfg = load_config("smoke")
    with pytest.raises(StageError, match="rl_baseline stage"):
        collect.check_prerequisites(cfg, tmp_path)
    with pytest.raises(StageError, match="collect stage"):
        prm.check_prerequisites(cfg, tmp_path)
    (tmp_path / "prm_data").mkdir()
    (tmp_path / "prm_data" / "DONE").write_text("ok\n")
    with pytest.raises(StageError, match="sft stage"):
        prm.check_prerequisites(cfg, tmp_path)


def test_rerank_score_free_baselines_count_distinct_responses_on_cpu():
    # problem 1: "a" (passes) sampled 3 times, "b" and "c" (fail) once each; problem 2: all equal
    groups = [[(True, [0.1]), (True, [0.1]), (False, [0.3]), (True, [0.1]), (False, [0.2])],
              [(False, [0.0]), (False, [0.0])]]
    keys = [["a", "a", "b", "a", "c"], ["z", "z"]]
    out = rerank(groups, keys)
    assert out["random"] == pytest.approx((3 / 5) / 2)
    assert out["random_distinct"] == pytest.approx((1 / 3) / 2)
    assert out["majority"] == pytest.approx(1 / 2)
    assert "majority" not in rerank(groups)
    with pytest.raises(ValueError):
        rerank(groups, [["a"], ["z", "z"]])


def test_rerank_margins_bound_the_pick_against_the_baselines_on_cpu():
    rng = random.Random(0)
    groups, keys = [], []
    for t in range(40):         # 1 passing of 4 distinct responses; the PRM ranks it first
        passing = rng.randrange(4)
        groups.append([(i == passing, [1.0 if i == passing else -1.0]) for i in range(4)])
        keys.append([f"{t}-{i}" for i in range(4)])
    good = rerank_margins(groups, keys)
    assert set(good) == {"prm_min-random", "prm_min-majority"}
    assert good["prm_min-random"] == pytest.approx([0.75, 0.75])     # every task: 1 - 1/4
    blind = [[(p, [0.0]) for p, _ in g] for g in groups]                # ties: a uniform pick
    low, high = rerank_margins(blind, n_boot=500)["prm_min-random"]
    assert low == high == pytest.approx(0.0)
    mixed = [g if t % 2 else [(p, [-s[0]]) for p, s in g] for t, g in enumerate(groups)]
    low, high = rerank_margins(mixed, seed=1)["prm_min-random"]      # right on half the tasks
    assert low < 0.25 < high and high - low < 0.4
    assert rerank_margins(mixed, seed=1) == rerank_margins(mixed, seed=1)
    assert rerank_margins([]) == {}


def test_within_task_auc_orders_responses_inside_each_task_only_on_cpu():
    # task 1: the pass (min 0.2) beats one fail (min -0.5), ties one (0.2), loses to one (0.4)
    # task 2: the passes sit far below task 1's fails, and still beat their own task's fail
    groups = [[(True, [0.2, 0.9]), (False, [0.9, -0.5]), (False, [0.2]), (False, [0.4, 0.6])],
              [(True, [-0.8]), (True, [-0.7, -0.6]), (False, [-0.9])],
              [(True, [0.1]), (True, [0.0])],          # no failing response: no pair
              [(False, []), (True, [-1.0])]]           # no lines ranks last
    out = within_task_auc(groups, "min")
    assert out["pairs"] == 3 + 2 + 0 + 1
    assert out["auc"] == pytest.approx((1 + 0.5 + 0 + 2 + 1) / 6)
    # last: task 1 pass 0.9 beats -0.5, 0.2, 0.6 (3); task 2: -0.8 and -0.6 beat -0.9 (2); 1
    assert within_task_auc(groups, "last")["auc"] == pytest.approx(1.0)
    assert math.isnan(within_task_auc([[(True, [0.1])], [(False, [0.3])]])["auc"])
    # a score that only knows the task (every response of a task scored alike) is at 0.5,
    # however well it separates easy tasks from hard ones
    by_task = [[(p, [float(t)]) for p in (True, False, False)] for t in range(5)]
    assert within_task_auc(by_task)["auc"] == 0.5
    assert rerank(by_task)["prm_min"] == rerank(by_task)["random"]


def test_group_by_task_keeps_first_seen_order_on_cpu():
    assert group_by_task(["b", "a", "b", "c", "a"], [1, 2, 3, 4, 5]) == [[1, 3], [2, 5], [4]]
    with pytest.raises(ValueError):
        group_by_task(["a"], [1, 2])


def test_validation_metrics_and_the_three_selection_keys_on_cpu():
    def ex(task, passed, targets, weights=None):
        return dataclasses.replace(example([1], [2] * len(targets), [(i, i + 1) for i in
                                                                   range(len(targets))],
                                           targets, task, passed), weights=weights)
    examples = [ex("a", True, [1.0, 1.0]), ex("a", False, [1.0, -1.0], [1.0, 3.0]),
                ex("b", False, [0.0, -1.0])]
    scores = [[0.5, 0.9], [0.7, 0.1], [0.3, 0.2]]
    m = validation_metrics(examples, scores)
    se = 0.25 + 0.01 + 0.09 + 3 * 1.21 + 0.09 + 1.44
    assert m["loss"] == pytest.approx(se / 8)           # weights 1 + 1 + (1 + 3) + 1 + 1
    assert m["auc"] == pytest.approx(roc_auc([0.5, 0.9, 0.7, 0.1, 0.2],
                                             [True, True, True, False, False]))
    assert m["within_task"] == 1.0                   # task a: 0.5 (pass) > 0.1 (fail)
    no_task = [dataclasses.replace(e, task=None) for e in examples]
    assert math.isnan(validation_metrics(no_task, scores)["within_task"])
    # each mode ranks by its own metric first and by the validation MSE after it
    better_loss = {"loss": 0.1, "auc": 0.6, "within_task": 0.4}
    better_auc = {"loss": 0.3, "auc": 0.9, "within_task": 0.5}
    better_within = {"loss": 0.5, "auc": 0.7, "within_task": 0.8}
    for mode, winner in (("loss", better_loss), ("auc", better_auc),
                         ("within_task", better_within)):
        assert max((better_loss, better_auc, better_within),
                   key=lambda x: selection_key(x, mode)) is winner
    undefined = {"loss": 0.2, "auc": math.nan, "within_task": math.nan}
    worse_undefined = {"loss": 0.4, "auc": math.nan, "within_task": math.nan}
    for mode in ("auc", "within_task"):       # an undefined metric ranks below any defined one
        assert selection_key(undefined, mode) < selection_key(better_within, mode)
        assert selection_key(undefined, mode) > selection_key(worse_undefined, mode)


def test_within_task_early_stop_needs_a_selection_with_passing_responses_on_cpu():
    from prmfast.config import ConfigError
    from prmfast.prm.stage import check_prm_config

    for selection in ("full", "passed_and_revised"):
        check_prm_config(load_config("smoke", sets=[f"prm.selection={selection}",
                                                    "prm.early_stop=within_task"]))
    for selection in ("revised_only", "failed_only"):
        with pytest.raises(ConfigError, match="keeps no passing"):
            check_prm_config(load_config("smoke", sets=[f"prm.selection={selection}",
                                                        "prm.early_stop=within_task"]))


def test_prm_layer_needs_a_frozen_backbone_on_cpu(tmp_path):
    from prmfast.config import ConfigError
    from prmfast.prm.stage import check_prm_config

    with pytest.raises(ConfigError, match="prm.layer"):
        check_prm_config(load_config("smoke", sets=["prm.layer=2"]))
    (tmp_path / "backbone").mkdir()
    with pytest.raises(ConfigError, match="prm.layer"):
        check_prm_config(load_config("smoke", sets=[f"prm.pretrained={tmp_path / 'backbone'}",
                                                    "prm.layer=0"]))
    check_prm_config(load_config("smoke", sets=[f"prm.pretrained={tmp_path / 'backbone'}",
                                                "prm.layer=2"]))


def test_both_prm_kinds_score_through_one_interface_on_cpu(tiny, tmp_path):
    """A ValuePRM's packed RL scores equal its predict at the line ends (0 elsewhere, the
    shared prompt packed once) and load_prm gives the same PRM back from its folder."""
    from prmfast.lines import segment
    from prmfast.models import encode
    from prmfast.prm import ValuePRM, load_prm
    from prmfast.rl.experience import PackedBatch

    tok, prm, texts = tiny
    torch.manual_seed(1)
    torch.nn.init.normal_(prm.head.weight, std=0.5)
    prompt = encode(tok, texts[2])
    responses = [encode(tok, texts[random.randrange(2)])[:random.randint(1, 30)]
                 for _ in range(4)] + [[]]
    batch = PackedBatch.from_sequences([prompt + r for r in responses], [len(prompt)] * 5,
                                       tok.pad_token_id)
    ends = [{b - 1 for _, b in segment(r, tok).spans} for r in responses]
    line_end = torch.tensor([i in e for r, e in zip(responses, ends) for i in range(len(r))],
                            dtype=torch.bool)
    with torch.no_grad():
        packed = prm.packed_line_scores(batch, line_end)
    assert packed.shape == line_end.shape and (packed[~line_end] == 0).all()
    scored = [example(prompt, r, spans, [0.0] * len(spans)) for r in responses if r
              for spans in [segment(r, tok).spans]]
    expected = [v for row in prm.predict(scored) for v in row]
    assert packed[line_end].tolist() == pytest.approx(expected, abs=1e-5)
    prm.save_pretrained(tmp_path / "prm", tok)
    again = load_prm(tmp_path / "prm")
    assert isinstance(again, ValuePRM) and again.pad_id == tok.pad_token_id
    assert ([v for row in again.predict(scored) for v in row]
            == pytest.approx(expected, abs=1e-5))
