#!/usr/bin/env bash
# Do the newest releases that pyproject.toml's ranges admit still work? Builds a throwaway
# virtual environment from the ranges (not from requirements.lock), then runs the import
# smoke (transformers' hub-kernels integration and every prmfast entry point, from the
# repository root) and the fast tests (-m "not slow"). Run it before a user meets a breaking
# release.
#
#   bash scripts/check_latest.sh               # check only; the environment is deleted after
#   bash scripts/check_latest.sh --write-lock  # and, if everything passed, rewrite requirements.lock
#   bash scripts/check_latest.sh --keep DIR    # build the environment in DIR and keep it
#
# Extra arguments after -- go to pytest (e.g. -- tests/test_packaging.py).
set -euo pipefail
cd "$(dirname "$0")/.."
python_bin=${PYTHON:-python3}
write_lock=0
env_dir=""
pytest_args=(-m "not slow")
while [ $# -gt 0 ]; do
  case "$1" in
    --write-lock) write_lock=1 ;;
    --keep) shift; env_dir=$1 ;;
    --) shift; pytest_args=("$@"); break ;;
    *) echo "check_latest: unknown argument '$1' (see the header of $0)" >&2; exit 2 ;;
  esac
  shift
done
if [ -z "$env_dir" ]; then
  env_dir=$(mktemp -d /tmp/prmfast-latest.XXXXXX)
  trap 'rm -rf "$env_dir"' EXIT
fi
echo "check_latest: building $env_dir from pyproject.toml's ranges" >&2
"$python_bin" -m venv "$env_dir"
"$env_dir/bin/python" -m pip install -q --upgrade pip setuptools wheel
# the extras CI runs the tests of (requirements.lock holds them; mlflow and trackio stay out)
extras="test,deepspeed,tensorboard,wandb"
"$env_dir/bin/python" -m pip install -q -e ".[$extras]"
"$env_dir/bin/python" -m pip check
echo "check_latest: resolved" >&2
"$env_dir/bin/python" -m pip list --format=freeze --exclude-editable |
  grep -iE '^(torch|transformers|tokenizers|numba|numpy|deepspeed|triton|kernels|safetensors)==' >&2
"$env_dir/bin/python" -c "import transformers.integrations.hub_kernels, prmfast.train, prmfast.eval, prmfast.kernels, prmfast.sandbox; print('check_latest: import smoke ok')"
TRITON_INTERPRET=1 "$env_dir/bin/python" -m pytest -q -p no:cacheprovider --timeout=900 "${pytest_args[@]}"
if [ "$write_lock" = 1 ]; then
  {
    echo "# requirements.lock: every Python package of a CPU install of prmfast with its test tools"
    echo "# (pip install -e .[$extras]), resolved for Linux x86_64 and CPython 3.11 on $(date -u +%F)."
    echo "# Installed by scripts/setup.sh (and so by CI). Refresh: bash scripts/check_latest.sh --write-lock"
    "$env_dir/bin/python" -m pip freeze --all --exclude-editable
  } > requirements.lock
  echo "check_latest: wrote requirements.lock" >&2
fi
