"""Binary search for the first unrecoverable prefix (paper Algorithm 1), model-free.

Indexing. A response has lines 1..T; the probe points are its code lines (comment-only and blank
lines are never probed: they carry label 0 and are assumed not to change recoverability). With
P code lines, a search *point* p in 0..P is the prefix that holds the first p code lines (p = 0 is
the empty prefix: the policy answers from scratch; p = P is the whole response). R(p) is "some of
K completions of prefix p passes". For a failing response R(P) = False is known without a probe.

The search finds `first_bad`, the smallest p with R(p) = False, assuming R is monotone (true up to
some point, false after). It keeps lo (R(lo) true; lo = -1 is a virtual always-true sentinel) and
hi (R(hi) false), probing mid = (lo + hi) // 2 until hi = lo + 1, so it uses at most
ceil(log2(P + 1)) probes and probes the empty prefix only when the search reaches it.
first_bad = 0 means even the empty prefix is unrecoverable ("unrecoverable from start").
On a non-monotone R the answer is still a transition: R(first_bad) is false and
R(first_bad - 1) is true (or first_bad = 0).

m* (the paper's first unrecoverable line) is the 1-based line number of code line `first_bad`
(0 when first_bad = 0). Labels: +1 for code lines before m*, -1 for m* and after, 0 for comment
lines; a passing response is +1 on every code line (m* = None).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass
class BinarySearch:
    """One search over points 0..n_points, stepped from outside (so many can run in lockstep)."""
    n_points: int
    lo: int = -1
    hi: int = -1

    def __post_init__(self) -> None:
        if self.n_points < 0:
            raise ValueError(f"n_points must be >= 0, got {self.n_points}")
        if self.hi < 0:
            self.hi = self.n_points

    @property
    def done(self) -> bool:
        return self.hi - self.lo <= 1

    def next_probe(self) -> int:
        if self.done:
            raise RuntimeError("search is finished")
        return (self.lo + self.hi) // 2

    def update(self, point: int, recoverable: bool) -> None:
        if not self.lo < point < self.hi:
            raise ValueError(f"point {point} outside the open interval ({self.lo}, {self.hi})")
        if recoverable:
            self.lo = point
        else:
            self.hi = point

    @property
    def first_bad(self) -> int:
        if not self.done:
            raise RuntimeError("search is not finished")
        return self.hi


def max_probes(n_points: int) -> int:
    """Upper bound on probes for a failing response with n_points code lines."""
    return math.ceil(math.log2(n_points + 1)) if n_points > 0 else 0


def binary_search(n_points: int, recoverable: Callable[[int], bool]) -> tuple[int, list[int]]:
    """Sequential driver: (first_bad, probed points in order) for a failing response."""
    search = BinarySearch(n_points)
    probed = []
    while not search.done:
        point = search.next_probe()
        probed.append(point)
        search.update(point, recoverable(point))
    return search.first_bad, probed


def scan(n_points: int, recoverable: Callable[[int], bool]) -> list[bool]:
    """Exhaustive scan: R(p) for p in 0..n_points-1, then R(n_points) = False (failing response)."""
    return [recoverable(p) for p in range(n_points)] + [False]


def scan_first_bad(outcomes: Sequence[bool]) -> int:
    """First p with R(p) false in a scan (the brute-force answer under monotonicity)."""
    return next(p for p, ok in enumerate(outcomes) if not ok)


def is_monotone(outcomes: Sequence[bool]) -> bool:
    """True iff no recoverable point follows an unrecoverable one."""
    return all(not (outcomes[p + 1] and not outcomes[p]) for p in range(len(outcomes) - 1))


def code_lines(is_comment: Sequence[bool]) -> list[int]:
    """0-based indices of the code lines (the probe points 1..P map to these)."""
    return [i for i, comment in enumerate(is_comment) if not comment]


def prefix_lines(is_comment: Sequence[bool], point: int) -> int:
    """Number of lines in the prefix for search point `point` (ends at code line `point`)."""
    return code_lines(is_comment)[point - 1] + 1 if point > 0 else 0


def m_star(is_comment: Sequence[bool], first_bad: int | None) -> int | None:
    """1-based line number of the first unrecoverable line; 0 = unrecoverable from the start.
    first_bad: a search point 0..P (P code lines), or None (passed: no bad line)."""
    if first_bad is None:
        return None
    n_points = len(code_lines(is_comment))
    if not 0 <= first_bad <= n_points:
        raise ValueError(f"first_bad must be in 0..{n_points} (the number of code lines) or "
                         f"None, got {first_bad}")
    return prefix_lines(is_comment, first_bad)


def labels_from_line(is_comment: Sequence[bool], first_bad_line: int | None) -> list[int]:
    """Per-line labels from a 1-based first bad line (m*): +1 on code lines before it, -1 on code
    lines from it on, 0 on comment lines; None (passed) gives +1 on every code line."""
    return [0 if comment else 1 if first_bad_line is None or i + 1 < first_bad_line else -1
            for i, comment in enumerate(is_comment)]


def line_labels(is_comment: Sequence[bool], first_bad: int | None) -> list[int]:
    """Per-line labels from a search result (first_bad point; None = passed)."""
    return labels_from_line(is_comment, m_star(is_comment, first_bad))


def segment_line(texts: Sequence[str], physical_line: int) -> int:
    """0-based segmented line holding a 0-based physical line of the response text (segmented
    lines may hold several physical lines, see prmfast.lines)."""
    end = 0
    for i, text in enumerate(texts):
        end += text.count("\n") + 1
        if physical_line < end:
            return i
    return len(texts) - 1


def oracle_m_star(texts: Sequence[str], passed: bool, first_error: int | None) -> int | None:
    """The synthetic oracle's first error (0-based physical line of the response, or None) as a
    1-based segmented line comparable with m*; None for passing responses and where the oracle
    has no error. An error past the last line (missing steps) lands on the last line."""
    if passed or first_error is None or not texts:
        return None
    return segment_line(texts, first_error) + 1
