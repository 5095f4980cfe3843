"""The repository's layout against installed distributions: a command run from the repository
root (where Python puts the working directory first on sys.path) must import the installed
packages, not a top-level folder of ours that happens to share their name. transformers >= 5.25
imports Hugging Face's `kernels` distribution, and our top-level kernels/ (Triton sources) used
to be a regular package that hid it."""
import importlib.metadata
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_from_root(code: str, cwd: Path = ROOT, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=env or None)


def top_level_names() -> list[str]:
    """What `import NAME` could find in the repository root: folders and .py files."""
    names = [p.name for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith(".")]
    names += [p.stem for p in ROOT.glob("*.py")]
    return sorted(set(names) - {"prmfast"})


def test_no_top_level_folder_shadows_an_installed_distribution():
    provided = importlib.metadata.packages_distributions()
    clashes = [n for n in top_level_names() if n in provided]
    probe = ("import importlib.util, json, sys\n"
             "out = {}\n"
             f"for name in {clashes!r}:\n"
             "    spec = importlib.util.find_spec(name)\n"
             "    out[name] = [spec.origin or ''] + list(spec.submodule_search_locations or [])\n"
             "print(json.dumps(out))")
    proc = run_from_root(probe)
    assert proc.returncode == 0, proc.stderr
    for name, places in json.loads(proc.stdout).items():
        ours = [p for p in places if p and (Path(p).resolve().is_relative_to(ROOT / name)
                                            or Path(p).resolve() == ROOT / f"{name}.py")]
        assert not ours, (f"top-level {name}/ is imported from the repository root in place of "
                          f"the installed {provided[name]} ({ours})")


def test_no_top_level_folder_is_a_regular_package():
    """A regular package (with __init__.py) in the root outranks every installed one of its name,
    including a distribution that does not exist yet: only prmfast/ may be one."""
    packages = [p.parent.name for p in ROOT.glob("*/__init__.py") if p.parent.name != "prmfast"]
    assert not packages


def test_transformers_hub_kernels_and_the_cli_import_from_the_repository_root():
    try:
        importlib.metadata.distribution("kernels")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("Hugging Face's kernels distribution is not installed (requirements.lock has it)")
    proc = run_from_root(
        "import kernels, transformers.integrations.hub_kernels, prmfast.train\n"
        "import prmfast.kernels.triton.backend as b\n"
        "print(kernels.__file__); print(b.__file__)")
    assert proc.returncode == 0, proc.stderr[-2000:]
    hf_kernels, triton_backend = proc.stdout.split()
    assert not Path(hf_kernels).resolve().is_relative_to(ROOT / "kernels")
    assert Path(triton_backend).resolve() == ROOT / "kernels" / "backend.py"
    proc = subprocess.run([sys.executable, "-m", "prmfast.train", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "--preset" in proc.stdout, proc.stderr[-2000:]


@pytest.mark.slow
def test_a_wheel_ships_the_triton_sources_as_prmfast_kernels_triton(tmp_path):
    """The non-editable install: the wheel has every kernels/*.py under prmfast/kernels/triton/
    and no top-level kernels/; installed from it, prmfast.kernels.triton imports outside the
    repository."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    skip = shutil.ignore_patterns("__pycache__", "*.so", "*.egg-info")
    for name in ("prmfast", "kernels", "csrc"):
        shutil.copytree(ROOT / name, src / name, symlinks=True, ignore=skip)
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                           "--no-build-isolation", "-w", str(tmp_path / "dist"), str(src)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    wheel = next((tmp_path / "dist").glob("prmfast-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert not [n for n in names if n.startswith("kernels/")]
    for source in (ROOT / "kernels").glob("*.py"):
        assert f"prmfast/kernels/triton/{source.name}" in names, source.name
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    proc = subprocess.run(
        [sys.executable, "-c", "import prmfast, prmfast.kernels.triton.backend as b, "
         "prmfast._sandbox; print(prmfast.__file__); print(b.__file__)"],
        cwd=elsewhere, capture_output=True, text=True, timeout=300,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "TRITON_INTERPRET": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert all(Path(p).is_relative_to(site) for p in proc.stdout.split()), proc.stdout
