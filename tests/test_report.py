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


def test_comparison_section_pairs_the_models_per_task(tmp_path):
    import json

    from prmfast.report import comparison_section

    def write(name, passed_per_task, horizons):
        raw = {"tasks": [{"task_id": f"t{i}", "horizon": h, "passed": p}
                         for i, (p, h) in enumerate(zip(passed_per_task, horizons))]}
        (tmp_path / f"{name}.json").write_text(json.dumps({"pass@1": 0.0, "raw": raw}))

    horizons = [2, 3, 6, 7] * 10
    write("sft", [[True, False]] * 40, horizons)
    write("rl_baseline", [[True, True]] * 40, horizons)        # +0.5 on every task
    write("rl_prm", [[False, False]] * 40, horizons)           # -0.5 on every task
    text = "\n".join(comparison_section(tmp_path))
    assert "| rl_baseline - sft | all (40) | +0.500 | [+0.500, +0.500] | A better |" in text
    assert "| rl_prm - sft | all (40) | -0.500 | [-0.500, -0.500] | A worse |" in text
    assert "| rl_prm - rl_baseline | long (6+ steps) (20) | -1.000 |" in text
    write("rl_prm", [[True, False], [True, True], [False, False], [True, False]] * 10, horizons)
    assert "| rl_prm - sft | all (40) | +0.000 |" in "\n".join(comparison_section(tmp_path))
    assert "no difference shown" in "\n".join(comparison_section(tmp_path))
    assert comparison_section(tmp_path / "missing") == []
