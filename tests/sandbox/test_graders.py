"""Graders (prmfast.sandbox.compare): EvalPlus's and LiveCodeBench's comparisons next to the
strict one, checked against the real evalplus package and numpy, and through the sandbox."""
from __future__ import annotations

import base64
import math
import pickle
import random

import numpy as np
import pytest

from prmfast.sandbox import CallTests, Job, StdioTests
from prmfast.sandbox.compare import (allclose, evalplus_equal, lcb_stdout_equal, stdout_matches,
                                     values_match)

BIG = 10**6
# (got, expected, atol, EvalPlus passes): plain values against EvalPlus 0.3.1's rules.
EVALPLUS_CASES = [
    (0, False, 0.0, True), (1, True, 0.0, True), (21.0, 21, 0.0, True),   # Python's ==
    ([1, 2], [1.0, 2.0], 0.0, True), ({1: 2.0}, {True: 2}, 0.0, True),
    ({1, 2}, {2.0, 1}, 0.0, True),
    ((1, 2), [1, 2], 0.0, False), ("a", "b", 0.0, False), (None, 0, 0.0, False),
    (BIG * (1 + 1e-9), float(BIG), 0.0, True),          # rtol 1e-7
    (BIG * (1 + 1e-6), float(BIG), 0.0, False),
    (0.5 + 5e-7, 0.5, 0.0, True), (0.5 + 2e-6, 0.5, 0.0, False),   # atol 1e-6 for floats
    (50.0 + 2e-6, 50.0, 0.0, True),                     # 2e-6 <= 1e-6 + 1e-7 * 50
    ([0.5 + 5e-7, 3.0], [0.5, 3.0], 0.0, True),          # a list of floats
    ([0.5 + 5e-7, 3], [0.5, 3], 0.0, False),             # not all floats: no tolerance
    ((0.5 + 5e-7,), [0.5], 0.0, False),                  # types differ
    ([0.5, 1.0, 2.0], [0.5, 1.0], 0.0, False),           # lengths differ
    (math.nan, math.nan, 0.0, False), (math.inf, math.inf, 0.0, True),
    (10**9 + 50, 10**9, 1e-4, True),                     # a task atol: ints within rtol too
    (10**9 + 500, 10**9, 1e-4, False),
    ([[1.0], [2.0]], [[1.0, 1.0], [2.0, 2.0]], 1e-4, True),   # numpy broadcasts
    ({"a": 1.0}, {"a": 1.0 + 1e-9}, 1e-4, False),        # np.allclose fails on dicts
    ("1.0", "1", 1e-4, False), (0.1 + 0.2, 0.3, 0.0, True),
]


@pytest.mark.parametrize("got, expected, atol, passes", EVALPLUS_CASES)
def test_evalplus_rules(got, expected, atol, passes):
    assert evalplus_equal(got, expected, atol) is passes
    assert values_match(got, expected, "evalplus", atol) is passes


def _evalplus_verdicts(pairs, atol: float) -> list[bool]:
    """The real evalplus package's per-input verdicts for `pairs` of (got, expected)."""
    evalplus_eval = pytest.importorskip("evalplus.eval")
    payload = base64.b64encode(pickle.dumps([got for got, _ in pairs])).decode()
    code = f"import base64, pickle\nOUT = pickle.loads(base64.b64decode('{payload}'))\n" \
           "def f(i):\n    return OUT[i]\n"
    status, details = evalplus_eval.untrusted_check(
        "humaneval", code, [[i] for i in range(len(pairs))], "f", [e for _, e in pairs], atol,
        [0.0] * len(pairs))
    return list(details)


def test_evalplus_rules_match_the_evalplus_package():
    """Every hand case, judged by evalplus's own untrusted_check. Per atol, the cases whose
    expected value is not a float go first: EvalPlus keeps the float tolerance it switched on
    for one input for the later ones (a quirk we do not reproduce)."""
    for atol in sorted({a for *_, a, _ in EVALPLUS_CASES}):
        cases = sorted((c for c in EVALPLUS_CASES if c[2] == atol), key=lambda c: _floats(c[1]))
        assert _evalplus_verdicts([(g, e) for g, e, *_ in cases], atol) == [p for *_, p in cases]


def _floats(value) -> bool:
    """Whether EvalPlus switches its float tolerance on for this expected value."""
    return type(value) is float or (type(value) in (list, tuple) and bool(value)
                                    and all(type(v) is float for v in value))


def _random_value(rng, depth=0):
    if depth > 2 or rng.random() < 0.4:
        return rng.choice([0, 1, -3, 2**40, 2**70, True, 0.0, 1e-9, 2.5, 1e12, math.inf,
                           math.nan, 1j, "a", None])
    inner = _random_value(rng, depth + 1)
    items = [inner if rng.random() < 0.7 else _random_value(rng, depth + 1)
             for _ in range(rng.randrange(4))]
    return items if rng.random() < 0.7 else tuple(items)


def _nudge(rng, value):
    if type(value) in (list, tuple):
        return type(value)(_nudge(rng, v) for v in value)
    if type(value) is float:
        return value * (1 + rng.choice([0, 1e-9, 1e-6, 1e-4]))
    return value


def test_allclose_is_numpys():
    rng = random.Random(0)
    for _ in range(5000):
        expected = _random_value(rng)
        got = _nudge(rng, expected) if rng.random() < 0.7 else _random_value(rng)
        atol = rng.choice([1e-6, 1e-4])
        try:
            want = bool(np.allclose(got, expected, rtol=1e-7, atol=atol))
        except Exception:
            want = False
        assert allclose(got, expected, atol, 1e-7) is want, (got, expected, atol)


@pytest.mark.parametrize("got, expected, passes", [
    ((1, 2), [1, 2], True),            # a returned tuple counts as a list
    ([(1, 2)], [[1, 2]], False),       # ...at the top level only
    (1.0, 1, True), (True, 1, True), (0.30000000000000004, 0.3, False),  # ==, no tolerance
    ({"a": [1]}, {"a": [1]}, True), ("1", 1, False),
])
def test_lcb_call_rules(got, expected, passes):
    assert values_match(got, expected, "lcb") is passes


@pytest.mark.parametrize("got, want, passes", [
    ("3\n", "3", True), ("\n\n  3  \n\n", "3", True),    # the whole output stripped
    ("  a b \r\n c\t\n", "a b\nc", True),                # every line stripped, \r included
    ("a\n\nb", "a\nb", False),                           # an inner blank line is a line
    ("1\n2", "1", False),                                # line counts differ
    ("a  b", "a b", False),                              # text: inner spaces count
    ("1  2", "1 2", True),                               # numbers: tokens compared
    ("1.0 2", "1 2.00", True), ("1e2", "100", True), ("-0", "0", True), ("1_000", "1000", True),
    ("0.1000000001", "0.1", False),                      # Decimals are exact
    ("nan", "nan", True), ("NaN", "nan", False),         # equal text; NaN equals no number
    ("sNaN", "0", False), ("inf", "Infinity", True),
    ("1 2", "1 2 3", False), ("yes", "YES", False), ("1 a", "1.0 a", False),
    ("", "", True), ("", "\n", True),
])
def test_lcb_stdout_rules(got, want, passes):
    assert lcb_stdout_equal(got, want) is passes
    assert stdout_matches(got, want, "lcb") is passes


def test_strict_stays_strict():
    assert not values_match(21.0, 21) and not values_match(False, 0)
    assert not values_match(BIG * (1 + 1e-9), float(BIG), atol=1e-6)
    assert not stdout_matches("1.0", "1") and not stdout_matches("  3", "3")
    assert stdout_matches("3  \n\n", "3")


def test_unknown_graders_are_refused():
    with pytest.raises(ValueError, match="grader must be one of"):
        values_match(1, 1, "loose")
    with pytest.raises(ValueError, match="stdout grader must be one of"):
        stdout_matches("1", "1", "evalplus")
    with pytest.raises(ValueError, match=r"CallTests.grader must be one of"):
        CallTests("f", [([1], 1)], grader="loose")
    with pytest.raises(TypeError, match=r"StdioTests.grader must be a str"):
        StdioTests([("", "1")], grader=None)
    with pytest.raises(ValueError, match=r"StdioTests.grader must be one of \('strict', 'lcb'\)"):
        StdioTests([("", "1")], grader="evalplus")
    with pytest.raises(ValueError, match=r"one list per case: 1 for 2 cases"):
        CallTests("f", [([1], 1), ([2], 2)], alternatives=[[3]])
    with pytest.raises(TypeError, match=r"CallTests.alternatives\[0\] must be a list"):
        CallTests("f", [([1], 1)], alternatives=[3])
    with pytest.raises(ValueError, match=r"CallTests.atol must be a number or hold one per case"):
        CallTests("f", [([1], 1)], atol=[0.1, 0.2])
    with pytest.raises(ValueError, match=r"CallTests.atol\[1\] must be finite and >= 0"):
        CallTests("f", [([1], 1), ([2], 2)], atol=[0.1, -1.0])


def test_graders_through_the_sandbox(sandbox):
    prog = "def f(x):\n    return x * 1.0\n"
    calls = [([21], 21), ([BIG * (1 + 1e-9)], float(BIG))]
    stdio = [("", "3.0\n  4\n")]
    jobs = [Job(prog, CallTests("f", calls, grader="evalplus")),
            Job(prog, CallTests("f", calls, atol=1e-6)),
            Job(prog, CallTests("f", calls, grader="lcb")),
            Job("print(' 3 ')\nprint(4)", StdioTests(stdio, grader="lcb")),
            Job("print(' 3 ')\nprint(4)", StdioTests(stdio)),
            Job(prog, CallTests("f", [([2], 7), ([3], 3)], alternatives=[[1, 2.0], []])),
            Job(prog, CallTests("f", [([2], 7), ([3], 3)], grader="evalplus",
                                alternatives=[[1, 2], []])),
            Job(prog, CallTests("f", [([0.5], 0.5001), ([0.5], 0.5001)], atol=[1e-3, 1e-5]))]
    assert [r.tests for r in sandbox.run(jobs)] == [
        [True, True], [False, False], [True, False], [True], [False], [True, False], [True, True],
        [True, False]]
