"""EvalPlus's special comparisons: wrapper functions appended to every program, and the
alternative answers some tasks also accept.

EvalPlus compares some tasks' outputs specially (evalplus/eval/__init__.py, _special_oracle.py):
as sets (order comes from set iteration, which differs between processes for strings), by
"is not None" (re.Match outputs), or by a property of the output (HumanEval/32: a root of the
polynomial). CallTests compares values, so such a task calls a wrapper instead of its entry
point: the wrapper turns the output into what EvalPlus compares, and the expected outputs come
from the same wrapper around the canonical solution. Mbpp/558 and 581 also accept the answer of
a second reading of the task, computed here per input (trusted code) and passed to CallTests as
`alternatives`. EvalPlus 0.3.1 also accepts 0 from Mbpp/295 (sum_div), a task MBPP+ v0.2.0 no
longer has.
"""
from __future__ import annotations

import math

SET_EQUAL = {"similar_elements", "find_char_long", "common_in_nested_lists", "extract_singly",
             "larg_nnum", "intersection_array", "find_dissimilar", "Diff"}
NOT_NONE = {"check_str", "text_match_three", "text_starta_endb"}

_BODIES = {
    "set": "    return set({entry}(*args))\n",
    "not_none": "    out = {entry}(*args)\n    return out if isinstance(out, bool) else out is not None\n",
    "any": "    {entry}(*args)\n    return True\n",
    "root": ("    import math\n    xs = list(args[0])\n    x = {entry}(*args)\n"
             "    assert abs(sum(c * math.pow(x, i) for i, c in enumerate(xs))) <= {atol!r}\n"
             "    return True\n"),
}


def oracle_kind(dataset: str, entry: str) -> str | None:
    """The special comparison of a task, None for exact comparison."""
    if dataset == "mbppplus":
        if entry in SET_EQUAL:
            return "set"
        if entry in NOT_NONE:
            return "not_none"
        if entry == "are_equivalent":  # Mbpp/164: any answer that does not raise
            return "any"
    if dataset == "humanevalplus" and entry == "find_zero":  # HumanEval/32
        return "root"
    return None


def wrapper_name(entry: str) -> str:
    return f"_evalplus_{entry}"


def wrapper(kind: str, entry: str, atol: float) -> str:
    """Code defining wrapper_name(entry), to append after the program."""
    return f"\n\ndef {wrapper_name(entry)}(*args):\n" + _BODIES[kind].format(entry=entry, atol=atol)


def _digit_distance_padded(n1: int, n2: int) -> int:
    """Mbpp/558 read with the shorter number left-padded with zeros."""
    a, b = str(n1), str(n2)
    width = max(len(a), len(b))
    return sum(abs(int(x) - int(y)) for x, y in zip(a.zfill(width), b.zfill(width)))


def _pyramid_surface_from_height(base: float, height: float) -> int:
    """Mbpp/581 read with `height` as the pyramid's height (not its slant height), rounded."""
    slant = math.sqrt((base / 2) ** 2 + height ** 2)
    return round(base ** 2 + 2 * base * slant)


_ALTERNATIVES = {"digit_distance_nums": _digit_distance_padded,   # Mbpp/558
                 "surface_Area": _pyramid_surface_from_height}    # Mbpp/581


def alternatives(dataset: str, entry: str, inputs: list) -> list[list] | None:
    """Per input, the further answers EvalPlus accepts; None for a task without any."""
    answer = _ALTERNATIVES.get(entry) if dataset == "mbppplus" else None
    return None if answer is None else [[answer(*args)] for args in inputs]
