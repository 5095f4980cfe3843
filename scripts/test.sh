#!/usr/bin/env bash
# The whole test suite. TRITON_INTERPRET=1 runs the Triton kernels on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
export TRITON_INTERPRET=1
exec .venv/bin/python -m pytest tests -q -p no:cacheprovider --timeout=900 "$@"
