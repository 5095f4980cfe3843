"""MBPP, full (974) and sanitized (427): assert-statement tests, reference programs.

Completion prompt: a docstring with the description and the first test (as EvalPlus does), after
which the model writes the whole function. Splits follow the MBPP paper's task-id ranges.
References known to fail their own tests in our sandbox are listed in KNOWN_FAILURES with the
reason, and carry it as meta["known_failure"].
"""
from __future__ import annotations

import ast
import warnings
from pathlib import Path

from prmfast.data.jsonl import DataError, Row, read_json_list, read_jsonl
from prmfast.data.paths import resolve
from prmfast.data.task import Task
from prmfast.sandbox.specs import AssertTests

FILES = {"full": "mbpp/mbpp.jsonl", "sanitized": "mbpp/sanitized-mbpp.json"}
FIELDS = {"full": {"task_id": int, "text": str, "code": str, "test_list": list,
                   "test_setup_code": str},
          "sanitized": {"task_id": int, "prompt": str, "code": str, "test_list": list,
                        "test_imports": list}}
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


def variant_of(file: Path, variant: str | None) -> str:
    """The variant a file holds: "sanitized" for the JSON array file (.json), else "full"
    (JSON lines); DataError when it contradicts an explicit `variant`."""
    found = "sanitized" if file.suffix == ".json" else "full"
    if variant not in (None, found):
        layout = "a JSON array" if found == "sanitized" else "JSON lines"
        raise DataError(f"{file}: {layout}, so MBPP's {found} variant, not {variant!r} (.json "
                        "files hold the sanitized variant, others the full one)")
    return found


def load(path=None, split: str = "test", variant: str | None = None) -> list[Task]:
    """variant "full" (mbpp.jsonl) or "sanitized" (sanitized-mbpp.json); None: the one `path`
    names (a .json file is the sanitized one), else full. split "all" or one of SPLIT_IDS
    (test: ids 11-510); a split without any task raises DataError."""
    if variant not in (None, *FILES):
        raise ValueError(f"variant must be one of {list(FILES)}, got {variant!r}")
    if split != "all" and split not in SPLIT_IDS:
        raise ValueError(f"split must be 'all' or one of {list(SPLIT_IDS)}, got {split!r}")
    file = resolve(path, FILES[variant or "full"])
    variant = variant_of(file, variant)
    reader = read_jsonl if variant == "full" else read_json_list
    tasks = [_task(row, variant) for row in reader(file, FIELDS[variant])
             if split == "all" or row["task_id"] in SPLIT_IDS[split]]
    if not tasks:
        ids = SPLIT_IDS[split]
        raise DataError(f"{file}: no task in the {split!r} split (MBPP task ids {ids.start}-"
                        f"{ids.stop - 1})")
    return tasks


def _strings(row: Row, key: str) -> list[str]:
    """row[key], checked to be a list of strings."""
    if not all(isinstance(item, str) for item in row[key]):
        raise DataError(f"{row.where}: field {key!r} must be an array of strings")
    return row[key]


def _task(row: Row, variant: str) -> Task:
    """The Task of one MBPP record."""
    code = row["code"].replace("\r\n", "\n")
    tests = [t.replace("\r\n", "\n") for t in _strings(row, "test_list")]
    if not tests:
        raise DataError(f"{row.where}: task {row['task_id']} has no tests")
    setup = (row["test_setup_code"] if variant == "full"
             else "\n".join(_strings(row, "test_imports"))).replace("\r\n", "\n")
    text = row["text"] if variant == "full" else row["prompt"]
    task_id = f"mbpp/{row['task_id']}"
    meta = {"dataset": f"mbpp-{variant}", "source": row.where}
    if task_id in KNOWN_FAILURES:
        meta["known_failure"] = KNOWN_FAILURES[task_id]
    return Task(task_id=task_id, prompt=f'"""\n{text}\n{tests[0]}\n"""\n',
                tests=AssertTests(setup + "\n" + "\n".join(tests) + "\n"),
                entry_point=entry_point(code, tests[0]), reference=code, meta=meta)
