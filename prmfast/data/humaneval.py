"""HumanEval (164 problems): check(candidate) asserts, canonical solutions as references."""
from __future__ import annotations

from prmfast.data.jsonl import read_jsonl
from prmfast.data.paths import resolve
from prmfast.data.task import Task
from prmfast.sandbox.specs import AssertTests

FILE = "humaneval/HumanEval.jsonl.gz"
FIELDS = dict.fromkeys(("task_id", "prompt", "entry_point", "canonical_solution", "test"), str)


def import_lines(code: str) -> str:
    """The top-level import lines of `code` (what a chat answer may leave out)."""
    return "".join(line + "\n" for line in code.split("\n") if line.startswith(("import ", "from ")))


def load(path=None) -> list[Task]:
    return [
        Task(task_id=row["task_id"], prompt=row["prompt"],
             tests=AssertTests(row["test"], row["entry_point"]), entry_point=row["entry_point"],
             reference=row["canonical_solution"],
             meta={"dataset": "humaneval", "preamble": import_lines(row["prompt"]),
                   "source": row.where})
        for row in read_jsonl(resolve(path, FILE), FIELDS)
    ]
