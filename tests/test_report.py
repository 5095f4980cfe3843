"""The run report's PRM section, from hand-made DIR/prm/eval.json contents."""
from prmfast.report import prm_section


def test_prm_section_reads_eval_json_and_tolerates_missing_figures_on_cpu():
    ev = {"selection": "full", "train_responses": 40,
          "held_out": {"oracle": {"lines": {"auc": 0.91}, "first_error": {"accuracy": 0.5}},
                       "binary_search": {"lines": {"auc": 0.8}},
                       "within_task": {"min": {"auc": None, "pairs": 0}}},
          "test": {"oracle": {"lines": {"auc": 0.75}, "first_error": {"accuracy": 0.25}},
                   "within_task": {"min": {"auc": 0.7272, "pairs": 902}},
                   "rerank": {"problems": 200, "n": 8, "prm_min": 0.241, "prm_last": 0.215,
                              "random": 0.189, "random_distinct": 0.159, "majority": 0.23,
                              "oracle": 0.465},
                   "rerank_ci95": {"prm_min-random": [0.007, 0.094]}}}
    text = "\n".join(prm_section(ev))
    assert "| line AUC vs oracle | 0.910 | 0.750 |" in text
    assert "| within-task AUC | - (0 pairs) | 0.727 (902 pairs) |" in text
    assert "Best-of-8 reranking on 200 test tasks" in text and "[0.007, 0.094]" in text
    # an eval.json written before the within-task AUC existed, and one without test samples
    old = {k: v for k, v in ev.items() if k != "test"}
    old["held_out"] = {k: v for k, v in ev["held_out"].items() if k != "within_task"}
    text = "\n".join(prm_section(old))
    assert "| within-task AUC | - | - |" in text and "Best-of" not in text
