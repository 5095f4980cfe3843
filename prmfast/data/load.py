"""load_tasks: one entry point for every dataset (DESIGN 3.3)."""
from __future__ import annotations

from functools import partial

from prmfast.data import evalplus, humaneval, livecodebench, mbpp, synthetic
from prmfast.data.task import Task


def _whole_benchmark(loader, split: str, path, **kw) -> list[Task]:
    if split not in ("test", "all"):
        raise ValueError(f"this benchmark has one evaluation set: split must be 'test' or 'all', got {split!r}")
    return loader(path=path, **kw)


def _synthetic(split: str, path, **kw) -> list[Task]:
    if path is not None:
        raise ValueError("the synthetic suite is generated, it takes no path")
    return synthetic.generate(split, **kw)


LOADERS = {
    "synthetic": _synthetic,
    "humaneval": partial(_whole_benchmark, humaneval.load),
    "humanevalplus": partial(_whole_benchmark, partial(evalplus.load, "humanevalplus")),
    "mbpp": lambda split, path, **kw: mbpp.load(path=path, split=split, **kw),
    "mbppplus": partial(_whole_benchmark, partial(evalplus.load, "mbppplus")),
    "livecodebench": partial(_whole_benchmark, livecodebench.load),
}


def load_tasks(name: str, split: str = "test", path=None, **kw) -> list[Task]:
    """Tasks of dataset `name` (see LOADERS). `path`: a dataset file or a folder holding it
    (default ../shared/data, or $PRMFAST_SHARED/data). Extra keywords go to the dataset's loader:
    synthetic: n, seed, min_horizon, max_horizon, n_inputs; mbpp: variant ("full"|"sanitized");
    humanevalplus/mbppplus: plus, cache_dir, workers; livecodebench: releases."""
    if name not in LOADERS:
        raise ValueError(f"unknown dataset {name!r}; known: {sorted(LOADERS)}")
    return LOADERS[name](split, path, **kw)


def split_tasks(cfg, split: str) -> list[Task]:
    """The tasks of `split` ("train" | "validation" | "test") that a run's config names:
    cfg.data picks the dataset and, for the synthetic suite, its size, horizons and seed."""
    data = cfg.data
    sizes = {"train": data.n_train, "validation": data.n_val, "test": data.n_test}
    if split not in sizes:
        raise ValueError(f"split must be one of {sorted(sizes)}, got {split!r}")
    if data.name != "synthetic":
        return load_tasks(data.name, split=split, path=data.path)[:sizes[split]]
    return load_tasks("synthetic", split=split, n=sizes[split], seed=data.seed,
                      min_horizon=data.min_horizon, max_horizon=data.max_horizon,
                      n_inputs=data.n_test_inputs)


def check_data_config(cfg) -> None:
    """Value checks of the data.* keys, run by the CLI before any stage starts."""
    from prmfast.config import ConfigError
    data = cfg.data
    if data.name not in LOADERS:
        raise ConfigError(f"data.name: {data.name!r} is not one of {sorted(LOADERS)}")
    if data.name == "synthetic" and not 1 <= data.min_horizon <= data.max_horizon:
        raise ConfigError(f"data.min_horizon/max_horizon: need 1 <= min <= max, got "
                          f"{data.min_horizon}, {data.max_horizon}")
    for key in ("n_train", "n_val", "n_test", "n_test_inputs"):
        if getattr(data, key) < 1:
            raise ConfigError(f"data.{key}: must be >= 1, got {getattr(data, key)}")
