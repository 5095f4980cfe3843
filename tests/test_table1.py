"""prmfast.table1 on hand-computed cases: per-task rows, paired comparisons, claims."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from prmfast.table1 import (check_rows, claims, compare, oracle_share, outcome_bucket,
                            outcome_shift, pass_at_1, per_task_rows, table)

HORIZONS = {"t0": 2, "t1": 6, "t2": 7, "t3": 3}


def rows_for(correct: dict[tuple[int, str], list[int]], n: int = 10) -> list[dict]:
    """Rows of (seed, variant) -> correct counts of t0..t3 out of n."""
    return [{"seed": s, "variant": v, "task_id": t, "horizon": HORIZONS[t], "n": n, "c": c}
            for (s, v), cs in correct.items() for t, c in zip(HORIZONS, cs)]


def test_per_task_rows_from_an_evaluation():
    raw = {"tasks": [{"task_id": "a", "horizon": 3, "passed": [True, False, True]},
                     {"task_id": "b", "horizon": None, "passed": [False, False]}]}
    assert per_task_rows(1, "sft", raw) == [
        {"seed": 1, "variant": "sft", "task_id": "a", "horizon": 3, "n": 3, "c": 2},
        {"seed": 1, "variant": "sft", "task_id": "b", "horizon": None, "n": 2, "c": 0}]
    with pytest.raises(ValueError, match="delete it"):
        per_task_rows(0, "sft", {"pass@1": 0.5})


@pytest.mark.parametrize("bad, match", [
    ({"c": 11}, "0 <= c <= n"), ({"n": 0, "c": 0}, "n > 0"), ({"c": 1.0}, "integers"),
    ({"horizon": "6"}, "horizon"), ({"extra": 1}, "keys")])
def test_check_rows_refuses_bad_rows(bad, match):
    row = {"seed": 0, "variant": "sft", "task_id": "t0", "horizon": 2, "n": 10, "c": 3}
    with pytest.raises(ValueError, match=match):
        check_rows([{**row, **bad}])
    with pytest.raises(ValueError, match="twice"):
        check_rows([row, dict(row)])


def test_paired_comparison_per_seed_pooled_and_long():
    rows = rows_for({(0, "sft"): [2, 1, 0, 5], (0, "both"): [4, 2, 1, 5],
                     (1, "sft"): [2, 1, 1, 5], (1, "both"): [2, 4, 1, 5]})
    c = compare(rows, "both", "sft", "all", n_boot=2000)
    # seed 0 diffs 0.2, 0.1, 0.1, 0; seed 1: 0, 0.3, 0, 0
    assert c["per_seed"][0]["mean"] == pytest.approx(0.1)
    assert c["per_seed"][1]["mean"] == pytest.approx(0.075)
    assert c["per_seed"][0]["n"] == 4 and c["seeds"] == [0, 1]
    # pooled: per task the mean over seeds: 0.1, 0.2, 0.05, 0 -> 0.0875
    assert c["pooled"]["mean"] == pytest.approx(0.0875)
    assert c["pooled"]["low"] <= 0.0875 <= c["pooled"]["high"]
    long = compare(rows, "both", "sft", "long", n_boot=2000)   # t1 and t2 (horizons 6, 7)
    assert long["per_seed"][0]["mean"] == pytest.approx(0.1)
    assert long["per_seed"][1]["mean"] == pytest.approx(0.15)
    assert long["pooled"]["n"] == 2
    assert compare(rows, "both", "oracle") is None


def test_only_tasks_both_variants_have_are_compared():
    rows = rows_for({(0, "sft"): [2, 1, 0, 5], (0, "both"): [4, 2, 1, 5]})
    rows = [r for r in rows if not (r["variant"] == "both" and r["task_id"] == "t3")]
    c = compare(rows, "both", "sft")
    assert c["per_seed"][0]["n"] == 3
    assert c["per_seed"][0]["mean"] == pytest.approx((0.2 + 0.1 + 0.1) / 3)


def test_pass_at_1_weighs_tasks_equally():
    rows = rows_for({(0, "sft"): [2, 1, 0, 5]})
    rows[0]["n"], rows[0]["c"] = 20, 4      # t0 with 20 samples: still its rate 0.2
    p = pass_at_1(rows)["sft"]
    assert p["per_seed"][0] == pytest.approx((0.2 + 0.1 + 0.0 + 0.5) / 4)
    assert p["long"][0] == pytest.approx(0.05)


def test_outcome_buckets_of_a_count():
    assert [outcome_bucket(c, 10) for c in (0, 1, 4, 5, 9, 10)] == [
        "none", "under half", "under half", "half or more", "half or more", "all"]
    assert [outcome_bucket(c, 3) for c in (0, 1, 2, 3)] == ["none", "under half", "half or more",
                                                             "all"]


def test_outcome_shift_buckets_by_the_first_evaluation_of_the_base():
    # first run: SFT's counts of t0..t3 per seed; second run: SFT again and sparse
    first = rows_for({(0, "sft"): [0, 3, 7, 10], (1, "sft"): [0, 0, 10, 2],
                      (0, "sparse"): [10, 10, 10, 10]})       # not the base: ignored
    second = rows_for({(0, "sft"): [1, 3, 7, 10], (0, "sparse"): [0, 10, 0, 10],
                       (1, "sparse"): [10, 0, 10, 0]})
    shift = outcome_shift(first, second, "sparse")
    # none: (0,t0) 0->0, (1,t0) 0->10, (1,t1) 0->0
    assert shift["none"] == {"pairs": 3, "change": pytest.approx(1 / 3), "to_none": 2, "to_all": 1}
    # under half: (0,t1) 0.3->1.0, (1,t3) 0.2->0.0
    assert shift["under half"] == {"pairs": 2, "change": pytest.approx((0.7 - 0.2) / 2),
                                   "to_none": 1, "to_all": 1}
    assert shift["half or more"] == {"pairs": 1, "change": pytest.approx(-0.7), "to_none": 1,
                                     "to_all": 0}
    # all: (0,t3) 1.0->1.0, (1,t2) 1.0->1.0
    assert shift["all"] == {"pairs": 2, "change": pytest.approx(0.0), "to_none": 0, "to_all": 2}
    again = outcome_shift(first, second, "sft")           # seed 1 has no second SFT evaluation
    assert again["none"] == {"pairs": 1, "change": pytest.approx(0.1), "to_none": 0, "to_all": 0}
    assert again["under half"]["pairs"] == 1 and again["under half"]["change"] == 0
    assert outcome_shift(first, second, "oracle")["all"] == {
        "pairs": 0, "change": None, "to_none": 0, "to_all": 0}
    with pytest.raises(ValueError, match="0 <= c <= n"):
        outcome_shift(first, [{**second[0], "c": 11}], "sft")


def test_compare_tables_script(tmp_path):
    first = rows_for({(0, "sft"): [0, 3, 7, 10], (0, "sparse"): [1, 3, 7, 10]})
    second = rows_for({(0, "sft"): [1, 3, 7, 10], (0, "sparse"): [4, 3, 7, 10]})
    files = []
    for name, rows in (("first", first), ("second", second)):
        files.append(tmp_path / f"{name}.jsonl")
        files[-1].write_text("".join(json.dumps(r) + "\n" for r in rows))
    script = Path(__file__).resolve().parent.parent / "scripts" / "compare_tables.py"
    run = subprocess.run([sys.executable, str(script), *map(str, files)], capture_output=True,
                         text=True)
    assert run.returncode == 0, run.stderr
    # sparse: second - first = +0.3 on t0 (4 tasks); long tasks t1, t2 unchanged
    assert "| sparse | all | +0.075 [" in run.stdout
    assert "| sparse | long | +0.000 [" in run.stdout
    assert "| none (1) | +0.100; 0 at none, 0 at all | +0.400; 0 at none, 0 at all |" in run.stdout
    bad = subprocess.run([sys.executable, str(script), *map(str, files), "--variants", "oracle"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "oracle" in bad.stderr
    missing = subprocess.run([sys.executable, str(script), str(tmp_path / "nope.jsonl"),
                              str(files[1])], capture_output=True, text=True)
    assert missing.returncode == 2 and "cannot read" in missing.stderr
    files[0].write_text(json.dumps({**first[0], "c": 11}) + "\n")    # off the schema
    bad_row = subprocess.run([sys.executable, str(script), *map(str, files)], capture_output=True,
                             text=True)
    assert bad_row.returncode == 2 and "0 <= c <= n" in bad_row.stderr


def prm_eval(auc: float, rerank_low: float) -> dict:
    return {"test": {"within_task": {"min": {"auc": auc, "pairs": 50}},
                     "rerank_ci95": {"prm_min-majority": [rerank_low, rerank_low + 0.1]}}}


def by_claim(result: list[dict]) -> dict[str, bool | None]:
    return {c["claim"].split(".")[0]: c["holds"] for c in result}


def test_claims_hold_and_fail_as_computed_by_hand():
    # both - sft = +0.1 on every task of both seeds (interval [0.1, 0.1]); sparse - sft = +0.1;
    # oracle - sparse on long tasks: +0.05 in both seeds
    good = rows_for({(s, v): cs for s in (0, 1) for v, cs in (
        ("sft", [2, 2, 2, 2]), ("sparse", [3, 3, 3, 3]), ("both", [3, 4, 4, 3]),
        ("oracle", [3, 3.5, 3.5, 3]))}, n=10)
    for r in good:                       # 3.5 / 10 is not a count: use 20 samples for it
        if r["variant"] == "oracle" and r["horizon"] >= 6:
            r["n"], r["c"] = 20, 7
    prm = {0: prm_eval(0.75, 0.01), 1: prm_eval(0.71, 0.02)}
    t = table(good, prm, n_boot=500)
    verdict = by_claim(t["claims"])
    assert verdict["1"] is True and verdict["1b"] is True and verdict["2"] is True
    assert verdict["3"] is True and verdict["3b"] is True and verdict["4"] is True
    assert verdict["5"] is False             # 4 tasks, 2 seeds: no power
    # both - sparse on long = +0.1, oracle - sparse on long = +0.05: RL + both captures 2x
    assert t["oracle_share_long"] == pytest.approx(2.0)
    assert t["prm_within_task_auc"] == {0: 0.75, 1: 0.71}
    # seed 1 with RL + both no better than SFT: claim 1 fails there
    weak = [dict(r) for r in good]
    for r in weak:
        if r["seed"] == 1 and r["variant"] == "both":
            r["c"] = 2
    prm_bad = {0: prm_eval(0.75, 0.01), 1: prm_eval(0.65, -0.05)}
    verdict = by_claim(claims(weak, {k: v for k, v in table(weak, prm_bad, n_boot=500)
                                     ["comparisons"].items()}, prm_bad))
    assert verdict["1"] is False and verdict["3"] is False and verdict["3b"] is False


def test_claims_not_measured_without_the_variants():
    rows = rows_for({(0, "sft"): [2, 1, 0, 5], (0, "sparse"): [3, 1, 0, 5]})
    verdict = by_claim(table(rows, {}, n_boot=200)["claims"])
    assert verdict["1"] is None and verdict["2"] is None and verdict["4"] is None
    assert verdict["3"] is None and verdict["3b"] is None
    assert verdict["1b"] is False            # +0.025 mean, but one task: interval touches 0
    assert oracle_share({}) is None
