"""Experiment trackers (`log.backends`): every metric row the stages write and their evaluation
summaries, logged with the row's step to TensorBoard, Weights & Biases (offline), MLflow (a local
file store) or trackio. Their files stay in the run folder:

    DIR/tb/<stage>/          TensorBoard event files        tensorboard --logdir DIR/tb
    DIR/wandb/offline-run-*  wandb offline runs             wandb sync DIR/wandb/offline-run-*
    DIR/mlruns/              MLflow file store              mlflow ui --backend-store-uri DIR/mlruns
    DIR/trackio/             trackio's database (TRACKIO_DIR, read when trackio is imported)

Each backend opens one tracker run per stage, named after it (sft, rl_baseline, prm, eval, ...)
and grouped by the run folder's name (wandb group, MLflow experiment, trackio project), so that
one stage's curves from several run folders sit side by side. A row's nested keys are joined by
"/" (`by_horizon/short/pass@1`); only finite numbers are logged (no booleans, strings, lists,
NaN). Only the main process logs (rank 0 under torchrun). Stages call log(); the CLI calls
close_all() when a stage ends. A resumed stage opens a new tracker run holding the steps it runs.
"""
from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prmfast.config import Config, ConfigError, config_to_dict, flatten

# backend -> the module it needs; the pip extra of the same name installs it
BACKENDS = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow",
            "trackio": "trackio"}


def check_log_config(cfg: Config) -> None:
    """log.backends: known names, each once, each installed (ConfigError naming the extra)."""
    seen = set()
    for name in cfg.log.backends:
        if name not in BACKENDS:
            raise ConfigError(f"log.backends: unknown backend {name!r}; choose from "
                              f"{sorted(BACKENDS)}")
        if name in seen:
            raise ConfigError(f"log.backends: {name!r} is listed twice")
        seen.add(name)
        if importlib.util.find_spec(BACKENDS[name]) is None:
            raise ConfigError(f"log.backends: {name!r} needs the {BACKENDS[name]} package, which "
                              f"is not installed: pip install -e '.[{name}]' (or "
                              f"pip install 'prmfast[{name}]'), or drop it from log.backends")


def scalars(row: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The finite numbers of a (nested) row as {"a/b": value}; booleans and the rest left out."""
    out: dict[str, float] = {}
    for key, value in row.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(scalars(value, name + "/"))
        elif (isinstance(value, (int, float)) and not isinstance(value, bool)
              and math.isfinite(value)):
            out[name] = float(value)
    return out


class Tracker:
    """One backend's tracker run for one stage of a run folder."""

    def log(self, metrics: dict[str, float], step: int) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class TensorBoardTracker(Tracker):
    """Scalars in DIR/tb/<stage>/events.out.tfevents.*."""

    def __init__(self, run_dir: Path, stage: str, config: dict):
        from torch.utils.tensorboard import SummaryWriter
        self.writer = SummaryWriter(log_dir=str(run_dir / "tb" / stage))

    def log(self, metrics: dict[str, float], step: int) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        self.writer.close()


class WandbTracker(Tracker):
    """A wandb run in DIR/wandb/, offline unless WANDB_MODE says otherwise; config = the run's."""

    def __init__(self, run_dir: Path, stage: str, config: dict):
        import wandb
        self.run = wandb.init(project="prmfast", group=run_dir.name, name=f"{run_dir.name}/{stage}",
                              job_type=stage, dir=str(run_dir), config=config,
                              mode=os.environ.get("WANDB_MODE", "offline"), reinit="create_new",
                              settings=wandb.Settings(console="off", silent=True))

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.run.log(metrics, step=step)

    def close(self) -> None:
        self.run.finish()


class MLflowTracker(Tracker):
    """An MLflow run (experiment: the run folder's name) with the config as params, in the file
    store DIR/mlruns, or at MLFLOW_TRACKING_URI when set. MLflow 3 refuses a file store unless
    MLFLOW_ALLOW_FILE_STORE=true, which this sets when unset. MLflow names allow [\\w-. /]:
    "pass@1" is logged as "pass_at_1"."""

    def __init__(self, run_dir: Path, stage: str, config: dict):
        from mlflow import MlflowClient
        from mlflow.entities import Param
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        uri = os.environ.get("MLFLOW_TRACKING_URI") or (run_dir / "mlruns").resolve().as_uri()
        self.client = MlflowClient(tracking_uri=uri)
        experiment = self.client.get_experiment_by_name(run_dir.name)
        experiment_id = (experiment.experiment_id if experiment is not None
                         else self.client.create_experiment(run_dir.name))
        self.run_id = self.client.create_run(experiment_id, run_name=stage).info.run_id
        params = [Param(mlflow_name(k), str(v)) for k, v in flatten(config).items()]
        for start in range(0, len(params), 100):           # MLflow's batch limit for params
            self.client.log_batch(self.run_id, params=params[start:start + 100])

    def log(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric
        now = int(time.time() * 1000)
        batch = [Metric(mlflow_name(k), v, now, step) for k, v in metrics.items()]
        for start in range(0, len(batch), 1000):           # MLflow's batch limit for metrics
            self.client.log_batch(self.run_id, metrics=batch[start:start + 1000])

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


def mlflow_name(key: str) -> str:
    """A metric or param name MLflow accepts: "@" -> "_at_", other characters outside
    [A-Za-z0-9_-. /] -> "_"."""
    return re.sub(r"[^\w\-. /]", "_", key.replace("@", "_at_"))


class TrackioTracker(Tracker):
    """A trackio run (project: the run folder's name) in DIR/trackio/ when TRACKIO_DIR is unset
    before trackio's first import; trackio keeps one current run per process."""

    def __init__(self, run_dir: Path, stage: str, config: dict):
        os.environ.setdefault("TRACKIO_DIR", str((run_dir / "trackio").resolve()))
        import trackio
        self.run = trackio.init(project=run_dir.name, name=stage, config=config)

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.run.log(metrics, step=step)

    def close(self) -> None:
        self.run.finish()


TRACKERS: dict[str, type[Tracker]] = {"tensorboard": TensorBoardTracker, "wandb": WandbTracker,
                                      "mlflow": MLflowTracker, "trackio": TrackioTracker}
# stage -> (its summary, the DONE file written after it), relative to the run folder
SUMMARIES = {"sft": ("sft/eval.json", "sft/DONE"), "prm": ("prm/eval.json", "prm/DONE"),
             "eval": ("eval.json", "eval/DONE")}
_open: dict[tuple[Path, str], list[Tracker]] = {}      # (run folder, stage) -> its trackers
_last_step: dict[tuple[Path, str], int] = {}           # the last step logged to them


def log(cfg: Config, run_dir: str | Path, stage: str, row: Mapping[str, Any],
        step: int | None = None) -> None:
    """Log row's finite numbers (scalars) at `step` (default: row["step"]) to every backend of
    cfg.log.backends, opening the stage's tracker runs on first use. No-op without backends and
    on ranks other than the main one."""
    if not cfg.log.backends:
        return
    from prmfast.distributed import is_main
    if not is_main():
        return
    key = (Path(run_dir).resolve(), stage)
    if key not in _open:
        config = config_to_dict(cfg)
        _open[key] = [TRACKERS[name](Path(run_dir), stage, config) for name in cfg.log.backends]
    step = int(row["step"] if step is None else step)
    metrics = scalars({k: v for k, v in row.items() if k != "step"})
    for tracker in _open[key]:
        tracker.log(metrics, step)
    _last_step[key] = step


def summary_pending(run_dir: str | Path, stage: str) -> bool:
    """Whether `stage` has a summary (SUMMARIES) that is not written yet: run before the stage, so
    that log_summary after it logs the summaries of stages that ran, not of skipped ones."""
    return stage in SUMMARIES and not (Path(run_dir) / SUMMARIES[stage][1]).exists()


def log_summary(cfg: Config, run_dir: str | Path, stage: str) -> None:
    """Log a finished stage's summary file (SUMMARIES): the lists under "history" as rows at
    steps 1..n (the PRM's losses and AUCs per epoch; a frozen-backbone PRM's per ridge strength),
    then every other number at the stage's last logged step (0 when it logged none)."""
    if not cfg.log.backends or stage not in SUMMARIES:
        return
    path = Path(run_dir) / SUMMARIES[stage][0]
    summary = json.loads(path.read_text())
    history = summary.get("history") or {}
    curves = {k: v for k, v in history.items() if isinstance(v, list) and k != "ridge"}
    for epoch in range(max(map(len, curves.values()), default=0)):
        log(cfg, run_dir, stage, {k: v[epoch] for k, v in curves.items() if epoch < len(v)},
            step=epoch + 1)
    rest = {k: v for k, v in summary.items() if k != "history"}
    rest["history"] = {k: v for k, v in history.items() if k not in curves}
    log(cfg, run_dir, stage, rest, step=_last_step.get((Path(run_dir).resolve(), stage), 0))


def close_all() -> None:
    """Close (flush, finish) every open tracker run."""
    while _open:
        key, trackers = _open.popitem()
        _last_step.pop(key, None)
        for tracker in trackers:
            tracker.close()
