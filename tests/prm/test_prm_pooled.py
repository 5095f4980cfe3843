"""scripts/prm_pooled.py and prmfast.prm.metrics.ranking_metrics on a hand-computed case."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from prmfast.prm.metrics import ranking_metrics

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "prm_pooled.py"

# run A, task t1: the passing sample has the best score, the two identical failing ones win the
# majority vote; task t2: the failing sample's minimum (0.3) beats the passing one's (0.2).
RUN_A = [("t1", True, [1], [0.9]), ("t1", False, [2], [0.1]), ("t1", False, [2], [0.1]),
         ("t2", True, [3], [0.2, 0.5]), ("t2", False, [4], [0.3])]
# run B reuses the task id t1 for other samples: pooled, it must stay a problem of its own
RUN_B = [("t1", True, [5], [0.5]), ("t1", True, [6], [0.4])]


def rows(run):
    return [{"task_id": t, "passed": p, "response_ids": k, "scores": s} for t, p, k, s in run]


def write(path, run):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows(run)))
    return path


def test_ranking_metrics_by_hand():
    t, p, k, s = zip(*RUN_A)
    m = ranking_metrics(t, p, [tuple(x) for x in k], s)
    assert m["rerank"]["prm_min"] == pytest.approx(0.5)
    assert m["rerank"]["majority"] == pytest.approx(0.25)        # t1: 0, t2: a tie, 0.5
    assert m["rerank"]["random"] == pytest.approx((1 / 3 + 1 / 2) / 2)
    assert m["within_task"]["min"] == {"auc": pytest.approx(2 / 3), "pairs": 3}
    with pytest.raises(ValueError, match="one entry per sample"):
        ranking_metrics(t, p[:-1], k, s)


def test_script_per_run_and_pooled(tmp_path):
    a, b = write(tmp_path / "a.jsonl", RUN_A), write(tmp_path / "b.jsonl", RUN_B)
    out = tmp_path / "figures.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), str(a), str(b), "--json", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    figures = json.loads(out.read_text())
    pooled = figures["pooled"]
    assert pooled["rerank"]["problems"] == 3                       # (A, t1), (A, t2), (B, t1)
    assert pooled["rerank"]["prm_min"] == pytest.approx(2 / 3)
    assert pooled["rerank"]["majority"] == pytest.approx(0.5)
    assert pooled["within_task"]["min"]["pairs"] == 3
    assert figures[str(b)]["rerank"]["prm_min"] == pytest.approx(1.0)
    assert "| pooled | 3 | 0.667 (3) | 0.667 / 0.500 / 0.611 | +0.167 [" in proc.stdout


def test_script_refuses_bad_input(tmp_path):
    a = write(tmp_path / "a.jsonl", RUN_A)
    missing = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "none")],
                             capture_output=True, text=True)
    assert missing.returncode == 2 and "no such file" in missing.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text(a.read_text() + json.dumps({"task_id": "t3", "passed": True}) + "\n")
    proc = subprocess.run([sys.executable, str(SCRIPT), str(bad)], capture_output=True, text=True)
    assert proc.returncode == 2 and "row 6 lacks response_ids, scores" in proc.stderr
    nan = tmp_path / "nan.jsonl"
    nan.write_text(json.dumps({**rows(RUN_A)[0], "scores": [float("nan")]}) + "\n")
    proc = subprocess.run([sys.executable, str(SCRIPT), str(nan)], capture_output=True, text=True)
    assert proc.returncode == 2 and "row 1 lacks finite scores" in proc.stderr
