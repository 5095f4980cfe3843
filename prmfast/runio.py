"""Files of a run folder: JSON lines the stages append to, JSON documents, atomic replacement.

One policy for every JSONL file a stage appends to (metrics.jsonl, probe.jsonl, labels.jsonl,
probe journals, results.jsonl, ...). Rows are appended whole lines at a time, in one write, so a
hard kill can tear only the file's LAST line. Reading:
  - a torn last line (no JSON object, usually cut mid-write) is skipped; with repair=True it is
    also cut from the file (and a missing final newline added), so the next append starts on a
    line of its own;
  - any other line that is not a JSON object is damage a kill cannot cause: RunFileError (a
    StageError) naming the file and the line, and the fix;
  - blank lines are skipped, a missing file reads as no rows.
Whole files (JSON documents, rewritten JSONL) are written to a temporary file and renamed over
the old one, so a reader sees the old file or the new one, never a part.

    read_jsonl(path, repair=False) -> list[dict]
    append_jsonl(path, rows)             # whole lines, one write
    write_jsonl(path, rows)              # atomic replacement
    write_json(path, obj, indent=2)      # atomic; NaN written as null (strict JSON)
    read_metrics(stage_dir) -> rows of stage_dir/metrics.jsonl
    save_whole(folder, write)            # a folder (a saved model) written whole, then swapped in
"""
from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from prmfast.errors import StageError


class RunFileError(StageError):
    """A run-folder file damaged where an interrupted write cannot have damaged it."""


def read_jsonl(path: str | Path, *, repair: bool = False) -> list[dict]:
    """The rows of a JSONL file under the policy above (torn last line skipped, or cut from the
    file with repair=True; RunFileError for a bad line elsewhere)."""
    path = Path(path)
    if not path.exists():
        return []
    data = path.read_bytes()
    lines = data.splitlines(keepends=True)
    rows, bad = [], None
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if bad is not None:
            raise RunFileError(f"{path}, line {bad[0]}: not a JSON row ({bad[1][:60]!r}) and not "
                               "the last line, so not an interrupted write; remove or fix that "
                               "line")
        row = _row(line)
        if row is None:
            bad = (i, line.decode("utf-8", "replace").rstrip("\n"))
        else:
            rows.append(row)
    if repair:
        keep = b"".join(lines[:bad[0] - 1]) if bad is not None else data
        if keep and not keep.endswith(b"\n"):
            keep += b"\n"
        if keep != data:
            _replace_bytes(path, keep)
    return rows


def _row(line: bytes) -> dict | None:
    """The JSON object on a line, None when it holds none (torn, cut mid-character, a list)."""
    try:
        row = json.loads(line)
    except ValueError:                        # JSONDecodeError, or a cut multi-byte character
        return None
    return row if isinstance(row, dict) else None


def append_jsonl(path: str | Path, rows: Iterable[dict]) -> None:
    """Append the rows as whole lines in one write (a kill tears at most the last line)."""
    data = "".join(json.dumps(row) + "\n" for row in rows).encode()
    if not data:
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> None:
    """Replace path with the rows as JSON lines, atomically."""
    _replace_bytes(Path(path), "".join(json.dumps(row) + "\n" for row in rows).encode())


def write_json(path: str | Path, obj, *, indent: int | None = 2) -> None:
    """Replace path with obj as strict JSON (NaN, e.g. an AUC without both classes, becomes
    null), atomically."""
    _replace_bytes(Path(path), (json.dumps(_strict(obj), indent=indent) + "\n").encode())


def _strict(x):
    if isinstance(x, float) and x != x:
        return None
    if isinstance(x, dict):
        return {k: _strict(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_strict(v) for v in x]
    return x


def _replace_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def read_metrics(stage_dir: str | Path) -> list[dict]:
    """Rows of DIR/<stage>/metrics.jsonl (empty when absent), under the policy above."""
    return read_jsonl(Path(stage_dir) / "metrics.jsonl")


def save_whole(folder: str | Path, write) -> None:
    """write(path) into a temporary folder, then swapped in: a kill mid-save never leaves a
    partial model folder for the next stages (they start from DIR/sft/model, DIR/prm/model)."""
    folder = Path(folder)
    tmp = folder.with_name(".tmp_" + folder.name)
    shutil.rmtree(tmp, ignore_errors=True)
    write(tmp)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
