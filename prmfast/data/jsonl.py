"""Reading dataset files with errors that name the file and line."""
from __future__ import annotations

import gzip
import json
from pathlib import Path


class DataError(ValueError):
    """A dataset file is missing or malformed."""


def _open_text(path: Path):
    if not path.is_file():
        raise DataError(f"{path}: no such dataset file")
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")


def read_jsonl(path: str | Path, required: tuple[str, ...] = ()) -> list[dict]:
    """Rows of a JSON-lines file (optionally .gz); blank lines are skipped. A line that is not a
    JSON object, or lacks a `required` field, raises DataError naming the file and its 1-based
    line number."""
    path = Path(path)
    rows = []
    with _open_text(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{number}: malformed JSON ({err.msg})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
            _require(row, required, f"{path}:{number}")
            rows.append(row)
    return rows


def read_json_list(path: str | Path, required: tuple[str, ...] = ()) -> list[dict]:
    """Rows of a file holding one JSON array of objects (errors name the file and the line or
    the element index)."""
    path = Path(path)
    with _open_text(path) as f:
        try:
            rows = json.load(f)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{err.lineno}: malformed JSON ({err.msg})") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise DataError(f"{path}: expected a JSON array of objects")
    for i, row in enumerate(rows):
        _require(row, required, f"{path}: element {i}")
    return rows


def _require(row: dict, keys: tuple[str, ...], where: str) -> None:
    missing = [k for k in keys if k not in row]
    if missing:
        raise DataError(f"{where}: missing field(s) {', '.join(missing)}")
