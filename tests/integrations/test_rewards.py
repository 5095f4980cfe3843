"""prmfast.integrations.rewards (no trainer needed): real programs in the real sandbox through
score_responses (pass, wrong answer, crash, timeout, syntax error, chat answers), prmfast's
dataset tasks through task_ground_truth and back, clear errors."""
import pytest

from prmfast.data import load_tasks
from prmfast.data.task import Task
from prmfast.integrations import rewards
from prmfast.sandbox import AssertTests, CallTests, Sandbox, StdioTests
from tests.conftest import needs_shared_data


def tasks():
    call = Task("add", "def add(a, b):\n", CallTests("add", [([1, 2], 3), ([2, 2], (4,))]),
                "add", None)
    asserts = Task("sq", "def sq(x):\n", AssertTests("assert sq(2) == 4\nassert sq(3) == 9\n"),
                   "sq", None)
    stdio = Task("echo", "", StdioTests([("3\n", "6\n")]), None, None)
    return call, asserts, stdio


def test_reward_function_runs_programs_in_the_sandbox():
    call, asserts, stdio = tasks()
    cases = [  # (task, style, response, expected status, expected frac_passed)
        (call, "completion", "    return a + b if a != 2 else (4,)\n", "passed", 1.0),
        (call, "completion", "    return a + b\n", "failed", 0.5),
        (asserts, "completion", "    return x * x\n", "passed", 1.0),
        (asserts, "completion", "    return x * x if x == 2 else 0\n", "failed", 0.5),
        (asserts, "completion", "    import os\n    os.abort()\n", "crashed", 0.0),
        (asserts, "completion", "    while True:\n        pass\n", "timeout", 0.0),
        (asserts, "completion", "    return x *\n", "error", 0.0),
        (stdio, "chat", "Here:\n```python\nprint(int(input()) * 2)\n```\n", "passed", 1.0),
        (stdio, "chat", "```python\nprint(int(input()) + 2)\n```", "failed", 0.0),
    ]
    truths = [rewards.task_ground_truth(task, style) for task, style, *_ in cases]
    with Sandbox(workers=2, timeout_s=1.0, memory_mb=512) as sb:
        got = rewards.score_responses([c[2] for c in cases], truths, sandbox=sb)
    for (task, style, text, status, frac), result in zip(cases, got):
        assert result["status"] == status, (task.task_id, text, result)
        assert result["passed"] is (status == "passed")
        assert result["score"] == float(status == "passed")
        assert result["frac_passed"] == pytest.approx(frac)
    # the process-wide sandbox (SandboxConfig's defaults) when none is given
    assert rewards.score_responses(["    return x * x\n"], [truths[2]]) == [
        {"score": 1.0, rewards.PASSED_KEY: True, "frac_passed": 1.0, "status": "passed"}]


def test_ground_truth_round_trip_and_errors():
    call, _, _ = tasks()
    task, style = rewards._task_of(rewards.task_ground_truth(call, "chat"))
    assert style == "chat" and task.tests == call.tests and task.prompt == call.prompt
    assert task.tests.cases[1][1] == (4,) and isinstance(task.tests.cases[1][1], tuple)
    with pytest.raises(ValueError, match="ground_truth must be what .*task_ground_truth"):
        rewards.score_responses(["pass"], ['{"prompt": "", "tests": {"kind": "No", "fields": []}}'])
    with pytest.raises(ValueError, match="solutions and ground_truths must have one length"):
        rewards.score_responses(["a"], [])


@pytest.mark.filterwarnings("ignore:livecodebench. skipped")
@pytest.mark.parametrize("name", [
    pytest.param(name, marks=needs_shared_data(folder)) for name, folder in
    [("humanevalplus", "evalplus"), ("mbppplus", "evalplus"), ("livecodebench", "livecodebench"),
     ("mbpp", "mbpp")]])
def test_dataset_tasks_survive_the_ground_truth(name):
    """Every task of prmfast's datasets comes back from its ground truth with equal tests,
    prompt and harness; the first 40 references pass through score_responses."""
    tasks = load_tasks(name, "test")
    for task in tasks:
        back, style = rewards._task_of(rewards.task_ground_truth(task))
        assert (back.tests, back.prompt, back.meta, style) == (
            task.tests, task.prompt,
            {k: task.meta[k] for k in ("preamble", "harness") if k in task.meta},
            "completion"), task.task_id
    sample = [t for t in tasks if t.reference is not None][:40]
    with Sandbox(workers=2) as sb:
        got = rewards.score_responses([t.reference for t in sample],
                                 [rewards.task_ground_truth(t) for t in sample], sandbox=sb)
    assert [(t.task_id, g["status"]) for t, g in zip(sample, got) if not g["passed"]] == []
