"""MBPP, full (974) and sanitized (427): assert-statement tests, reference programs.

Completion prompt: a docstring with the description and the first test (as EvalPlus does), after
which the model writes the whole function. Splits follow the MBPP paper's task-id ranges.
References known to fail their own tests in our sandbox are listed in KNOWN_FAILURES with the
reason, and carry it as meta["known_failure"].
"""
from __future__ import annotations

import ast
import warnings

from prmfast.data.jsonl import DataError, read_json_list, read_jsonl
from prmfast.data.paths import resolve
from prmfast.data.task import Task
from prmfast.sandbox.specs import AssertTests

FILES = {"full": "mbpp/mbpp.jsonl", "sanitized": "mbpp/sanitized-mbpp.json"}
# The sandbox runs assert code on the judge side, with the program's objects as remote references:
KNOWN_FAILURES: dict[str, str] = {}
SPLIT_IDS = {"prompt": range(1, 11), "test": range(11, 511), "validation": range(511, 601),
             "train": range(601, 975)}


def entry_point(code: str, first_test: str) -> str | None:
    """The function of `code` that the first test calls (the first defined one otherwise)."""
    try:
        with warnings.catch_warnings():  # old invalid escapes in some references
            warnings.simplefilter("ignore", SyntaxWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            names = [n.name for n in ast.parse(code).body if isinstance(n, ast.FunctionDef)]
    except SyntaxError:
        return None
    called = [name for name in names if f"{name}(" in first_test]
    return (called or names or [None])[0]


def load(path=None, split: str = "test", variant: str = "full") -> list[Task]:
    """variant "full" (mbpp.jsonl) or "sanitized" (sanitized-mbpp.json); split "all" or one of
    SPLIT_IDS (test: ids 11-510)."""
    if variant not in FILES:
        raise ValueError(f"variant must be one of {list(FILES)}, got {variant!r}")
    if split != "all" and split not in SPLIT_IDS:
        raise ValueError(f"split must be 'all' or one of {list(SPLIT_IDS)}, got {split!r}")
    file = resolve(path, FILES[variant])
    if variant == "full":
        rows = read_jsonl(file, ("task_id", "text", "code", "test_list", "test_setup_code"))
    else:
        rows = read_json_list(file, ("task_id", "prompt", "code", "test_list", "test_imports"))
    tasks = []
    for row in rows:
        if split != "all" and row["task_id"] not in SPLIT_IDS[split]:
            continue
        code = row["code"].replace("\r\n", "\n")
        tests = [t.replace("\r\n", "\n") for t in row["test_list"]]
        if not tests:
            raise DataError(f"{file}: task {row['task_id']} has no tests")
        setup = (row["test_setup_code"] if variant == "full" else "\n".join(row["test_imports"]))
        setup = setup.replace("\r\n", "\n")
        text = row["text"] if variant == "full" else row["prompt"]
        task_id = f"mbpp/{row['task_id']}"
        meta = {"dataset": f"mbpp-{variant}"}
        if task_id in KNOWN_FAILURES:
            meta["known_failure"] = KNOWN_FAILURES[task_id]
        tasks.append(Task(
            task_id=task_id, prompt=f'"""\n{text}\n{tests[0]}\n"""\n',
            tests=AssertTests(setup + "\n" + "\n".join(tests) + "\n"),
            entry_point=entry_point(code, tests[0]), reference=code, meta=meta))
    return tasks
