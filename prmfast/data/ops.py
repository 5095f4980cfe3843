"""The operation library of the synthetic suite (docs/design.md, "Synthetic suite").

Each operation is one step of a list pipeline: a natural-language template, a one-line code
template over the variable `xs`, and a parameter range. Transforms map a list to a list
(`xs = ...`); finals end the function (`return ...`). Templates are few and regular on purpose:
the policy is a tiny model trained from scratch.
"""
from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Op:
    """One parameterised step. `params` is the inclusive range of the parameter k (None: no
    parameter); `text` and `code` are format strings over k."""
    name: str
    text: str
    code: str
    params: tuple[int, int] | None = None
    final: bool = False

    def sample_param(self, rng: random.Random) -> int | None:
        return None if self.params is None else rng.randint(*self.params)

    def render(self, k: int | None) -> tuple[str, str]:
        """(step text, code line without indentation) for parameter k."""
        return self.text.format(k=k), self.code.format(k=k)


def _transform(name, text, code, params=None):
    return Op(name, text, "xs = " + code, params)


def _final(name, text, code, params=None):
    return Op(name, text, "return " + code, params, final=True)


TRANSFORMS: tuple[Op, ...] = (
    # filters
    _transform("keep_gt", "keep only the numbers greater than {k}", "[x for x in xs if x > {k}]", (0, 9)),
    _transform("keep_lt", "keep only the numbers less than {k}", "[x for x in xs if x < {k}]", (3, 12)),
    _transform("keep_even", "keep only the even numbers", "[x for x in xs if x % 2 == 0]"),
    _transform("keep_odd", "keep only the odd numbers", "[x for x in xs if x % 2 == 1]"),
    _transform("drop_eq", "remove every number equal to {k}", "[x for x in xs if x != {k}]", (0, 9)),
    _transform("keep_mult", "keep only the multiples of {k}", "[x for x in xs if x % {k} == 0]", (3, 5)),
    # maps
    _transform("add", "add {k} to every number", "[x + {k} for x in xs]", (1, 9)),
    _transform("sub", "subtract {k} from every number", "[x - {k} for x in xs]", (1, 9)),
    _transform("mul", "multiply every number by {k}", "[x * {k} for x in xs]", (2, 3)),
    _transform("mod", "replace every number by its remainder mod {k}", "[x % {k} for x in xs]", (2, 5)),
    _transform("div", "divide every number by {k} rounding down", "[x // {k} for x in xs]", (2, 3)),
    _transform("square", "square every number", "[x * x for x in xs]"),
    _transform("abs", "replace every number by its absolute value", "[abs(x) for x in xs]"),
    _transform("cap", "replace every number greater than {k} by {k}", "[min(x, {k}) for x in xs]", (3, 9)),
    _transform("negate", "negate every number", "[-x for x in xs]"),
    _transform("add_index", "add its position to every number", "[x + i for i, x in enumerate(xs)]"),
    # reorders
    _transform("sort", "sort in ascending order", "sorted(xs)"),
    _transform("sort_desc", "sort in descending order", "sorted(xs, reverse=True)"),
    _transform("reverse", "reverse the order", "xs[::-1]"),
    _transform("rotate", "move the first {k} numbers to the end", "xs[{k}:] + xs[:{k}]", (1, 3)),
    # slices
    _transform("take", "keep the first {k} numbers", "xs[:{k}]", (2, 6)),
    _transform("drop", "drop the first {k} numbers", "xs[{k}:]", (1, 3)),
    _transform("take_last", "keep the last {k} numbers", "xs[-{k}:]", (2, 6)),
    _transform("every_other", "keep every second number", "xs[::2]"),
    # dedupe, running sums, neighbours
    _transform("dedupe", "remove duplicates keeping the first one", "list(dict.fromkeys(xs))"),
    _transform("unique_sorted", "remove duplicates and sort", "sorted(set(xs))"),
    _transform("prefix_sums", "replace the list by its running sums", "[sum(xs[:i + 1]) for i in range(len(xs))]"),
    _transform("diffs", "replace the list by the differences of neighbours", "[b - a for a, b in zip(xs, xs[1:])]"),
    _transform("pair_sums", "replace the list by the sums of neighbours", "[a + b for a, b in zip(xs, xs[1:])]"),
    _transform("append", "append the number {k}", "xs + [{k}]", (0, 9)),
)

FINALS: tuple[Op, ...] = (
    _final("return_list", "return the list", "xs"),
    _final("sum", "return the sum of the numbers", "sum(xs)"),
    _final("count", "return the count of numbers", "len(xs)"),
    _final("max", "return the largest number or 0 if there is none", "max(xs, default=0)"),
    _final("min", "return the smallest number or 0 if there is none", "min(xs, default=0)"),
    _final("sum_first", "return the sum of the first {k} numbers", "sum(xs[:{k}])", (2, 4)),
    _final("count_gt", "return how many numbers are greater than {k}", "len([x for x in xs if x > {k}])", (0, 9)),
    _final("count_even", "return how many numbers are even", "len([x for x in xs if x % 2 == 0])"),
)

OPS: dict[str, Op] = {op.name: op for op in TRANSFORMS + FINALS}
