"""The synthetic long-horizon suite (docs/design.md, "Synthetic suite"): procedural list
pipelines with a horizon dial.

A task of horizon H has H numbered steps: H-1 list transforms and a final return step (see
prmfast.data.ops). Prompt (completion style) and reference response:

    # Write f(xs):                            xs = [x for x in xs if x > 3]
    # 1. keep only the numbers greater than 3   xs = [x * 2 for x in xs]
    # 2. multiply every number by 2             return sum(xs)
    # 3. return the sum of the numbers
    def f(xs):

The split of a task is decided by a stable hash of its composition (the sequence of operation
names, parameters ignored), so train / validation / test never share a composition, whatever the
seed. A candidate task is rejected unless every transform changes the list on at least one test
input (so a dropped step is visible to the oracle), the outputs are not all equal, and every
intermediate number stays small.
"""
from __future__ import annotations

import hashlib
import random

from prmfast.data.jsonl import DataError
from prmfast.data.oracle import first_error_line, first_error_lines, first_error_step, first_error_steps
from prmfast.data.ops import FINALS, TRANSFORMS
from prmfast.data.task import Task
from prmfast.sandbox.specs import CallTests

__all__ = ["generate", "composition_split", "first_error_step", "first_error_steps",
           "first_error_line", "first_error_lines", "SPLITS"]

SPLITS = {"train": (0.0, 0.8), "validation": (0.8, 0.9), "test": (0.9, 1.0)}
INPUT_LENGTH = (6, 10)
INPUT_VALUES = (-5, 15)
MAX_ABS_VALUE = 10_000
MAX_MISSES = 2000  # failed draws in a row after which a horizon counts as exhausted
# Horizons that give tasks: horizon 1 has 8 compositions (none in test), and beyond 15 steps
# almost no draw passes the checks below (16: 2 test tasks of 20 asked; 19+: none).
MAX_HORIZON = 15


def composition_split(op_names: tuple[str, ...]) -> str:
    """The split a composition belongs to: a stable hash of its operation names."""
    digest = hashlib.sha256(">".join(op_names).encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    return next(name for name, (lo, hi) in SPLITS.items() if lo <= u < hi)


def generate(split: str = "train", n: int = 100, *, seed: int = 0, min_horizon: int = 1,
             max_horizon: int = 8, n_inputs: int = 8) -> list[Task]:
    """n distinct tasks of `split`, horizons cycling through min_horizon..max_horizon; the same
    arguments give the same tasks. A horizon with no more distinct tasks left in the split (the
    shortest ones have few compositions) is skipped."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
    if not 1 <= min_horizon <= max_horizon:
        raise ValueError(f"need 1 <= min_horizon <= max_horizon, got {min_horizon}, {max_horizon}")
    if n_inputs < 2:
        raise ValueError(f"n_inputs must be >= 2, got {n_inputs}")
    rng = random.Random(f"prmfast-synthetic/{seed}/{split}")
    live = list(range(min_horizon, max_horizon + 1))
    misses = dict.fromkeys(live, 0)
    tasks, prompts = [], set()
    while len(tasks) < n:
        if not live:
            raise DataError(f"only {len(tasks)} distinct {split} tasks exist for horizons "
                            f"{min_horizon}..{max_horizon}; asked for {n}")
        horizon = live[len(tasks) % len(live)]
        task = _draw(rng, horizon, split, n_inputs)
        if task is None or task.prompt in prompts:
            misses[horizon] += 1
            if misses[horizon] >= MAX_MISSES:
                live.remove(horizon)
            continue
        misses[horizon] = 0
        prompts.add(task.prompt)
        task.task_id = f"synthetic/{split}/{seed}/{len(tasks)}"
        task.meta["seed"] = seed
        tasks.append(task)
    return tasks


def _draw(rng: random.Random, horizon: int, split: str, n_inputs: int) -> Task | None:
    ops = [rng.choice(TRANSFORMS) for _ in range(horizon - 1)] + [rng.choice(FINALS)]
    if composition_split(tuple(op.name for op in ops)) != split:
        return None
    params = [op.sample_param(rng) for op in ops]
    inputs = [[rng.randint(*INPUT_VALUES) for _ in range(rng.randint(*INPUT_LENGTH))]
              for _ in range(n_inputs)]
    steps = [op.render(k) for op, k in zip(ops, params)]
    fn = _compile_steps([code for _, code in steps])
    traces = [fn(list(xs)) for xs in inputs]
    if not _acceptable(traces, inputs):
        return None
    return Task(
        task_id="",
        prompt=render_prompt([text for text, _ in steps]),
        tests=CallTests("f", [([xs], trace[-1]) for xs, trace in zip(inputs, traces)]),
        entry_point="f",
        reference="".join(f"    {code}\n" for _, code in steps),
        meta={"horizon": horizon, "split": split,
              "steps": [{"op": op.name, "k": k} for op, k in zip(ops, params)],
              "composition": ">".join(op.name for op in ops)},
    )


def render_prompt(step_texts: list[str]) -> str:
    """The completion-style prompt for the numbered steps."""
    numbered = "".join(f"# {i}. {text}\n" for i, text in enumerate(step_texts, 1))
    return f"# Write f(xs):\n{numbered}def f(xs):\n"


def _compile_steps(code_lines: list[str]):
    """A trusted function returning the list of states after each step (our own templates)."""
    body = "".join(f"    {line}\n    _states.append(xs)\n" for line in code_lines[:-1])
    final = code_lines[-1].removeprefix("return ")
    source = f"def trace(xs):\n    _states = []\n{body}    return _states + [{final}]\n"
    namespace: dict = {}
    exec(source, namespace)
    return namespace["trace"]


def _acceptable(traces: list[list], inputs: list[list]) -> bool:
    outputs = [trace[-1] for trace in traces]
    if all(out == outputs[0] for out in outputs):
        return False
    for i in range(len(traces[0]) - 1):  # every transform changes the list on some input
        if all((trace[i - 1] if i else xs) == trace[i] for trace, xs in zip(traces, inputs)):
            return False
    return all(abs(v) <= MAX_ABS_VALUE for trace in traces for state in trace
               for v in (state if isinstance(state, list) else [state]))

