"""Experiment trackers (prmfast/trackers.py, `log.backends`): the config checks, and what a real
smoke run of every stage logged, read back with each tracker's own reader (TensorBoard's
EventAccumulator, the offline wandb run's transaction log, the MLflow file store) and compared
with the run's metrics.jsonl / probe.jsonl rows and eval.json summaries."""
import glob
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from prmfast import trackers
from prmfast.config import ConfigError, load_config
from prmfast.train import main

REPO = Path(__file__).resolve().parents[1]


def test_log_backends_are_checked(tmp_path, capsys):
    def check(value):
        trackers.check_log_config(load_config("smoke", sets=[f"log.backends={value}"]))

    check("[]")
    with pytest.raises(ConfigError, match=r"log.backends: unknown backend 'tb'; choose from"):
        check('["tb"]')
    with pytest.raises(ConfigError, match="expects a list"):
        check("tensorboard")
    missing = [name for name, module in trackers.BACKENDS.items()
               if importlib.util.find_spec(module) is None]
    for name in missing:
        with pytest.raises(ConfigError, match=rf"pip install -e '\.\[{name}\]'"):
            check(f'["{name}"]')
    installed = sorted(set(trackers.BACKENDS) - set(missing))
    if installed:
        with pytest.raises(ConfigError, match="listed twice"):
            check(json.dumps(installed[:1] * 2))
    # the CLI refuses before any work, in one line naming the key
    assert main(["sft", "--preset", "smoke", "--out", str(tmp_path / "run"),
                 "--set", 'log.backends=["tb"]']) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("config error: log.backends: unknown backend 'tb'") and "\n" not in err
    assert not (tmp_path / "run").exists()


def test_scalars_keep_finite_numbers_under_slash_joined_names():
    row = {"a": 1, "b": 2.5, "ok": True, "s": "x", "l": [1, 2], "n": None, "nan": float("nan"),
           "inf": float("inf"), "d": {"e": {"pass@1": 0.25}, "f": False}}
    assert trackers.scalars(row) == {"a": 1.0, "b": 2.5, "d/e/pass@1": 0.25}
    assert trackers.mlflow_name("by_horizon/short/pass@1") == "by_horizon/short/pass_at_1"


# --- readers: {stage: {name: {step: value}}} -----------------------------------------------

def read_tensorboard(run: Path) -> dict:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    out = {}
    for folder in sorted((run / "tb").iterdir()):
        acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
        acc.Reload()
        out[folder.name] = {tag: {e.step: e.value for e in acc.Scalars(tag)}
                            for tag in acc.Tags()["scalars"]}
    return out


def read_wandb(run: Path) -> dict:
    from wandb.proto import wandb_internal_pb2 as pb
    from wandb.sdk.internal.datastore import DataStore
    out = {}
    for file in sorted(glob.glob(str(run / "wandb" / "offline-run-*" / "run-*.wandb"))):
        store, stage, rows = DataStore(), None, []
        store.open_for_scan(file)
        while (data := store.scan_data()) is not None:
            record = pb.Record()
            record.ParseFromString(data)
            kind = record.WhichOneof("record_type")
            if kind == "run":
                assert record.run.run_group == run.name
                stage = record.run.job_type
            elif kind == "history":
                rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                             for item in record.history.item})
        logged = out.setdefault(stage, {})
        for row in rows:
            for key, value in row.items():
                if not key.startswith("_"):
                    logged.setdefault(key, {})[row["_step"]] = value
    return out


def read_mlflow(run: Path) -> dict:
    from mlflow import MlflowClient
    client = MlflowClient(tracking_uri=(run / "mlruns").resolve().as_uri())
    experiment = client.get_experiment_by_name(run.name)
    out = {}
    for found in client.search_runs([experiment.experiment_id]):
        assert found.info.status == "FINISHED"
        out[found.info.run_name] = {
            key: {m.step: m.value for m in client.get_metric_history(found.info.run_id, key)}
            for key in found.data.metrics}
    return out


READERS = {"tensorboard": read_tensorboard, "wandb": read_wandb, "mlflow": read_mlflow}


def expected_logs(run: Path) -> dict:
    """What every stage must have logged, from the run's own files: {stage: {name: {step: v}}}
    (the SFT per-step rows have no file: checked apart)."""
    def add(stage, row, step):
        for key, value in trackers.scalars(row).items():
            out.setdefault(stage, {}).setdefault(key, {})[step] = value

    out: dict = {}
    for stage in ("rl_baseline", "rl_prm"):
        for name in ("metrics.jsonl", "probe.jsonl"):
            for line in (run / stage / name).read_text().splitlines():
                row = json.loads(line)
                add(stage, {k: v for k, v in row.items() if k != "step"}, row["step"])
    prm = json.loads((run / "prm" / "eval.json").read_text())
    curves = {k: v for k, v in prm["history"].items() if isinstance(v, list)}
    for epoch in range(prm["history"]["epochs_run"]):
        add("prm", {k: v[epoch] for k, v in curves.items()}, epoch + 1)
    prm["history"] = {k: v for k, v in prm["history"].items() if k not in curves}
    add("prm", prm, prm["history"]["epochs_run"])
    add("eval", json.loads((run / "eval.json").read_text()), 0)
    sft = json.loads((run / "sft" / "eval.json").read_text())
    add("sft", sft, sft["train"]["steps"])
    return out


@pytest.mark.slow
def test_a_smoke_run_logs_every_stage_to_every_installed_tracker(tmp_path):
    pytest.importorskip("tensorboard", reason="the tensorboard extra (requirements.lock has it)")
    backends = [b for b in READERS if importlib.util.find_spec(b) is not None]
    run = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "MLFLOW_"))}
    proc = subprocess.run(
        [sys.executable, "-m", "prmfast.train", "all", "--preset", "smoke", "--out", str(run),
         "--set", f"log.backends={json.dumps(backends)}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    expected = expected_logs(run)
    sft = json.loads((run / "sft" / "eval.json").read_text())
    steps = sft["train"]["steps"]
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")      # reading the file store
    for backend in backends:
        logged = READERS[backend](run)
        name = trackers.mlflow_name if backend == "mlflow" else (lambda key: key)
        assert set(logged) == {"sft", "rl_baseline", "prm", "rl_prm", "eval"}, backend
        # SFT: a row per step (loss, lr), the last loss as eval.json records it
        assert sorted(logged["sft"]["loss"]) == list(range(1, steps + 1)), backend
        assert sorted(logged["sft"]["lr"]) == list(range(1, steps + 1)), backend
        assert logged["sft"]["loss"][steps] == pytest.approx(sft["train"]["final_loss"],
                                                             rel=1e-6)
        for stage, metrics in expected.items():
            want = {name(key): values for key, values in metrics.items()}
            got = {key: values for key, values in logged[stage].items()
                   if not (stage == "sft" and key in ("loss", "lr"))}
            assert set(got) == set(want), (backend, stage, set(got) ^ set(want))
            for key, values in want.items():
                assert set(got[key]) == set(values), (backend, stage, key)
                for step, value in values.items():       # TensorBoard stores float32
                    assert got[key][step] == pytest.approx(value, rel=1e-6, abs=1e-12), \
                        (backend, stage, key, step)
    assert (run / "tb" / "rl_baseline").is_dir()
    assert ("wandb" not in backends) or glob.glob(str(run / "wandb" / "offline-run-*"))
    assert ("mlflow" not in backends) or (run / "mlruns").is_dir()


def test_trackio_logs_into_the_run_folder(tmp_path):
    """trackio (not in requirements.lock: its releases since 0.2 need another huggingface_hub
    than the lock's; this ran with trackio 0.43.0 in a venv of its own): the rows land in
    DIR/trackio/<run folder name>.db with their steps. A fresh process: trackio reads
    TRACKIO_DIR when imported."""
    pytest.importorskip("trackio", reason="trackio is not installed (pip install -e '.[trackio]'"
                                          " in an environment without requirements.lock)")
    run = tmp_path / "runA"
    code = f"""
from pathlib import Path
from prmfast.trackers import TrackioTracker
t = TrackioTracker(Path({str(run)!r}), "rl_x", {{"seed": 0}})
for s in (1, 2, 3):
    t.log({{"reward": s * 0.5, "pass@1": 0.25}}, s)
t.close()
"""
    env = {k: v for k, v in os.environ.items() if k != "TRACKIO_DIR"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    import sqlite3
    with sqlite3.connect(run / "trackio" / "runA.db") as db:
        rows = db.execute("select run_name, step, metrics from metrics order by step").fetchall()
    assert [(name, step, json.loads(m)) for name, step, m in rows] == [
        ("rl_x", s, {"reward": s * 0.5, "pass@1": 0.25}) for s in (1, 2, 3)]
