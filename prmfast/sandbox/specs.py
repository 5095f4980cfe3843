"""Job and result types of the sandbox (docs/design.md, "Sandbox"). Plain data: no execution here.

The types check their fields when built (and Sandbox.run checks them again, as a Job can be
changed afterwards): a wrong type, a limit <= 0 or a string that is not UTF-8 raises
TypeError or ValueError naming the field, instead of reaching the judge."""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any

from prmfast.sandbox.compare import GRADERS, STDOUT_GRADERS

MAX_TIMEOUT_S = 86400.0  # one day: larger budgets overflow the fork server's time arithmetic
MAX_COUNT = 1 << 40      # limits in MB still fit the 64-bit rlimits once shifted to bytes


def check_seconds(value, name: str) -> float:
    """`value` as a float in (0, MAX_TIMEOUT_S], else TypeError/ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    try:
        seconds = float(value)
    except OverflowError:
        seconds = math.inf
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"{name} must be a positive, finite number of seconds, got {value!r}")
    if seconds > MAX_TIMEOUT_S:
        raise ValueError(f"{name} must be at most {MAX_TIMEOUT_S:g} s (one day), got {value!r}")
    return seconds


def check_count(value, name: str, maximum: int = MAX_COUNT) -> int:
    """`value` as an int in [1, maximum] (whole floats accepted), else TypeError/ValueError
    naming `name`: 0 or less would switch the limit off, not tighten it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a positive integer, not {type(value).__name__}")
    whole = isinstance(value, numbers.Integral) or (math.isfinite(value) and value == int(value))
    if not (whole and value >= 1):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if value > maximum:
        raise ValueError(f"{name} must be at most {maximum}, got {value!r}")
    return int(value)


def check_text(value, name: str) -> None:
    """A str that encodes as UTF-8 (no lone surrogate), else TypeError/ValueError."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{name} is not valid UTF-8 (a lone surrogate at index "
                         f"{exc.start})") from None


def _check_entry_point(value, name: str) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    if not value.isidentifier():
        raise ValueError(f"{name} must be a Python identifier, got {value!r}")


def _check_grader(value, name: str, allowed: tuple[str, ...]) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


def _check_tolerance(value, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, not {type(value).__name__}")
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be finite and >= 0, got {value!r}")


def _check_pairs(cases, name: str, what: str) -> None:
    if not isinstance(cases, (list, tuple)):
        raise TypeError(f"{name} must be a list of {what} pairs, not {type(cases).__name__}")
    for i, case in enumerate(cases):
        if not isinstance(case, (list, tuple)):
            raise TypeError(f"{name}[{i}] must be a {what} pair, not {type(case).__name__}")
        if len(case) != 2:
            raise TypeError(f"{name}[{i}] must be a {what} pair, not of length {len(case)}")


@dataclass(frozen=True)
class AssertTests:
    """Run `code` after the program in the same namespace; if entry_point is given and `code`
    defines check(), call check(<entry_point function>). Passes iff nothing raises. Cases
    (Result.tests): that call; else each top-level assert; else, in code without one, each
    top-level statement other than imports, definitions and assignments (`check(f)`, a loop or
    try block of asserts)."""
    code: str
    entry_point: str | None = None

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        check_text(self.code, "AssertTests.code")
        if self.entry_point is not None:
            _check_entry_point(self.entry_point, "AssertTests.entry_point")


@dataclass(frozen=True)
class StdioTests:
    """Run the program once per (stdin, expected stdout) case and compare its stdout by
    `grader` (compare.STDOUT_GRADERS): "strict" after stripping trailing whitespace on each
    line and trailing newlines; "lcb" as LiveCodeBench does (lines stripped, numbers as
    Decimals)."""
    cases: list[tuple[str, str]]
    grader: str = "strict"

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        _check_pairs(self.cases, "StdioTests.cases", "(stdin, stdout)")
        _check_grader(self.grader, "StdioTests.grader", STDOUT_GRADERS)
        for i, (stdin, stdout) in enumerate(self.cases):
            check_text(stdin, f"StdioTests.cases[{i}] stdin")
            check_text(stdout, f"StdioTests.cases[{i}] stdout")


@dataclass(frozen=True)
class CallTests:
    """Call entry_point(*args) per (args, expected) case and compare the result by `grader`
    (compare.GRADERS): "strict" by type and value (floats within atol, containers
    element-wise; set elements and dict keys exactly); "evalplus" as EvalPlus does (`==`, or
    np.allclose with atol and rtol 1e-7); "lcb" as LiveCodeBench does (`==`, a tuple taken as
    a list). `atol` is one tolerance, or a list of one per case. `alternatives`, if given,
    holds per case a list of further accepted results. `args` is a list or tuple; args and
    expected values must be plain data (Sandbox.run checks that)."""
    entry_point: str
    cases: list[tuple[list, Any]]
    atol: float | list[float] = 0.0
    grader: str = "strict"
    alternatives: list[list] | None = None

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        _check_entry_point(self.entry_point, "CallTests.entry_point")
        _check_pairs(self.cases, "CallTests.cases", "(args, expected)")
        for i, (args, _) in enumerate(self.cases):
            if not isinstance(args, (list, tuple)):
                raise TypeError(f"CallTests.cases[{i}] args must be a list or tuple, not "
                                f"{type(args).__name__}")
        _check_grader(self.grader, "CallTests.grader", GRADERS)
        if self.alternatives is not None:
            if not isinstance(self.alternatives, (list, tuple)):
                raise TypeError(f"CallTests.alternatives must be a list (one list per case) or "
                                f"None, not {type(self.alternatives).__name__}")
            if len(self.alternatives) != len(self.cases):
                raise ValueError(f"CallTests.alternatives must hold one list per case: "
                                 f"{len(self.alternatives)} for {len(self.cases)} cases")
            for i, values in enumerate(self.alternatives):
                if not isinstance(values, (list, tuple)):
                    raise TypeError(f"CallTests.alternatives[{i}] must be a list of accepted "
                                    f"results, not {type(values).__name__}")
        if isinstance(self.atol, (list, tuple)):
            if len(self.atol) != len(self.cases):
                raise ValueError(f"CallTests.atol must be a number or hold one per case: "
                                 f"{len(self.atol)} for {len(self.cases)} cases")
            for i, atol in enumerate(self.atol):
                _check_tolerance(atol, f"CallTests.atol[{i}]")
        else:
            _check_tolerance(self.atol, "CallTests.atol")


TestSpec = AssertTests | StdioTests | CallTests


@dataclass
class Job:
    """A program and its tests; timeout_s and memory_mb, when given, override the Sandbox's
    (seconds in (0, MAX_TIMEOUT_S], a positive number of MB). stop_on_failure=True ends the
    job at its first failing case (when only the verdict is needed): `passed` and
    `first_failure` are those of a full run, the cases after it have status NOT_RUN (and
    `tests` False); keep it False wherever the fraction of cases passed is used."""
    program: str
    tests: TestSpec
    timeout_s: float | None = None
    memory_mb: int | None = None
    stop_on_failure: bool = False

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Raise TypeError/ValueError, naming the field, if the sandbox cannot run this job.
        The program's text is not checked further: it is the untrusted side's (a program
        that is not UTF-8 ends as status "error")."""
        if not isinstance(self.program, str):
            raise TypeError(f"Job.program must be a str, not {type(self.program).__name__}")
        if not isinstance(self.tests, (AssertTests, StdioTests, CallTests)):
            raise TypeError(f"Job.tests must be AssertTests, StdioTests or CallTests, not "
                            f"{type(self.tests).__name__}")
        self.tests.validate()
        if self.timeout_s is not None:
            check_seconds(self.timeout_s, "Job.timeout_s")
        if self.memory_mb is not None:
            check_count(self.memory_mb, "Job.memory_mb")
        if not isinstance(self.stop_on_failure, bool):
            raise TypeError(f"Job.stop_on_failure must be True or False, not "
                            f"{type(self.stop_on_failure).__name__} {self.stop_on_failure!r}")


STATUSES = ("passed", "failed", "error", "timeout", "memory", "crashed", "output_limit")
NOT_RUN = "not_run"  # a case's status (Result.statuses) when the job ended before it ran


@dataclass
class Result:
    passed: bool
    status: str
    tests: list[bool] = field(default_factory=list)
    first_failure: int | None = None
    stderr: str = ""
    wall_s: float = 0.0
    statuses: list[str] = field(default_factory=list)  # per case: a STATUSES entry or NOT_RUN
