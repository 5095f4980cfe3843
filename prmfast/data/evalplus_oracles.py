"""EvalPlus's special comparisons, as wrapper functions appended to every program.

EvalPlus compares some tasks' outputs specially (evalplus/eval/__init__.py, _special_oracle.py):
as sets (order comes from set iteration, which differs between processes for strings), by
"is not None" (re.Match outputs), or by a property of the output (HumanEval/32: a root of the
polynomial). CallTests compares exact values, so such a task calls a wrapper instead of its entry
point: the wrapper turns the output into what EvalPlus compares, and the expected outputs come
from the same wrapper around the canonical solution. Not reproduced (stricter than EvalPlus):
Mbpp/295, 558 and 581, which also accept one alternative answer.
"""
from __future__ import annotations

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
