"""scripts/policy_flips.py refuses a folder that holds no model, naming it."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_policy_flips_names_a_missing_model_folder(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "policy_flips.py"),
                           str(tmp_path / "nope"), "--sft", str(tmp_path)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 2 and f"no model folder at {tmp_path / 'nope'}" in proc.stderr
