"""Fixtures for the prmfast.data tests.

Reference validation runs on a deterministic sample by default; PRMFAST_FULL_DATA_TESTS=1 runs
every task (minutes; builds the EvalPlus expected-output caches in $PRMFAST_CACHE on first use).
"""
import os

import pytest

FULL = os.environ.get("PRMFAST_FULL_DATA_TESTS") == "1"
SANDBOX_TIMEOUT_S = 60.0  # generous: the machine is shared and loaded


@pytest.fixture(scope="module")
def sandbox():
    """A small sandbox; skips when the sandbox is not built."""
    sandbox_module = pytest.importorskip("prmfast.sandbox")
    if not hasattr(sandbox_module, "Sandbox"):
        pytest.skip("prmfast.sandbox.Sandbox is not available")
    sb = sandbox_module.Sandbox(workers=2, timeout_s=SANDBOX_TIMEOUT_S)
    yield sb
    sb.close()
