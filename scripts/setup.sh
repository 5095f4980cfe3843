#!/usr/bin/env bash
# Creates .venv (if missing) and installs prmfast with its test tools, building the C++
# sandbox extension. Safe to rerun: it reinstalls only when the build inputs changed.
set -euo pipefail
cd "$(dirname "$0")/.."
python_bin=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python_bin" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip setuptools wheel
fi
stamp=.venv/.prmfast-install-stamp
inputs=$(cat pyproject.toml setup.py csrc/* 2>/dev/null | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$inputs" ]; then
  echo "setup: installing prmfast and its dependencies into .venv (first time: a few minutes)" >&2
  .venv/bin/python -m pip install -q -e ".[test]"
  echo "$inputs" > "$stamp"
fi
