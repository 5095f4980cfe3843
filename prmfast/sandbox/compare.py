"""Trusted comparisons: exact type and value on plain data, and stdout normalisation."""
from __future__ import annotations

import math
import sys


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


def normalize_stdout(text: str) -> str:
    """Strip trailing whitespace on every line and trailing blank lines. Lines end at "\\n"
    (or "\\r\\n") only: form feeds, \\x1c-\\x1e, \\x85, \\u2028 and a lone "\\r" stay part of
    the line (str.splitlines would split there)."""
    return "\n".join(line.rstrip() for line in text.replace("\r\n", "\n").split("\n")).rstrip("\n")
