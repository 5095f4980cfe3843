"""Trusted comparisons of a program's output with the expected one, per grader.

- "strict": exact type and value on plain data (floats within `atol`); stdout equal after
  stripping trailing whitespace. Stricter than any benchmark: our reward for RL.
- "evalplus": what EvalPlus 0.3.1 accepts (HumanEval+, MBPP+): Python `==`, else np.allclose
  (rtol 1e-7) under a tolerance. No stdout form.
- "lcb": what LiveCodeBench accepts: `==` after a returned tuple becomes a list; stdout line by
  line, stripped, lines equal as text or as lists of Decimals.

Everything here runs in the judge on values it decoded itself (plain builtins, or references to
the program's objects, which equal only themselves): no code of the program runs.
"""
from __future__ import annotations

import cmath
import math
import sys

GRADERS = ("strict", "evalplus", "lcb")
STDOUT_GRADERS = ("strict", "lcb")
EVALPLUS_RTOL = 1e-7     # np.allclose's relative tolerance, as EvalPlus sets it
EVALPLUS_FLOAT_ATOL = 1e-6  # EvalPlus's absolute tolerance for float outputs of an atol-0 task
_NUMBERS = (bool, int, float, complex)


def values_match(got, expected, grader: str = "strict", atol: float = 0.0) -> bool:
    """Whether `got` passes for `expected` under `grader` (GRADERS)."""
    if grader == "strict":
        return strict_equal(got, expected, atol)
    if grader == "evalplus":
        return evalplus_equal(got, expected, atol)
    if grader == "lcb":
        return python_equal(list(got) if type(got) is tuple else got, expected)
    raise ValueError(f"grader must be one of {GRADERS}, got {grader!r}")


def stdout_matches(got: str, want: str, grader: str = "strict") -> bool:
    """Whether stdout `got` passes for the expected `want` under `grader` (STDOUT_GRADERS)."""
    if grader == "strict":
        return normalize_stdout(got) == normalize_stdout(want)
    if grader == "lcb":
        return lcb_stdout_equal(got, want)
    raise ValueError(f"a stdout grader must be one of {STDOUT_GRADERS}, got {grader!r}")


def strict_equal(got, expected, atol: float = 0.0) -> bool:
    """True iff `got` has exactly the type of `expected` and the same value: a bool is not
    an int, floats agree within `atol`, lists, tuples and dict values are compared
    element-wise. Set elements and dict keys must match exactly, type included ({1} is not
    {True} nor {1.0}; floats there get no `atol`: a set has no order to pair them by)."""
    if type(got) is not type(expected):
        return False
    if type(got) is float:
        if math.isnan(got) or math.isnan(expected):
            return math.isnan(got) and math.isnan(expected)
        return got == expected or abs(got - expected) <= atol
    if _is_decimal(got) and got.is_nan():  # the types are already equal
        return expected.is_nan()
    if type(got) is complex:
        return strict_equal(got.real, expected.real, atol) and strict_equal(got.imag, expected.imag, atol)
    if type(got) in (list, tuple):
        return len(got) == len(expected) and all(
            strict_equal(g, e, atol) for g, e in zip(got, expected))
    if type(got) is dict:
        got_keys = {exact_key(k): k for k in got}
        want_keys = {exact_key(k): k for k in expected}
        return (len(got_keys) == len(got) == len(want_keys) == len(expected)
                and got_keys.keys() == want_keys.keys()
                and all(strict_equal(got[got_keys[key]], expected[k], atol)
                        for key, k in want_keys.items()))
    if type(got) in (set, frozenset):
        keys = {exact_key(v) for v in got}
        return len(keys) == len(got) == len(expected) and keys == {exact_key(v) for v in expected}
    return got == expected  # str, int, bool, None, bytes, builtin types


def exact_key(value):
    """A hashable key equal for two hashable values iff they are strict_equal with atol 0:
    the exact type goes with the value, at every level (1, True and 1.0 differ; NaN equals
    NaN)."""
    t = type(value)
    if t is tuple:
        return t, tuple(exact_key(v) for v in value)
    if t is frozenset:
        return t, frozenset(exact_key(v) for v in value)
    if (t is float and math.isnan(value)) or (_is_decimal(value) and value.is_nan()):
        return t, "nan"
    if t is complex:
        return t, exact_key(value.real), exact_key(value.imag)
    return t, value


def _is_decimal(value) -> bool:
    decimal = sys.modules.get("decimal")  # loaded wherever a Decimal exists
    return decimal is not None and type(value) is decimal.Decimal


def python_equal(got, expected) -> bool:
    """Python's `==` (0 == False, 21 == 21.0, NaN != NaN); a comparison that raises (nesting
    too deep) is a mismatch."""
    try:
        return bool(got == expected)
    except (RecursionError, TypeError, ValueError, ArithmeticError):
        return False


def evalplus_equal(got, expected, atol: float = 0.0) -> bool:
    """EvalPlus 0.3.1's verdict on one output: `got == expected`; else, where a tolerance
    applies (the task's `atol`, or EVALPLUS_FLOAT_ATOL when it is 0 and `expected` is a float
    or a non-empty list or tuple of floats), `got` of the same type, of the same length for a
    list or tuple, and np.allclose(got, expected, rtol=1e-7, atol) as numpy 2 computes it."""
    if python_equal(got, expected):
        return True
    tol = atol or (EVALPLUS_FLOAT_ATOL if is_floats(expected) else 0.0)
    if not tol or type(got) is not type(expected):
        return False
    if type(got) in (list, tuple) and len(got) != len(expected):
        return False
    return allclose(got, expected, tol, EVALPLUS_RTOL)


def is_floats(value) -> bool:
    """Whether EvalPlus gives an atol-0 task's output a float tolerance for this expected
    value: a float, or a non-empty list or tuple of floats."""
    if type(value) is float:
        return True
    return type(value) in (list, tuple) and bool(value) and all(type(v) is float for v in value)


def allclose(got, expected, atol: float, rtol: float) -> bool:
    """np.allclose(got, expected, rtol, atol) on plain data, False where numpy raises: both
    must be numbers (bool, int, float, complex) or nested lists/tuples of them with a
    rectangular shape, shapes broadcast as numpy's do, and every pair satisfies
    |got - expected| <= atol + rtol * |expected| with `expected` finite, or is equal."""
    try:
        shapes = _shape(got, objects=True), _shape(expected, objects=False)
        if None in shapes:
            return False
        ndim = max(len(shapes[0]), len(shapes[1]))
        padded = [(1,) * (ndim - len(s)) + s for s in shapes]
        if any(a != b and 1 not in (a, b) for a, b in zip(*padded)):
            return False  # shapes that do not broadcast
        for _ in range(ndim - len(shapes[0])):
            got = [got]
        for _ in range(ndim - len(shapes[1])):
            expected = [expected]
        return _close(got, expected, padded[0], padded[1], atol, rtol)
    except (OverflowError, RecursionError):  # an int beyond a float's range; deep nesting
        return False


def _shape(value, objects: bool, nested: bool = False) -> tuple | None:
    """The shape numpy gives `value` as an array; None where np.allclose fails on the array
    as a whole: text, a ragged nesting, or (unless `objects`) an element numpy does not hold
    as a number (None, a dict, an int beyond 64 bits inside a list). With `objects`, such
    elements fail only when compared."""
    t = type(value)
    if t in (list, tuple):
        inner = {_shape(v, objects, nested=True) for v in value}
        if None in inner or len(inner) > 1:
            return None
        return (len(value),) + (inner.pop() if inner else ())
    if t in (str, bytes):
        return None
    if t in _NUMBERS and not (nested and t is int and not -2**63 <= value < 2**64):
        return ()
    return () if objects else None


def _close(got, expected, got_shape, want_shape, atol, rtol) -> bool:
    if not got_shape:
        if type(got) not in _NUMBERS or type(expected) not in _NUMBERS:
            return False
        want = expected if type(expected) is complex else float(expected)  # numpy: inexact
        finite = cmath.isfinite(want) if type(want) is complex else math.isfinite(want)
        return (abs(got - want) <= atol + rtol * abs(want) and finite) or got == want
    n = want_shape[0] if got_shape[0] == 1 else got_shape[0]
    return all(_close(got[0 if got_shape[0] == 1 else i], expected[0 if want_shape[0] == 1 else i],
                      got_shape[1:], want_shape[1:], atol, rtol) for i in range(n))


def normalize_stdout(text: str) -> str:
    """Strip trailing whitespace on every line and trailing blank lines. Lines end at "\\n"
    (or "\\r\\n") only: form feeds, \\x1c-\\x1e, \\x85, \\u2028 and a lone "\\r" stay part of
    the line (str.splitlines would split there)."""
    return "\n".join(line.rstrip() for line in text.replace("\r\n", "\n").split("\n")).rstrip("\n")


def lcb_stdout_equal(got: str, want: str) -> bool:
    """LiveCodeBench's stdio verdict: both texts stripped, split at "\\n" and each line
    stripped; the same number of lines, each pair equal as text or, split at whitespace, as
    lists of Decimals ("1.0" == "1", "1e2" == "100"; NaN equals nothing)."""
    got_lines, want_lines = _stripped_lines(got), _stripped_lines(want)
    return len(got_lines) == len(want_lines) and all(
        a == b or _decimal_line_equal(a, b) for a, b in zip(got_lines, want_lines))


def _stripped_lines(text: str) -> list[str]:
    return [line.strip() for line in text.strip().split("\n")]


def _decimal_line_equal(a: str, b: str) -> bool:
    import decimal  # imported on first use: most judges never compare stdout
    try:
        return [decimal.Decimal(t) for t in a.split()] == [decimal.Decimal(t) for t in b.split()]
    except (decimal.InvalidOperation, ValueError):  # not a number, or a signalling NaN
        return False
