"""Configuration: one nested dataclass per stage, presets, file and `--set key=value` overrides.

Every option has a default here; a preset is a small dict of dotted overrides on top of the
defaults; a config file (JSON, TOML or YAML) and `--set` overrides are applied after the preset.
Unknown keys, values of the wrong type and non-finite numbers fail at start with a message
naming the key. Value ranges (RANGES) and the model / SFT rules are checked by the check_*
functions here, which the CLI runs before any work with the stages' own checks.
One module on purpose, though past 450 lines: every default of every stage lives here and only
here (docs/layers.md), next to the checks of its values.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import math
import tomllib
import types
import typing
from dataclasses import dataclass, field
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml


@dataclass
class DataConfig:
    """Task suite. `name` is a load_tasks name; the synthetic fields apply to "synthetic" only."""
    name: str = "synthetic"
    path: str | None = None
    n_train: int = 2000
    n_val: int = 100
    n_test: int = 200
    seed: int = 0                     # the generated suite's seed (fixed across run seeds)
    min_horizon: int = 1
    max_horizon: int = 8
    n_test_inputs: int = 8


@dataclass
class ModelConfig:
    """Policy backbone: "tiny" builds a Llama-style model from the fields below and trains a
    byte-level BPE tokenizer on the suite; anything else is a local HF folder or .gguf file.
    `device` is where every stage puts its models (policy, reference, critic, PRM) and tensors:
    auto = cuda (cuda:LOCAL_RANK under a launcher) when CUDA is available, else cpu."""
    init: str = "tiny"
    vocab_size: int = 512
    hidden_size: int = 96
    num_layers: int = 3
    num_heads: int = 3
    intermediate_size: int = 256
    max_position: int = 512
    dtype: str = "float32"
    device: str = "auto"              # auto | cpu | cuda | cuda:N (prmfast/device.py)


@dataclass
class SamplingConfig:
    """Sampling used by rollouts during RL and labelling."""
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 160
    batch_size: int = 64


@dataclass
class SFTConfig:
    """Defaults tuned on the synthetic suite so the SFT policy leaves room for RL (pass@1 about
    0.27 overall: short 0.48, medium 0.29, long 0.12; see docs/training.md)."""
    epochs: float = 8.0
    batch_size: int = 32
    lr: float = 3e-3
    warmup_steps: int = 20
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    checkpoint_every: int = 100
    eval_samples: int = 10
    eval_temperature: float = 0.2


@dataclass
class RLConfig:
    """PPO. reward: sparse | partial | dense | oracle; critic_init: policy | prm."""
    reward: str = "sparse"
    critic_init: str = "policy"
    steps: int = 16
    prompts_per_step: int = 8
    samples_per_prompt: int = 4
    ppo_epochs: int = 2
    minibatches: int = 2
    minibatch_order: str = "prompt"   # prompt | sequence (docs/rl.md, "Minibatches")
    policy_lr: float = 1e-4
    critic_lr: float = 5e-4
    lr_schedule: str = "constant"
    lr_warmup_steps: int = 0
    clip_low: float = 0.2
    clip_high: float = 0.2
    dual_clip: float | None = None
    value_clip: float = 0.2
    vf_coef: float = 0.5
    kl_coef: float = 0.02
    entropy_coef: float = 0.0
    gamma: float = 1.0
    lam: float = 0.95
    whiten_advantages: bool = True
    outcome_baseline: str = "none"    # none | prompt_mean (docs/rl.md, "Baselines")
    freeze_embeddings: bool = False   # the policy's token embeddings (and a tied LM head) frozen
    max_grad_norm: float = 1.0
    critic_warmup_steps: int = 0
    probe_every: int = 8              # iterations between probes of pass@1 at eval.temperature
    probe_tasks: int = 32             # training and validation tasks probed (DIR/rl_*/probe.jsonl)
    prm_coef_fail: float = 0.25
    prm_coef_pass: float = 0.025
    normalize_by_lines: bool = True
    neutral_comments: bool = True
    num_checkpoints: int = 4
    save_every: int = 5
    engine: str = "none"              # none | ddp | deepspeed (under torchrun: docs/scale.md)
    rollout_backend: str = "hf"       # hf (in-process generate) | vllm (worker process, docs/scale.md)
    vllm_python: str | None = None    # the interpreter that has vllm (None: this one)
    vllm_engine: str = "vllm"         # vllm | hf (the worker's CPU engine, for tests)
    vllm_gpu_memory_utilization: float = 0.35
    deepspeed_config: str = "configs/deepspeed/zero2.json"    # rl.engine=deepspeed: ZeRO-2 or -3


@dataclass
class CollectConfig:
    """PRM data collection by binary search (paper Algorithm 1). K defaults to the paper's 20;
    the "default" preset (the embedded 2-core CPU run) sets K = 8, and the quality study
    measures what K costs."""
    num_checkpoints: int = 4
    num_prompts: int = 64
    responses_per_prompt: int = 2
    k: int = 20
    temperature: float = 1.0
    quality_sample: int = 16
    quality_ks: list[int] = field(default_factory=lambda: [4, 8, 20])
    first_wave: int = 4               # completions per probe in the first wave (then doubling)
    chunk_size: int = 64              # responses labelled together (and appended) at a time


@dataclass
class PRMConfig:
    """PRM training. selection: full | revised_only | failed_only | passed_and_revised."""
    selection: str = "revised_only"
    init: str = "sft"
    epochs: int = 8
    batch_size: int = 32
    lr: float = 1e-3
    patience: int = 2
    val_fraction: float = 0.1
    rerank_n: int = 8
    rerank_tasks: int = 200           # test tasks sampled for the best-of-N reranking check
    rerank_temperature: float = 1.0
    neutral_comments: bool = True     # False: comment lines take the surrounding label (hack)
    # engineering choices the paper leaves open (docs/prm.md, "Training"):
    class_balance: bool = False       # +1 and -1 lines weigh equally in the MSE
    response_norm: bool = False       # every response weighs equally in the MSE
    head_lr: float | None = None      # the head's learning rate (None: lr)
    early_stop: str = "loss"          # loss (val. MSE) | auc (val. line AUC) | within_task
    # a frozen pretrained backbone with its own tokenizer instead (prmfast/prm/frozen.py):
    pretrained: str | None = None     # HF causal-LM folder or .gguf file (null: fine-tune prm.init)
    ridge: list[float] = field(default_factory=lambda: [1.0, 10.0, 100.0, 1000.0])
    layer: int | None = None          # read the backbone's layer 1..n (null: its last); cheaper


@dataclass
class EvalConfig:
    """Final evaluation (eval stage): pass@1 from max(samples, max_k) completions per task at
    `temperature`, best-of-K for K <= max_k, on the first max_tasks test tasks (null: all).
    The report's line inspector (prmfast.inspector) samples inspect_samples responses from every
    model on the first inspect_tasks test tasks at `temperature` (0: none)."""
    samples: int = 10
    temperature: float = 0.2
    max_k: int = 10
    length_threshold: int = 100
    max_tasks: int | None = 60
    inspect_tasks: int = 6
    inspect_samples: int = 2


@dataclass
class SandboxConfig:
    workers: int | None = None
    timeout_s: float = 5.0
    memory_mb: int = 1024


@dataclass
class LogConfig:
    """Experiment trackers every stage logs its metric rows and evaluation summaries to
    (prmfast/trackers.py): any of tensorboard, wandb (offline), mlflow (local file store),
    trackio; their files stay in the run folder. Each is an optional extra
    (pip install -e '.[tensorboard]')."""
    backends: list[str] = field(default_factory=list)


@dataclass
class Config:
    seed: int = 0
    out: str | None = None
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    rl: RLConfig = field(default_factory=RLConfig)
    collect: CollectConfig = field(default_factory=CollectConfig)
    prm: PRMConfig = field(default_factory=PRMConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    log: LogConfig = field(default_factory=LogConfig)


PRESETS: dict[str, dict[str, Any]] = {
    # the embedded default (a 2-core CPU in minutes): best-of-8 probes instead of the paper's 20
    "default": {
        "collect.k": 8,
        "collect.quality_ks": [2, 4, 8],
    },
    "smoke": {
        "data.n_train": 200,
        "data.n_val": 16,
        "data.n_test": 16,
        "data.max_horizon": 4,
        "model.hidden_size": 64,
        "model.num_layers": 2,
        "model.num_heads": 2,
        "model.intermediate_size": 128,
        "sampling.max_new_tokens": 96,
        "sft.epochs": 1.0,
        "sft.eval_samples": 2,
        "rl.steps": 2,
        "rl.prompts_per_step": 4,
        "rl.samples_per_prompt": 2,
        "rl.ppo_epochs": 1,
        "rl.minibatches": 1,
        "rl.num_checkpoints": 2,
        "rl.probe_tasks": 4,
        "collect.num_checkpoints": 2,
        "collect.num_prompts": 4,
        "collect.responses_per_prompt": 1,
        "collect.k": 4,
        "collect.quality_sample": 4,
        "collect.quality_ks": [2, 4],
        "prm.epochs": 1,
        "prm.selection": "full",
        "prm.rerank_n": 2,
        "eval.samples": 2,
        "eval.max_k": 2,
        "eval.max_tasks": 8,
    },
    # scripts/ablation.py: 3 seeds x (SFT, 7 RL runs, collect, 2 PRMs, 9 evaluations) in about
    # an hour on 2 CPU cores
    "ablation": {
        "data.n_test": 48,
        "sampling.max_new_tokens": 128,
        "rl.steps": 10,
        "rl.prompts_per_step": 8,
        "rl.samples_per_prompt": 4,
        "rl.num_checkpoints": 2,
        "collect.num_checkpoints": 2,
        "collect.num_prompts": 96,
        "collect.responses_per_prompt": 2,
        "collect.k": 8,
        "collect.quality_sample": 8,
        "collect.quality_ks": [4, 8],
        "prm.epochs": 4,
        "prm.rerank_n": 4,
        "prm.rerank_tasks": 24,
        "eval.samples": 4,
        "eval.max_k": 4,
        "eval.max_tasks": 48,
    },
    # scripts/ablation.py --preset paper: the paper's Table 1 with power (issue 17): every test
    # task of 500 x 10 samples at temperature 0.2, RL runs of 48 x 64 responses; the default
    # preset's collection (collect.k 8) and PRM
    "paper": {
        "data.n_test": 500,
        "collect.k": 8,
        "collect.quality_ks": [2, 4, 8],
        "rl.steps": 48,
        "rl.prompts_per_step": 16,
        "rl.samples_per_prompt": 4,
        "rl.probe_every": 0,
        "eval.samples": 10,
        "eval.max_k": 10,
        "eval.max_tasks": None,
    },
}


class ConfigError(ValueError):
    """A config key or value that does not fit the schema; the message names the key."""


def load_config(preset: str = "default", file: str | Path | None = None,
                sets: list[str] | None = None) -> Config:
    """Defaults, then the preset, then the file (JSON, TOML or YAML: by its suffix, .toml /
    .yaml / .yml, else JSON), then `key=value` overrides."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    cfg = Config()
    apply_overrides(cfg, PRESETS[preset], source=f"preset {preset!r}")
    if file is not None:
        apply_overrides(cfg, flatten(_read_config_file(Path(file))), source=str(file))
    for item in sets or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. rl.steps=10")
        key, raw = item.split("=", 1)
        apply_overrides(cfg, {key.strip(): _parse_cli_value(raw)}, source="--set")
    return cfg


def apply_overrides(cfg: Config, overrides: dict[str, Any], *, source: str) -> None:
    """Set dotted keys (e.g. "rl.steps") on cfg in place, checking names and types."""
    for key, value in overrides.items():
        obj, name = _resolve(cfg, key, source)
        hint = typing.get_type_hints(type(obj))[name]
        setattr(obj, name, _coerce(value, hint, key, source))


def config_to_dict(cfg: Config) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def save_config(path: str | Path, data: dict[str, Any]) -> None:
    """Write a config record (config_to_dict) as JSON, atomically: a run folder's config.json is
    rewritten by every command on it, and a torn one would refuse the folder's resume."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def config_from_dict(data: dict[str, Any]) -> Config:
    """Inverse of config_to_dict (used to reload the config saved in a run folder)."""
    cfg = Config()
    apply_overrides(cfg, flatten(data), source="saved config")
    return cfg


# --- value checks (the CLI runs them before any work; types are checked on assignment) --------

RULES: dict[str, Callable[[float], bool]] = {
    ">= 0": lambda v: v >= 0,
    ">= 1": lambda v: v >= 1,
    "> 0": lambda v: v > 0,
    "in [0, 1]": lambda v: 0 <= v <= 1,
    "in (0, 1]": lambda v: 0 < v <= 1,
    "in (0, 86400]": lambda v: 0 < v <= 86400,       # the sandbox's limit: one day
}
# key -> a RULES name; a null value of an optional key passes. Stage checks add the choices and
# cross-key rules (check_model_config, check_sft_config, check_rl_config in prmfast.rl.stage, ...).
RANGES: dict[str, str] = {
    **dict.fromkeys(("model.vocab_size", "model.hidden_size", "model.num_layers", "model.num_heads",
                     "model.intermediate_size", "model.max_position"), ">= 1"),
    "sampling.temperature": ">= 0",                  # 0: greedy (not for RL, check_rl_config)
    "sampling.top_p": "in (0, 1]",
    "sampling.max_new_tokens": ">= 1",
    "sampling.batch_size": ">= 1",
    "sft.epochs": "> 0",
    "sft.batch_size": ">= 1",
    "sft.lr": "> 0",
    "sft.warmup_steps": ">= 0",
    "sft.weight_decay": ">= 0",
    "sft.max_grad_norm": "> 0",
    "sft.checkpoint_every": ">= 1",
    "sft.eval_samples": ">= 1",
    "sft.eval_temperature": ">= 0",
    **dict.fromkeys(("rl.steps", "rl.prompts_per_step", "rl.samples_per_prompt", "rl.ppo_epochs",
                     "rl.minibatches", "rl.save_every", "rl.probe_tasks"), ">= 1"),
    **dict.fromkeys(("rl.clip_low", "rl.clip_high", "rl.value_clip", "rl.kl_coef", "rl.policy_lr",
                     "rl.critic_lr", "rl.max_grad_norm", "rl.entropy_coef", "rl.vf_coef",
                     "rl.critic_warmup_steps", "rl.num_checkpoints", "rl.lr_warmup_steps",
                     "rl.probe_every",
                     "rl.prm_coef_fail", "rl.prm_coef_pass"), ">= 0"),
    "rl.gamma": "in [0, 1]",
    "rl.lam": "in [0, 1]",
    "rl.vllm_gpu_memory_utilization": "in (0, 1]",
    "collect.temperature": "> 0",                    # best-of-K probes need distinct samples
    "prm.lr": "> 0",
    "prm.head_lr": "> 0",
    "prm.patience": ">= 0",
    "prm.rerank_temperature": ">= 0",
    "eval.samples": ">= 1",
    "eval.temperature": ">= 0",
    "eval.max_k": ">= 1",
    "eval.length_threshold": ">= 0",
    "eval.max_tasks": ">= 1",
    "eval.inspect_tasks": ">= 0",
    "eval.inspect_samples": ">= 1",
    "sandbox.workers": ">= 1",
    "sandbox.timeout_s": "in (0, 86400]",
    "sandbox.memory_mb": ">= 1",
}
DTYPES = ("float32", "bfloat16", "float16")


def check_ranges(cfg: Config, *sections: str) -> None:
    """Check the RANGES keys of the given sections (e.g. "sft"); raises ConfigError naming the
    key. The CLI runs it on every section its stages read."""
    values = flatten(config_to_dict(cfg))
    for key, rule in RANGES.items():
        value = values[key]
        if key.split(".")[0] in sections and value is not None and not RULES[rule](value):
            raise ConfigError(f"{key}: must be {rule}{_or_null(cfg, key)}, got {value!r}")


def check_model_config(cfg: Config) -> None:
    """model.dtype, and the tiny model's shape: whole, even heads; a context that holds a prompt
    and a whole response. (The CLI checks RANGES first.)"""
    m = cfg.model
    if m.dtype not in DTYPES:
        raise ConfigError(f"model.dtype: {m.dtype!r} is not one of {list(DTYPES)}")
    if m.init != "tiny":
        return                                        # the sizes are the model folder's
    if m.hidden_size % m.num_heads or (m.hidden_size // m.num_heads) % 2:
        raise ConfigError(f"model.num_heads: model.hidden_size / model.num_heads must be a "
                          f"whole, even head size (rotary embeddings), got {m.hidden_size} / "
                          f"{m.num_heads}")
    if m.max_position <= cfg.sampling.max_new_tokens:
        raise ConfigError(f"model.max_position: must be > sampling.max_new_tokens "
                          f"({cfg.sampling.max_new_tokens}) so that a prompt and a whole response "
                          f"fit the context, got {m.max_position}")


def check_sft_config(cfg: Config) -> None:
    """model.init, the model the SFT stage starts from: "tiny", a model folder or a .gguf file."""
    path = Path(cfg.model.init)
    is_model = path.is_dir() or (path.suffix == ".gguf" and path.is_file())
    if cfg.model.init != "tiny" and not is_model:
        raise ConfigError(f"model.init: {cfg.model.init!r} is neither 'tiny', a model folder nor "
                          "a .gguf file")


def _or_null(cfg: Config, key: str) -> str:
    """" (or null)" for an optional key, else ""."""
    obj, name = _resolve(cfg, key, "RANGES")
    optional = type(None) in typing.get_args(typing.get_type_hints(type(obj))[name])
    return " (or null)" if optional else ""


def _resolve(cfg: Config, key: str, source: str) -> tuple[Any, str]:
    parts = key.split(".")
    obj: Any = cfg
    for depth, part in enumerate(parts):
        names = [f.name for f in dataclasses.fields(obj)]
        if part not in names:
            prefix = ".".join(parts[:depth])
            known = [f"{prefix}.{n}" if prefix else n for n in names]
            close = difflib.get_close_matches(key, known, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(known)}"
            raise ConfigError(f"{source}: unknown config key {key!r}{hint}")
        if depth == len(parts) - 1:
            if dataclasses.is_dataclass(getattr(obj, part)):
                raise ConfigError(f"{source}: {key!r} is a section; set one of its keys")
            return obj, part
        obj = getattr(obj, part)
        if not dataclasses.is_dataclass(obj):
            raise ConfigError(f"{source}: {'.'.join(parts[:depth + 1])!r} is not a section")
    raise ConfigError(f"{source}: empty config key")


def _coerce(value: Any, hint: Any, key: str, source: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, key, source)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{source}: bad value for {key!r}")
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: {key!r} expects a list, got {value!r}")
        return [_coerce(v, args[0], key, source) for v in value]
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{source}: {key!r} expects true/false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{source}: {key!r} expects an integer, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                number = float(value)
            except OverflowError:                   # an int past the float range
                number = math.inf
            if math.isfinite(number):
                return number
            raise ConfigError(f"{source}: {key!r} expects a finite number, got {value!r}")
        raise ConfigError(f"{source}: {key!r} expects a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{source}: {key!r} expects a string, got {value!r}")
    raise ConfigError(f"{source}: {key!r} has an unsupported type {hint!r}")


def _parse_cli_value(raw: str) -> Any:
    """`--set` values are JSON where they parse (numbers, true/false, null, lists), else strings."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def _read_config_file(path: Path) -> dict[str, Any]:
    """The file's table of overrides; ConfigError for a missing, unreadable or malformed file."""
    name = repr(str(path))
    if path.is_dir():
        raise ConfigError(f"config file {name} is a directory")
    if not path.is_file():
        raise ConfigError(f"config file {name} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {name} is not UTF-8 text ({exc.reason} at byte "
                          f"{exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"config file {name} cannot be read: {exc.strerror or exc}") from None
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"config file {name} does not parse: {exc}") from None
    except yaml.YAMLError as exc:                    # its message spans lines: one line here
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError(f"config file {name} does not parse: "
                          f"{getattr(exc, 'problem', None) or exc}{where}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {name} must hold an object of sections and keys "
                          f'(e.g. {{"sft": {{"epochs": 2}}}}), got {type(data).__name__}')
    return data


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested sections to dotted keys: {"rl": {"steps": 2}} -> {"rl.steps": 2}."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat
