"""Unit-test rewards for any trainer (docs/integrations.md): responses run against their tests
in a prmfast Sandbox, with each task's tests carried as JSON text (a dataset column) that
`task_ground_truth` writes. No trainer is imported here; prmfast.integrations.verl wraps it as a
verl reward function, and TRL's GRPO reward functions can call `score_responses` directly."""
from __future__ import annotations

import atexit
import dataclasses
import json
import threading

from prmfast.config import SandboxConfig
from prmfast.data.prompts import extract_program
from prmfast.data.task import Task
from prmfast.sandbox import AssertTests, CallTests, Job, Sandbox, StdioTests
from prmfast.sandbox import codec

PASSED_KEY = "passed"      # the result key that tells whether a response passed its tests
_TESTS = {cls.__name__: cls for cls in (AssertTests, StdioTests, CallTests)}


def task_ground_truth(task: Task, style: str = "completion") -> str:
    """A prmfast Task as the JSON text score_responses reads (a dataset column: verl's
    reward_model.ground_truth, a column of a TRL dataset).
    Test values are tagged (prmfast.sandbox.codec), so tuples, sets and big ints survive.
    style: "completion" (the response continues the prompt) or "chat" (a fenced answer)."""
    tests = {f.name: getattr(task.tests, f.name) for f in dataclasses.fields(task.tests)}
    return json.dumps({"task_id": task.task_id, "prompt": task.prompt,
                       "entry_point": task.entry_point, "style": style,
                       "meta": {k: task.meta[k] for k in ("preamble", "harness") if k in task.meta},
                       "tests": {"kind": type(task.tests).__name__, "fields": codec.encode(tests)}})


def _task_of(truth) -> tuple[Task, str]:
    """ground_truth's JSON text (or the dict it holds) -> (Task, style)."""
    try:
        spec = json.loads(truth) if isinstance(truth, str) else dict(truth)
        kind = _TESTS[spec["tests"]["kind"]]
        tests = kind(**codec.decode(spec["tests"]["fields"]))
        task = Task(spec.get("task_id", ""), spec["prompt"], tests, spec.get("entry_point"),
                    None, dict(spec.get("meta", {})))
        return task, spec.get("style", "completion")
    except (ValueError, TypeError, KeyError) as e:
        raise ValueError(f"ground_truth must be what prmfast.integrations.rewards."
                         f"task_ground_truth(task) writes (JSON with prompt, tests.kind in "
                         f"{sorted(_TESTS)}, tests.fields): {type(e).__name__}: {e}") from None


_SANDBOX: dict = {}
_SANDBOX_LOCK = threading.Lock()


def _shared_sandbox() -> Sandbox:
    """One Sandbox per process (SandboxConfig's defaults), closed at exit."""
    if "sandbox" not in _SANDBOX:
        cfg = SandboxConfig()
        _SANDBOX["sandbox"] = Sandbox(cfg.workers, cfg.timeout_s, cfg.memory_mb)
        atexit.register(_SANDBOX["sandbox"].close)
    return _SANDBOX["sandbox"]


def score_responses(solutions: list[str], ground_truths: list, sandbox: Sandbox | None = None
                    ) -> list[dict]:
    """Run each response against its ground truth's tests, all in one sandbox batch.

    -> per response {"score": 1.0 if every test passed else 0.0, "passed", "frac_passed",
    "status"} (as a verl reward, the extra keys land in its non_tensor_batch, where the verl
    estimator reads PASSED_KEY)."""
    if len(solutions) != len(ground_truths):
        raise ValueError(f"solutions and ground_truths must have one length, got "
                         f"{len(solutions)} and {len(ground_truths)}")
    jobs = []
    for text, truth in zip(solutions, ground_truths):
        task, style = _task_of(truth)
        jobs.append(Job(extract_program(task, text, style), task.tests))
    with _SANDBOX_LOCK:
        results = (sandbox or _shared_sandbox()).run(jobs)
    return [{"score": float(r.passed), PASSED_KEY: bool(r.passed),
             "frac_passed": sum(r.tests) / max(len(r.tests), 1), "status": r.status}
            for r in results]
