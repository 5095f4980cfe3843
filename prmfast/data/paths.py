"""Where dataset files live: ../shared/data next to the repository, or $PRMFAST_SHARED/data."""
from __future__ import annotations

import os
from pathlib import Path

from prmfast.data.jsonl import DataError

REPO_ROOT = Path(__file__).resolve().parents[2]


def data_dir() -> Path:
    """The default data folder: $PRMFAST_SHARED/data if set, else <repo>/../shared/data."""
    shared = os.environ.get("PRMFAST_SHARED")
    return (Path(shared) if shared else REPO_ROOT.parent / "shared") / "data"


def cache_dir() -> Path:
    """Folder for derived data (e.g. EvalPlus expected outputs): $PRMFAST_CACHE or
    ~/.cache/prmfast."""
    return Path(os.environ.get("PRMFAST_CACHE", Path.home() / ".cache" / "prmfast"))


def resolve(path: str | Path | None, relative: str) -> Path:
    """The dataset file: `path` itself if it is a file, else `relative` (or just its file name)
    under `path` (default: data_dir())."""
    base = Path(path) if path is not None else data_dir()
    if base.is_file():
        return base
    for candidate in (base / relative, base / Path(relative).name):
        if candidate.is_file():
            return candidate
    raise DataError(f"{relative} not found under {base} (pass path= to the file or its folder, "
                    f"or set PRMFAST_SHARED)")
