#!/usr/bin/env bash
# The test suite: with no arguments every test under tests/ (pyproject's testpaths); any
# arguments go to pytest (paths, -m "not slow", -k ...). TRITON_INTERPRET=1 runs the Triton
# kernels on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
export TRITON_INTERPRET=1
exec .venv/bin/python -m pytest -q -p no:cacheprovider --timeout=900 "$@"
