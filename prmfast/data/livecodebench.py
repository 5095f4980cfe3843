"""LiveCodeBench releases v1-v6 with PUBLIC test cases only (results must say so).

stdin/stdout problems (AtCoder, Codeforces) become StdioTests; functional (LeetCode) problems
become CallTests on the method named in `starter_code`, called through a module-level shim
appended to every program (meta["harness"]). A problem without any public test (abc350_c, a
special-judge problem) is skipped, with a warning naming it: every program would pass it.
By default outputs are compared as LiveCodeBench's grader does (sandbox grader "lcb");
grader="strict" keeps the sandbox's exact comparison.
"""
from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

from prmfast.data.jsonl import DataError, Row, read_jsonl
from prmfast.data.paths import resolve
from prmfast.data.task import Task, sandbox_grader
from prmfast.sandbox.specs import CallTests, StdioTests

RELEASES = {"v1": "refined_test.jsonl", "v2": "refined_test2.jsonl", "v3": "refined_test3.jsonl",
            "v4": "refined_test4.jsonl", "v5": "refined_test5.jsonl", "v6": "refined_test6.jsonl"}
FIELDS = {**dict.fromkeys(("question_id", "question_title", "question_content", "difficulty",
                           "starter_code"), str), "public_test_cases": (str, list)}
CASE_FIELDS = ("input", "output", "testtype")
PREAMBLE = "from typing import *\n"
STRICT_ATOL = 1e-6  # the strict grader's float tolerance (LiveCodeBench's `==` has none)


def _shim(method: str) -> str:
    return f"\n\ndef {method}(*args):\n    return Solution().{method}(*args)\n"


def _parse_value(text: str, where: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(f"{where}: functional test value is not JSON ({err.msg}): {text[:80]!r}") from None


def _cases(row: Row, where: str) -> list[dict]:
    """The public test cases of a row: a JSON array (or its text) of objects with CASE_FIELDS."""
    cases = row["public_test_cases"]
    if isinstance(cases, str):
        try:
            cases = json.loads(cases)
        except json.JSONDecodeError as err:
            raise DataError(f"{where}: public_test_cases is not JSON ({err.msg} at column "
                            f"{err.colno})") from None
    if not isinstance(cases, list):
        raise DataError(f"{where}: public_test_cases must be a JSON array of test cases")
    for i, case in enumerate(cases):
        bad = [k for k in CASE_FIELDS
               if not isinstance(case, dict) or not isinstance(case.get(k), str)]
        if bad:
            raise DataError(f"{where}: public test case {i}: {', '.join(bad)} missing or not a "
                            "string")
    return cases


def _task(row: Row, release: str, grader: str) -> Task | None:
    where = f"{row.where} ({row['question_id']})"
    cases = _cases(row, where)
    if not cases:
        return None
    question = f'"""\n{row["question_content"].replace(chr(13), "")}\n"""\n'
    meta = {"dataset": "livecodebench", "release": release, "difficulty": row["difficulty"],
            "title": row["question_title"], "public_tests_only": True, "source": row.where}
    if {c["testtype"] for c in cases} == {"stdin"}:
        return Task(task_id=f"livecodebench/{row['question_id']}", prompt=question,
                    tests=StdioTests([(c["input"], c["output"]) for c in cases], grader),
                    entry_point=None,
                    reference=None, meta={**meta, "testtype": "stdin"})
    names = re.findall(r"def (\w+)\(self", row["starter_code"])
    if len(names) != 1 or {c["testtype"] for c in cases} != {"functional"}:
        raise DataError(f"{where}: cannot read a single functional entry point / test type")
    calls = [([_parse_value(line, where) for line in c["input"].split("\n")],
              _parse_value(c["output"], where)) for c in cases]
    return Task(task_id=f"livecodebench/{row['question_id']}",
                prompt=question + PREAMBLE + "\n" + row["starter_code"].rstrip() + "\n",
                tests=CallTests(names[0], calls, STRICT_ATOL if grader == "strict" else 0.0,
                                grader=grader), entry_point=names[0], reference=None,
                meta={**meta, "testtype": "functional", "preamble": PREAMBLE,
                      "harness": _shim(names[0])})


def load(path=None, releases: list[str] | None = None, grader: str = "official") -> list[Task]:
    """All releases by default; `releases` picks some (e.g. ["v5", "v6"]). `path` is the
    livecodebench folder, the data folder above it, or one refined_test*.jsonl file. grader
    "official" compares as LiveCodeBench does, "strict" exactly."""
    unknown = set(releases or ()) - set(RELEASES)
    if unknown:
        raise ValueError(f"unknown releases {sorted(unknown)}; known: {list(RELEASES)}")
    grader = sandbox_grader(grader, "lcb")
    if path is not None and Path(path).is_file():
        files = {next((r for r, f in RELEASES.items() if f == Path(path).name), "v?"): Path(path)}
    else:
        files = {r: resolve(path, f"livecodebench/{f}") for r, f in RELEASES.items()
                 if releases is None or r in releases}
    tasks, skipped = [], []
    for release, file in files.items():
        for row in read_jsonl(file, FIELDS):
            task = _task(row, release, grader)
            if task is not None:
                tasks.append(task)
            else:
                skipped.append(row["question_id"])
    if skipped:
        warnings.warn(f"livecodebench: skipped {len(skipped)} problem(s) without public tests: "
                      f"{', '.join(skipped)}", stacklevel=2)
    if not tasks:
        raise DataError(f"{', '.join(map(str, files.values()))}: no problem with public tests")
    return tasks
