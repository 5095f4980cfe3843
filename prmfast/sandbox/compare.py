"""Trusted comparisons: exact type and value on plain data, and stdout normalisation."""
from __future__ import annotations

import math


def strict_equal(got, expected, atol: float = 0.0) -> bool:
    """True iff `got` has exactly the type of `expected` and the same value: a bool is not
    an int, floats agree within `atol`, containers are compared element-wise."""
    if type(got) is not type(expected):
        return False
    if type(got) is float:
        if math.isnan(got) or math.isnan(expected):
            return math.isnan(got) and math.isnan(expected)
        return got == expected or abs(got - expected) <= atol
    if type(got) is complex:
        return strict_equal(got.real, expected.real, atol) and strict_equal(got.imag, expected.imag, atol)
    if type(got) in (list, tuple):
        return len(got) == len(expected) and all(
            strict_equal(g, e, atol) for g, e in zip(got, expected))
    if type(got) is dict:
        return got.keys() == expected.keys() and all(
            strict_equal(got[k], expected[k], atol) for k in got)
    return got == expected  # str, int, bool, None, bytes, sets of plain hashables


def normalize_stdout(text: str) -> str:
    """Strip trailing whitespace on every line and trailing blank lines."""
    return "\n".join(line.rstrip() for line in text.splitlines()).rstrip("\n")
