"""`python -m prmfast.eval` (prmfast.eval.benchmarks): files, resumability and the summary, with a
tiny random model on real HumanEval problems."""
import json

import pytest

from prmfast.eval import benchmarks
from prmfast.eval.benchmarks import parse_args, summarize
from tests.conftest import needs_shared_data, save_tiny_model


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory, max_position=2048)


@needs_shared_data("humaneval/HumanEval.jsonl.gz")
def test_eval_cli_writes_and_resumes_on_cpu(tiny_model_dir, tmp_path, capsys):
    argv = ["--model", str(tiny_model_dir), "--tasks", "humaneval", "--limit", "3",
            "--samples", "2", "--max-new-tokens", "4", "--out", str(tmp_path), "--workers", "2"]
    benchmarks.main(argv)
    results = tmp_path / "humaneval" / "results.jsonl"
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert [r["task_id"] for r in rows] == ["HumanEval/0", "HumanEval/1", "HumanEval/2"]
    assert all(len(r["passed"]) == 2 and len(r["n_tokens"]) == 2 for r in rows)
    summary = json.loads((tmp_path / "humaneval" / "summary.json").read_text())
    assert summary["n_problems"] == 3 and set(summary["pass@k"]) == {"pass@1"}
    assert len(summary["best_of_k"]) == 2 and summary["prompt_style"] == "completion"
    assert "humaneval: 3 problems x 2 samples" in capsys.readouterr().out
    results.write_text(results.read_text() + '{"task_id": "HumanEval/9", "pas')  # torn line
    benchmarks.main(argv[:5] + ["4"] + argv[6:])                                  # --limit 4
    rows = [json.loads(line) for line in results.read_text().splitlines()[:3]]
    assert [r["task_id"] for r in rows] == ["HumanEval/0", "HumanEval/1", "HumanEval/2"]
    summary = json.loads((tmp_path / "humaneval" / "summary.json").read_text())
    assert summary["n_problems"] == 4


def test_summarize_on_cpu():
    rows = [{"passed": [True, False, True, True, False], "n_tokens": [50, 150, 80, 120, 20],
             "finish": ["stop"] * 5},
            {"passed": [False] * 5, "n_tokens": [10] * 5, "finish": ["length"] * 5}]
    s = summarize(rows, max_k=3, length_threshold=100)
    assert s["pass@k"]["pass@1"] == pytest.approx((0.6 + 0.0) / 2)
    assert s["pass@k"]["pass@5"] == pytest.approx(0.5)
    assert s["best_of_k"][0] == pytest.approx(0.3) and len(s["best_of_k"]) == 3
    assert s["by_length"]["long"] == {"pass@1": 0.5, "n": 2}
    assert s["stop_rate"] == 0.5


def test_unknown_benchmark_is_rejected_on_cpu():
    with pytest.raises(SystemExit):
        parse_args(["--model", "m", "--tasks", "humaneval,apps"])


@needs_shared_data("mbpp/sanitized-mbpp.json")
def test_score_gives_the_verdicts_of_full_runs_on_cpu():
    """score() stops each job at its first failing case (Job.stop_on_failure): its verdicts
    equal those of jobs that run every case, on references and random one-operator mutants."""
    import random

    from prmfast.data import build_program, load_tasks
    from prmfast.rollout.base import Sample
    from prmfast.sandbox import Job, Sandbox

    rng = random.Random()
    seed = rng.randrange(1 << 30)
    rng.seed(seed)
    tasks = rng.sample([t for t in load_tasks("mbpp")
                        if t.reference and not t.meta.get("known_failure")], 8)
    swaps = [("+", "-"), ("<", ">"), ("==", "!="), (" 1", " 2"), ("[0]", "[-1]"), ("and", "or")]

    def mutant(text):
        found = [(a, b) for a, b in swaps if a in text]
        if not found:
            return text + "\n    return None\n"
        a, b = rng.choice(found)
        i = rng.choice([k for k in range(len(text)) if text.startswith(a, k)])
        return text[:i] + b + text[i + len(a):]

    groups = [(t, [Sample([], [1], [0.0], "stop", text)
                   for text in (t.reference, mutant(t.reference), mutant(t.reference))])
              for t in tasks]
    with Sandbox(workers=2, timeout_s=10.0) as sb:
        rows = benchmarks.score(groups, sb, "completion")
        full = sb.run([Job(build_program(t, s.text), t.tests) for t, group in groups
                       for s in group])
    assert [ok for r in rows for ok in r["passed"]] == [r.passed for r in full], seed
    assert all(r["passed"][0] for r in rows), seed  # the references
