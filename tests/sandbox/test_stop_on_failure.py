"""Job.stop_on_failure: the verdict (passed, first_failure) of a full run, the cases after the
first failing one NOT_RUN, and a program failing early does not pay for its later cases. Real
programs in the real sandbox; the reference is the same job run with every case."""
import random
import time

import pytest

from prmfast.sandbox import AssertTests, CallTests, Job, Sandbox, StdioTests
from prmfast.sandbox.specs import NOT_RUN, STATUSES

# How a case of a random program goes wrong: per kind of failure, the body of f on a bad input.
FAILURES = {
    "wrong": "return x + 1",
    "raise": "raise ValueError(x)",
    "type": "return str(x)",
    "exit": "raise SystemExit(3)",        # the child is gone: a full run stops there too
    "loop": "while True: pass",           # a case timeout (kept rare: it costs case_timeout_s)
}


def random_program(rng: random.Random, n_cases: int) -> tuple[str, list[int]]:
    """f(x) returns x except on a few random inputs, where it fails in a random way; the
    inputs of the cases (shuffled, so the first failure is anywhere or nowhere)."""
    inputs = rng.sample(range(1000), n_cases)
    bad = rng.sample(inputs, min(n_cases, rng.choice([0, 1, 1, 2, 3, n_cases // 2])))
    kinds = rng.choices(list(FAILURES), weights=[5, 4, 3, 1, 1], k=len(bad))
    lines = ["def f(x):"]
    for x, kind in zip(bad, kinds):
        lines += [f"    if x == {x}:", f"        {FAILURES[kind]}"]
    return "\n".join(lines + ["    return x", ""]), inputs


def specs(program: str, inputs: list[int]):
    """The same checks as the three test kinds: (program, tests)."""
    yield program, CallTests("f", [([x], x) for x in inputs])
    yield program, AssertTests("\n".join(f"assert f({x}) == {x}" for x in inputs))
    yield (program + "print(f(int(input())))\n",
           StdioTests([(f"{x}\n", f"{x}\n") for x in inputs]))


@pytest.fixture(scope="module")
def sb():
    with Sandbox(workers=2, timeout_s=20.0, case_timeout_s=0.5, memory_mb=512) as sb:
        yield sb


def check_against_full(full, early, label):
    assert early.passed == full.passed, label
    assert early.first_failure == full.first_failure, label
    assert len(early.tests) == len(full.tests) == len(early.statuses), label
    if full.passed:
        assert early.statuses == full.statuses == ["passed"] * len(full.tests), label
        assert early.tests == full.tests, label
        return
    k = full.first_failure
    assert early.statuses[:k + 1] == full.statuses[:k + 1], label
    assert early.tests[:k + 1] == full.tests[:k + 1], label
    assert early.status == full.statuses[k] and early.status in STATUSES, label
    assert early.statuses[k + 1:] == [NOT_RUN] * (len(full.tests) - k - 1), label
    assert not any(early.tests[k + 1:]), label


def test_random_programs_give_a_full_runs_verdict(sb):
    rng = random.Random()
    seed = rng.randrange(1 << 30)
    rng.seed(seed)
    pairs = [pair for _ in range(12) for pair in specs(*random_program(rng, rng.randint(1, 12)))]
    pairs += specs("def f(x):\n    return x + (x == 2)\n", [0, 1, 2, 3, 4])  # fails at case 2
    full = sb.run([Job(p, t) for p, t in pairs])
    early = sb.run([Job(p, t, stop_on_failure=True) for p, t in pairs])
    assert [r.first_failure for r in full[-3:]] == [2, 2, 2]
    for i, (f, e) in enumerate(zip(full, early)):
        check_against_full(f, e, f"seed {seed}, job {i}: {pairs[i][0]!r}")
    # a full run reports every case it ran, and NOT_RUN only where the job ended before a case
    for f in full:
        assert all(s in STATUSES for s in f.statuses if s != NOT_RUN)


def test_failing_first_case_does_not_run_the_slow_rest(sb):
    """Case 0 fails; the 16 cases after it take 0.25 s each: the full run pays ~4 s per job, a
    stop-on-failure run pays for case 0 only."""
    program = "import time\ndef f(x):\n    time.sleep(0.25)\n    return x + (x == 0)\n"
    inputs = list(range(16))
    pairs = list(specs(program, inputs))
    start = time.monotonic()
    full = sb.run([Job(p, t) for p, t in pairs])
    full_s = time.monotonic() - start
    start = time.monotonic()
    early = sb.run([Job(p, t, stop_on_failure=True) for p, t in pairs])
    early_s = time.monotonic() - start
    for f, e in zip(full, early):
        check_against_full(f, e, "slow")
        assert f.first_failure == 0 and f.statuses[1:] == ["passed"] * 15
    assert full_s > 5.0, full_s       # 3 jobs x 16 x 0.25 s on 2 workers
    assert early_s < 2.5, early_s     # 3 jobs x one 0.25 s case, plus the sandbox's own time
    assert max(r.wall_s for r in early) < 1.5


def test_passing_program_runs_every_case(sb):
    program = "def f(x):\n    return x\n"
    for p, t in specs(program, list(range(7))):
        r = sb.run([Job(p, t, stop_on_failure=True)])[0]
        assert r.passed and r.first_failure is None and r.statuses == ["passed"] * 7


@pytest.mark.parametrize("value", [1, 0, "yes", None, 1.0])
def test_bad_stop_on_failure_is_rejected(value):
    with pytest.raises(TypeError, match="Job.stop_on_failure must be True or False"):
        Job("def f(x):\n    return x\n", CallTests("f", [([1], 1)]), stop_on_failure=value)


def test_bad_stop_on_failure_set_later_is_rejected_by_run(sb):
    job = Job("def f(x):\n    return x\n", CallTests("f", [([1], 1)]))
    job.stop_on_failure = "true"
    with pytest.raises(TypeError, match=r"jobs\[0\]: Job.stop_on_failure"):
        sb.run([job])
