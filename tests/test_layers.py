"""The import contracts in .importlinter (docs/layers.md): the packages form layers (each imports
only those below it), the foundations (config, errors, runio, device, ...) import no layer, and no
package has an import cycle between its modules. The same check run on a copy of the package with
an upward import or a cycle added fails, naming the contract: the test cannot pass vacuously."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / ".importlinter"
LINT = ("import sys; from importlinter.cli import lint_imports_command; "
        "sys.exit(lint_imports_command())")


def lint(package_parent: Path) -> subprocess.CompletedProcess:
    """lint-imports with the repository's contracts on the prmfast package in package_parent."""
    return subprocess.run([sys.executable, "-c", LINT, "--no-cache", "--no-logo", str(CONFIG)],
                          cwd=package_parent, env={"PYTHONPATH": str(package_parent),
                                                   "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=120)


def test_the_import_contracts_hold():
    proc = lint(ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


@pytest.fixture(scope="module")
def copy(tmp_path_factory):
    """The package's Python sources, copied (no compiled extension: nothing is imported)."""
    root = tmp_path_factory.mktemp("src")
    shutil.copytree(ROOT / "prmfast", root / "prmfast",
                    ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.pyc"))
    return root


@pytest.mark.parametrize("module, line, broken", [
    # a lower layer importing an upper one (the RL step reading the report's metrics)
    ("rl/algos.py", "from prmfast.report import eval_table", "Layers"),
    # a foundation importing a layer
    ("runio.py", "import prmfast.models", "Foundations"),
    # two modules of one package importing each other (as prm.py and prm_frozen.py did)
    ("prm/data.py", "from prmfast.prm import frozen", "No import cycle"),
])
def test_the_contracts_fail_on_an_upward_import_or_a_cycle(copy, module, line, broken):
    path = copy / "prmfast" / module
    original = path.read_text()
    try:
        path.write_text(original + f"\n\ndef _added():\n    {line}\n")
        proc = lint(copy)
    finally:
        path.write_text(original)
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert f"{broken}" in proc.stdout and "BROKEN" in proc.stdout, proc.stdout[-3000:]
