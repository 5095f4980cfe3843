#!/usr/bin/env bash
# Creates .venv (if missing) and installs prmfast with its test tools from the committed lock
# (requirements.lock: every Python package at an exact version, pip and setuptools included),
# building the C++ sandbox extension. Safe to rerun: it reinstalls only when the lock or the
# build inputs changed. The lock is refreshed with `bash scripts/check_latest.sh --write-lock`.
set -euo pipefail
cd "$(dirname "$0")/.."
python_bin=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python_bin" -m venv .venv
fi
stamp=.venv/.prmfast-install-stamp
inputs=$(cat requirements.lock pyproject.toml setup.py csrc/* 2>/dev/null | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$inputs" ]; then
  echo "setup: installing prmfast and the locked dependencies into .venv (first time: a few minutes)" >&2
  .venv/bin/python -m pip install -q -r requirements.lock
  # The lock already holds every dependency and the build tools: install prmfast alone, built
  # with the locked setuptools and pybind11.
  .venv/bin/python -m pip install -q --no-deps --no-build-isolation -e .
  .venv/bin/python -m pip check >&2 || { echo "setup: .venv does not match requirements.lock (pip check above)" >&2; exit 1; }
  echo "$inputs" > "$stamp"
fi
# The line inspector's browser tests (tests/test_inspector.py) load its page in Debian's chromium;
# installed when missing and apt is there (about 2 min and 480 MB; without it those tests skip).
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  echo "setup: installing chromium for the browser tests (apt-get, about 2 min)" >&2
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo -n"; fi
  { $sudo apt-get update -q && $sudo apt-get install -y -q chromium; } >&2 \
    || echo "setup: chromium not installed; the browser tests will skip" >&2
fi
