"""Caller mistakes fail up front with an error naming the argument (never a silently switched
off limit or "the judge died"), and the comparison rules hold inside sets and dict keys."""
import math

import pytest

from prmfast.sandbox import AssertTests, CallTests, Job, Sandbox, StdioTests
from prmfast.sandbox.compare import normalize_stdout, strict_equal
from prmfast.sandbox.specs import MAX_TIMEOUT_S

GOOD = Job("def f(x):\n    return x\n", CallTests("f", [([1], 1)]))


def assert_unharmed(sb):
    assert sb.run([GOOD])[0].passed


@pytest.mark.parametrize("kw, name", [
    ({"memory_mb": 0}, "memory_mb"), ({"memory_mb": -1}, "memory_mb"),
    ({"processes": 0}, "processes"), ({"file_size_mb": 0}, "file_size_mb"),
    ({"open_files": 0}, "open_files"), ({"output_bytes": -5}, "output_bytes"),
    ({"disk_mb": 0}, "disk_mb"), ({"judge_jobs": 0}, "judge_jobs"),
    ({"uid_base": 0}, "uid_base"),  # slot 0 would run as root
    ({"memory_mb": 0.5}, "memory_mb"), ({"memory_mb": 1 << 60}, "memory_mb"),
])
def test_sandbox_limits_off_or_overflowing_are_rejected(kw, name):
    with pytest.raises(ValueError, match=name):
        Sandbox(workers=1, **kw)


@pytest.mark.parametrize("kw, name", [
    ({"memory_mb": 0}, "Job.memory_mb"), ({"memory_mb": -1}, "Job.memory_mb"),
    ({"timeout_s": 0}, "Job.timeout_s"), ({"timeout_s": -1.0}, "Job.timeout_s"),
    ({"timeout_s": math.nan}, "Job.timeout_s"), ({"timeout_s": math.inf}, "Job.timeout_s"),
    ({"timeout_s": 1e30}, "Job.timeout_s"), ({"timeout_s": 10 ** 400}, "Job.timeout_s"),
])
def test_job_limits_are_checked(kw, name):
    with pytest.raises(ValueError, match=name):
        Job("print(1)", StdioTests([("", "1")]), **kw)


def test_changed_job_fails_the_batch_before_anything_runs():
    with Sandbox(workers=1, timeout_s=5.0) as sb:
        bad = Job("print(1)", StdioTests([("", "1")]))
        bad.memory_mb = 0  # a Job can change after it was built: run() checks it again
        with pytest.raises(ValueError, match=r"jobs\[1\]: Job.memory_mb"):
            sb.run([GOOD, bad])
        assert sb.server_pid == -1  # nothing was started
        bad.memory_mb, bad.timeout_s = 512, MAX_TIMEOUT_S  # the largest budget is accepted
        assert [r.passed for r in sb.run([GOOD, bad])] == [True, True]


@pytest.mark.parametrize("kw, error, name", [
    ({"workers": 0}, ValueError, "workers"), ({"workers": -2}, ValueError, "workers"),
    ({"workers": "2"}, TypeError, "workers"),
    ({"case_timeout_s": 0}, ValueError, "case_timeout_s"),
    ({"case_timeout_s": -1}, ValueError, "case_timeout_s"),
    ({"timeout_s": math.nan}, ValueError, "timeout_s"),
    ({"timeout_s": math.inf}, ValueError, "timeout_s"),
    ({"timeout_s": 0}, ValueError, "timeout_s"),
    ({"timeout_s": 2 * MAX_TIMEOUT_S}, ValueError, "timeout_s"),
])
def test_sandbox_arguments(kw, error, name):
    with pytest.raises(error, match=name):
        Sandbox(**kw)


def test_none_keeps_its_default_meaning():
    with Sandbox(workers=None, timeout_s=3.0, case_timeout_s=None) as sb:
        assert sb.workers >= 1 and sb.case_timeout_s == 3.0


@pytest.mark.parametrize("make, error, match", [
    (lambda: Job(None, AssertTests("assert True")), TypeError, "Job.program"),
    (lambda: Job("x = 1", None), TypeError, "Job.tests"),
    (lambda: AssertTests(None), TypeError, "AssertTests.code"),
    (lambda: AssertTests("assert True", entry_point=123), TypeError, "AssertTests.entry_point"),
    (lambda: AssertTests("assert True", entry_point="f); print(1"), ValueError,
     "AssertTests.entry_point"),
    (lambda: AssertTests("x = '\ud800'"), ValueError, "AssertTests.code"),
    (lambda: StdioTests([(None, "1")]), TypeError, r"StdioTests.cases\[0\] stdin"),
    (lambda: StdioTests([("", 1)]), TypeError, r"StdioTests.cases\[0\] stdout"),
    (lambda: StdioTests([("\ud800\n", "x")]), ValueError, r"StdioTests.cases\[0\] stdin.*UTF-8"),
    (lambda: StdioTests("ab"), TypeError, "StdioTests.cases"),
    (lambda: CallTests("f", [1, 2]), TypeError, r"CallTests.cases\[0\]"),
    (lambda: CallTests("f", [([1], 1), ([1],)]), TypeError, r"CallTests.cases\[1\]"),
    (lambda: CallTests("f", [(1, 1)]), TypeError, r"CallTests.cases\[0\] args"),
    (lambda: CallTests(None, [([1], 1)]), TypeError, "CallTests.entry_point"),
    (lambda: CallTests("f", [([1], 1)], atol=math.nan), ValueError, "CallTests.atol"),
])
def test_spec_type_errors_are_caught_when_built(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_bad_values_fail_the_batch_naming_the_job(sandbox):
    unencodable = Job("def f(x):\n    return x\n", CallTests("f", [([1], 1), ([1], object())]))
    with pytest.raises(TypeError, match=r"jobs\[1\]: CallTests.cases\[1\] expected"):
        sandbox.run([GOOD, unencodable])
    changed = Job("print(1)", StdioTests([("", "1")]))
    changed.tests.cases.append(("\ud800", "1"))  # the list inside a frozen spec can change
    with pytest.raises(ValueError, match=r"jobs\[0\]: StdioTests.cases\[1\] stdin"):
        sandbox.run([changed, GOOD])
    with pytest.raises(TypeError, match=r"jobs\[0\]: a job must be a Job"):
        sandbox.run([("print(1)", StdioTests([("", "1")]))])
    assert_unharmed(sandbox)
    # The program is the untrusted side's: one that is not UTF-8 is a per-job error.
    surrogate = Job("x = '\ud800'\ndef f(x):\n    return x\n", CallTests("f", [([1], 1)]))
    r = sandbox.run([surrogate, GOOD])
    assert r[0].status == "error" and r[1].passed


SET_AND_KEY_CASES = [  # (expected, got, equal)
    ({1: 1}, {True: 1}, False), ({1}, {True}, False), ({1}, {1.0}, False),
    (frozenset({1}), frozenset({True}), False), ({(1, 2)}, {(True, 2)}, False),
    ({frozenset({(1,)})}, {frozenset({(1.0,)})}, False), ({(1, 2): "a"}, {(1.0, 2): "a"}, False),
    ({1: 1}, {1: True}, False), ({1: 1, 2: 2}, {2: 2, 1: 1}, True),
    ({1, (2, "x")}, {(2, "x"), 1}, True),
    ({True: [1.0]}, {True: [1.0]}, True), ({math.nan}, {math.nan}, True), (set(), set(), True),
]


@pytest.mark.parametrize("expected, got, equal", SET_AND_KEY_CASES)
def test_strict_equal_inside_sets_and_dict_keys(expected, got, equal):
    assert strict_equal(got, expected) is equal


def test_strict_equal_atol_applies_to_dict_values_not_set_elements():
    assert strict_equal({1: 1.0}, {1: 1.05}, atol=0.1)
    assert not strict_equal({1.0}, {1.05}, atol=0.1)


def test_sets_and_dict_keys_end_to_end(sandbox):
    cases = [c for c in SET_AND_KEY_CASES if math.nan not in c[1]]  # repr(nan) is not source
    jobs = [Job(f"def f():\n    return {got!r}\n", CallTests("f", [([], expected)]))
            for expected, got, _ in cases]
    want = [equal for *_, equal in cases]
    assert [r.passed for r in sandbox.run(jobs)] == want


@pytest.mark.parametrize("sep", ["\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029",
                                 "\r"])
def test_normalize_stdout_splits_lines_at_newline_only(sep):
    assert normalize_stdout(f"a{sep}b") != normalize_stdout("a\nb")


def test_normalize_stdout_keeps_its_rules():
    assert normalize_stdout("a  \r\nb\t\n\n  \n") == "a\nb"
    assert normalize_stdout("\na\n") == "\na"
    assert normalize_stdout("") == normalize_stdout("\n\n") == ""


def test_stdout_separators_end_to_end(sandbox):
    jobs = [Job("print('a\\x0cb')", StdioTests([("", "a\nb")])),
            Job("print('a\\u2028b')", StdioTests([("", "a\nb")])),
            Job("import sys\nsys.stdout.write('a \\r\\nb\\r\\n\\r\\n')",
                StdioTests([("", "a\nb")]))]
    assert [r.passed for r in sandbox.run(jobs)] == [False, False, True]
