"""load_tasks: one entry point for every dataset (docs/design.md, "Tasks, lines and labels")."""
from __future__ import annotations

from functools import partial

from prmfast.config import ConfigError
from prmfast.data import evalplus, humaneval, livecodebench, mbpp, synthetic
from prmfast.data.jsonl import DataError
from prmfast.data.task import GRADER_CHOICES, Task, tasks_by_id


def _whole_benchmark(name: str, loader, split: str, path, **kw) -> list[Task]:
    if split not in ("test", "all"):
        raise DataError(f"{name} has only a test split (asked for {split!r}): it can be evaluated "
                        f"(python -m prmfast.eval --tasks {name}) but not trained on; train on "
                        "data.name=synthetic or mbpp")
    return loader(path=path, **kw)


def _synthetic(split: str, path, **kw) -> list[Task]:
    if path is not None:
        raise ValueError("the synthetic suite is generated, it takes no path")
    return synthetic.generate(split, **kw)


LOADERS = {
    "synthetic": _synthetic,
    "humaneval": partial(_whole_benchmark, "humaneval", humaneval.load),
    "humanevalplus": partial(_whole_benchmark, "humanevalplus",
                             partial(evalplus.load, "humanevalplus")),
    "mbpp": lambda split, path, **kw: mbpp.load(path=path, split=split, **kw),
    "mbppplus": partial(_whole_benchmark, "mbppplus", partial(evalplus.load, "mbppplus")),
    "livecodebench": partial(_whole_benchmark, "livecodebench", livecodebench.load),
}
SPLIT_SIZES = {"train": "n_train", "validation": "n_val", "test": "n_test"}  # data.* keys
# Datasets whose outputs a grader compares (the others are judged by their own asserts, or, for
# the synthetic suite, always strictly).
GRADED = ("humanevalplus", "mbppplus", "livecodebench")


def load_tasks(name: str, split: str = "test", path=None, grader: str = "official",
               **kw) -> list[Task]:
    """Tasks of dataset `name` (see LOADERS). `path`: a dataset file or a folder holding it
    (default ../shared/data, or $PRMFAST_SHARED/data). `grader`: "official" compares outputs as
    the benchmark's own evaluator does (EvalPlus for humanevalplus/mbppplus, LiveCodeBench's),
    "strict" by exact type and value (a stricter reward, not the benchmark's metric); it
    changes nothing for humaneval and mbpp (their asserts decide) nor for the synthetic suite
    (always strict). Extra keywords go to the dataset's loader: synthetic: n, seed,
    min_horizon, max_horizon, n_inputs; mbpp: variant ("full"|"sanitized");
    humanevalplus/mbppplus: plus, cache_dir, workers; livecodebench: releases. Bad data (a
    malformed or empty file, duplicate task ids, an empty split) raises DataError naming the file
    and line."""
    if name not in LOADERS:
        raise ValueError(f"unknown dataset {name!r}; known: {sorted(LOADERS)}")
    if grader not in GRADER_CHOICES:
        raise ValueError(f"grader must be one of {GRADER_CHOICES}, got {grader!r}")
    if name in GRADED:
        kw["grader"] = grader
    tasks = LOADERS[name](split, path, **kw)
    tasks_by_id(tasks)                        # duplicate ids: DataError naming both lines
    return tasks


def split_tasks(cfg, split: str) -> list[Task]:
    """The tasks of `split` ("train" | "validation" | "test") that a run's config names:
    cfg.data picks the dataset and, for the synthetic suite, its size, horizons and seed. A split
    the dataset lacks or cannot fill raises DataError."""
    data = cfg.data
    if split not in SPLIT_SIZES:
        raise ValueError(f"split must be one of {sorted(SPLIT_SIZES)}, got {split!r}")
    n = getattr(data, SPLIT_SIZES[split])
    if data.name != "synthetic":
        return load_tasks(data.name, split=split, path=data.path)[:n]
    try:
        return load_tasks("synthetic", split=split, n=n, seed=data.seed,
                          min_horizon=data.min_horizon, max_horizon=data.max_horizon,
                          n_inputs=data.n_test_inputs)
    except DataError as err:
        raise DataError(f"data.{SPLIT_SIZES[split]}={n}: {err}; lower it or widen "
                        "data.min_horizon..data.max_horizon") from None


def check_data_config(cfg) -> None:
    """Value checks of the data.* keys, run by the CLI before any stage starts."""
    data = cfg.data
    if data.name not in LOADERS:
        raise ConfigError(f"data.name: {data.name!r} is not one of {sorted(LOADERS)}")
    for key in SPLIT_SIZES.values():
        if getattr(data, key) < 1:
            raise ConfigError(f"data.{key}: must be >= 1, got {getattr(data, key)}")
    if data.name == "synthetic":
        _check_synthetic(data)


def _check_synthetic(data) -> None:
    """The synthetic suite's keys: no path, horizons that give tasks, >= 2 test inputs."""
    if data.path is not None:
        others = ", ".join(sorted(set(LOADERS) - {"synthetic"}))
        raise ConfigError(f"data.path: the synthetic suite is generated and reads no file, got "
                          f"{data.path!r}; unset it, or set data.name to one of {others}")
    top = synthetic.MAX_HORIZON
    if not (1 <= data.min_horizon <= data.max_horizon <= top and data.max_horizon >= 2):
        raise ConfigError(f"data.min_horizon/max_horizon: need 1 <= min_horizon <= max_horizon "
                          f"<= {top} and max_horizon >= 2 (horizon 1 has no test tasks; longer "
                          f"pipelines almost never pass the suite's checks), got "
                          f"{data.min_horizon}, {data.max_horizon}")
    if data.n_test_inputs < 2:
        raise ConfigError(f"data.n_test_inputs: must be >= 2 (a task's outputs must differ "
                          f"across its inputs), got {data.n_test_inputs}")
