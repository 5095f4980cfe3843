"""Ecosystem conventions: YAML config files next to TOML / JSON (same checks), the console
scripts of pyproject's [project.scripts] as installed, and the core without the optional
deepspeed (an extra). (accelerate stays a dependency: prmfast imports none of it, but
transformers needs it to load .gguf files; tests/models/test_models.py loads one.)"""
import importlib.metadata
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from prmfast.config import ConfigError, config_to_dict, load_config
from prmfast.train import main

ROOT = Path(__file__).resolve().parents[1]

TOML = """seed = 3
[rl]
steps = 7
policy_lr = 2.5e-5
dual_clip = 3.0
whiten_advantages = false
[collect]
quality_ks = [2, 4]
[log]
backends = []
"""
YAML = """seed: 3
rl:
  steps: 7
  policy_lr: 2.5e-5
  dual_clip: 3.0
  whiten_advantages: false
collect:
  quality_ks: [2, 4]
log:
  backends: []
"""


def test_yaml_toml_and_json_files_give_the_same_config(tmp_path):
    files = {"c.toml": TOML, "c.yaml": YAML, "c.yml": YAML,
             "c.json": json.dumps(tomllib.loads(TOML))}
    configs = []
    for name, text in files.items():
        (tmp_path / name).write_text(text)
        configs.append(config_to_dict(load_config("smoke", file=tmp_path / name)))
    assert all(c == configs[0] for c in configs)
    assert configs[0]["rl"]["steps"] == 7 and configs[0]["rl"]["policy_lr"] == 2.5e-5
    assert configs[0]["rl"]["whiten_advantages"] is False and configs[0]["seed"] == 3
    assert configs[0] != config_to_dict(load_config("smoke"))


@pytest.mark.parametrize("text, words", [
    ("rl:\n  stepz: 3\n", ["unknown config key 'rl.stepz'", "did you mean rl.steps"]),
    ("rl:\n  steps: seven\n", ["'rl.steps' expects an integer", "'seven'"]),
    ("rl:\n  policy_lr: 1e-4\n", ["'rl.policy_lr' expects a number", "'1e-4'"]),  # YAML 1.1
    ("rl: 3\n", ["'rl' is a section"]),
    ("- 1\n- 2\n", ["must hold an object", "list"]),
    ("", ["must hold an object", "NoneType"]),
    ("rl: {steps: 3\n", ["does not parse"]),
])
def test_bad_yaml_files_fail_like_the_others(tmp_path, capsys, text, words):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config("smoke", file=path)
    for word in words:
        assert word in str(info.value)
    assert main(["sft", "--out", str(tmp_path / "run"), "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("config error: ") and err.count("\n") == 1, err
    assert not (tmp_path / "run").exists()


def declared_scripts() -> dict[str, str]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def test_console_scripts_are_installed_and_answer_help(tmp_path):
    """scripts/setup.sh installs prmfast (editable) with its console scripts next to python;
    each runs (from another folder) and answers --help."""
    try:
        importlib.metadata.distribution("prmfast")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("prmfast is not installed (bash scripts/setup.sh installs it)")
    scripts = declared_scripts()
    assert {"prmfast-train", "prmfast-eval", "prmfast-report"} <= set(scripts)
    for name in scripts:
        script = Path(sys.executable).parent / name
        assert script.is_file(), f"{script} missing: reinstall (pip install --no-deps -e .)"
        proc = subprocess.run([str(script), "--help"], capture_output=True, text=True,
                              timeout=300, cwd=tmp_path)
        assert proc.returncode == 0, (name, proc.stderr[-2000:])
        assert proc.stdout.startswith("usage: ") and "--help" in proc.stdout, name


BLOCK = "import sys\nsys.modules['deepspeed'] = None\n"


def test_the_core_runs_without_deepspeed(tmp_path):
    """With deepspeed made unimportable (importlib.util.find_spec says None): the CLI and the
    stages import, a tiny model saves and loads, and rl.engine=deepspeed is refused naming the
    extra."""
    code = BLOCK + f"""
import importlib.util, torch
assert importlib.util.find_spec('deepspeed') is None
import prmfast.train, prmfast.sft, prmfast.rl.stage, prmfast.rl.trainer, prmfast.distributed
import prmfast.prm, prmfast.eval, prmfast.report, prmfast.labeling.collect
from prmfast.config import ConfigError, load_config
from prmfast.models import build_tiny_model, load_policy, save_policy, train_tokenizer
from prmfast.rl.stage import check_rl_config
tok = train_tokenizer(['def f(x):\\n    return x\\n'] * 10, 300, {str(tmp_path / 'tok')!r})
cfg = load_config('smoke')
model = build_tiny_model(tok, cfg.model)
save_policy(model, tok, {str(tmp_path / 'm')!r})
again, _ = load_policy({str(tmp_path / 'm')!r}, 'float32', device=torch.device('cpu'))
ids = torch.tensor([[1, 2, 3]])
assert torch.equal(model(ids).logits, again(ids).logits)
try:
    check_rl_config(load_config('smoke', sets=['rl.engine=deepspeed', 'model.device=cpu']))
except ConfigError as exc:
    print('refused:', exc)
assert sys.modules['deepspeed'] is None
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "refused: rl.engine: 'deepspeed' needs the deepspeed package" in proc.stdout
    assert "pip install -e '.[deepspeed]'" in proc.stdout


def test_the_deepspeed_tests_skip_cleanly_without_it(tmp_path):
    """The suite's deepspeed tests, run with deepspeed unimportable: skipped, none failing."""
    (tmp_path / "sitecustomize.py").write_text(BLOCK)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "deepspeed",
         "tests/test_device.py", "tests/scale/test_distributed_on_cpu.py", "-rs"],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert " skipped" in proc.stdout and " failed" not in proc.stdout, proc.stdout[-3000:]
