"""Fixtures for the prmfast.data tests."""
import pytest


@pytest.fixture(scope="module")
def sandbox():
    """A small sandbox; skips when the sandbox is not built."""
    sandbox_module = pytest.importorskip("prmfast.sandbox")
    if not hasattr(sandbox_module, "Sandbox"):
        pytest.skip("prmfast.sandbox.Sandbox is not available")
    sb = sandbox_module.Sandbox(workers=2, timeout_s=20.0)
    yield sb
    sb.close()
