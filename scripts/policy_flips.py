"""Which training tasks an RL policy stopped (or started) solving at temperature 0.2, and how its
program differs from the SFT policy's there (issue 17's diagnosis: RL moves parameter priors).

    .venv/bin/python scripts/policy_flips.py runs/x/rl_baseline/model [--sft runs/x/sft/model]
        [--tasks 64] [--show 6]

One sample per task at temperature 0.2 (seed 0) from each policy on the first --tasks training
tasks of the default preset, run in the sandbox; prints both pass counts, a unified diff of the
two programs for the first --show tasks where the verdicts differ, and the counts of tasks only
one policy solves.
"""
from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prmfast.config import load_config  # noqa: E402
from prmfast.data import split_tasks  # noqa: E402
from prmfast.data.prompts import build_program  # noqa: E402
from prmfast.models import encode, load_policy  # noqa: E402
from prmfast.rollout import HFGenerateBackend  # noqa: E402
from prmfast.sandbox import Job, Sandbox  # noqa: E402


def samples(model_dir: str, tasks, sandbox) -> tuple[list[str], list[bool]]:
    """One temperature-0.2 program per task and whether it passes."""
    policy, tokenizer = load_policy(model_dir, "float32")
    backend = HFGenerateBackend(policy, tokenizer, batch_size=64)
    groups = backend.generate([encode(tokenizer, t.prompt) for t in tasks], n=1,
                              max_new_tokens=160, temperature=0.2, top_p=1.0, seed=0)
    texts = [g[0].text for g in groups]
    results = sandbox.run([Job(build_program(t, x), t.tests) for t, x in zip(tasks, texts)])
    return texts, [r.passed for r in results]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="the RL policy's model folder")
    parser.add_argument("--sft", default="runs/base/sft/model", help="the SFT policy's folder")
    parser.add_argument("--tasks", type=int, default=64)
    parser.add_argument("--show", type=int, default=6)
    args = parser.parse_args(argv)
    for path in (args.model, args.sft):
        if not (Path(path) / "config.json").exists():
            print(f"no model folder at {path}", file=sys.stderr)
            return 2
    tasks = split_tasks(load_config("default"), "train")[:args.tasks]
    sandbox = Sandbox(workers=1)
    sft, rl = samples(args.sft, tasks, sandbox), samples(args.model, tasks, sandbox)
    print(f"sft passes {sum(sft[1])} of {len(tasks)}; rl passes {sum(rl[1])}")
    shown = 0
    for i, task in enumerate(tasks):
        if sft[1][i] != rl[1][i] and shown < args.show:
            shown += 1
            print(f"=== task {i}: sft {'passes' if sft[1][i] else 'fails'}, rl "
                  f"{'passes' if rl[1][i] else 'fails'}\n{task.prompt}")
            print("\n".join(difflib.unified_diff(sft[0][i].splitlines(), rl[0][i].splitlines(),
                                                 "sft", "rl", lineterm="", n=0)))
    print(f"solved by sft only: {sum(a and not b for a, b in zip(sft[1], rl[1]))}; "
          f"by rl only: {sum(b and not a for a, b in zip(sft[1], rl[1]))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
