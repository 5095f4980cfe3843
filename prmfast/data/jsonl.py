"""Reading dataset files with errors that name the file and line."""
from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path


class DataError(ValueError):
    """A dataset file is missing or malformed."""


class Row(dict):
    """One record of a dataset file; `where` says where it came from ("FILE:LINE", or
    "FILE: element I" in a JSON array file), for error messages and Task.meta["source"]."""
    where: str = ""


# A loader's fields: names only, or name -> the type(s) the value must have.
Fields = tuple[str, ...] | Mapping[str, type | tuple[type, ...]]
JSON_TYPES = {str: "a string", int: "an integer", float: "a number", list: "an array",
              dict: "an object", bool: "true/false", type(None): "null"}


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, text) of a UTF-8 file, gzip-compressed when named .gz. Bytes that
    are not UTF-8, and a .gz file that is not gzip or is cut short, raise DataError."""
    if not path.is_file():
        raise DataError(f"{path}: no such dataset file")
    number = 0
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as f:
            for number, raw in enumerate(f, 1):
                yield number, raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{path}:{number}: not UTF-8 text ({err.reason}: byte "
                        f"0x{err.object[err.start]:02x} at column {err.start + 1})") from None
    except gzip.BadGzipFile:
        raise DataError(f"{path}: not a gzip file, although its name ends in .gz") from None
    except (EOFError, zlib.error) as err:
        raise DataError(f"{path}:{number + 1}: truncated or corrupt gzip file ({err})") from None


def read_jsonl(path: str | Path, required: Fields = ()) -> list[Row]:
    """Rows of a JSON-lines file (optionally .gz); blank lines are skipped. A line that is not a
    JSON object, or lacks a `required` field (or has one of the wrong type), raises DataError
    naming the file and its 1-based line number; so does a file without any row."""
    path = Path(path)
    rows = []
    for number, line in _lines(path):
        if not line.strip():
            continue
        if not rows and line.lstrip().startswith("["):
            raise DataError(f"{path}:{number}: a JSON array file, not JSON lines (one JSON "
                            "object per line)")
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{number}: malformed JSON ({err.msg})") from None
        rows.append(_row(row, required, f"{path}:{number}"))
    if not rows:
        raise DataError(f"{path}: no tasks in the file (it is empty)")
    return rows


def read_json_list(path: str | Path, required: Fields = ()) -> list[Row]:
    """Rows of a file holding one JSON array of objects (errors name the file and the line or
    the element index)."""
    path = Path(path)
    try:
        rows = json.loads("".join(line for _, line in _lines(path)))
    except json.JSONDecodeError as err:
        raise DataError(f"{path}:{err.lineno}: malformed JSON ({err.msg})") from None
    if not isinstance(rows, list):
        raise DataError(f"{path}: expected a JSON array of objects, got {_json_type(rows)}")
    if not rows:
        raise DataError(f"{path}: no tasks in the file (an empty array)")
    return [_row(row, required, f"{path}: element {i}") for i, row in enumerate(rows)]


def _row(row, required: Fields, where: str) -> Row:
    """`row` as a Row located at `where`, after checking that it is an object with the fields."""
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object, got {_json_type(row)}")
    missing = [k for k in required if k not in row]
    if missing:
        raise DataError(f"{where}: missing field(s) {', '.join(missing)}")
    if isinstance(required, Mapping):
        for key, types in required.items():
            if not isinstance(row[key], types):
                wanted = " or ".join(JSON_TYPES[t] for t in (types if isinstance(types, tuple)
                                                             else (types,)))
                raise DataError(f"{where}: field {key!r} must be {wanted}, got "
                                f"{_json_type(row[key])}")
    located = Row(row)
    located.where = where
    return located


def _json_type(value) -> str:
    return JSON_TYPES.get(type(value), type(value).__name__)
