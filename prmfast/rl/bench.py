"""Step-time breakdown of full RL iterations, for BENCHMARKS.md.

    python -m prmfast.rl.bench RUN_DIR [--preset P] [--steps 3] [--set key=value ...]

Runs `--steps` PPO iterations of the dense + ValueInit variant (every forward of the method:
policy, reference, critic, PRM) from RUN_DIR's SFT policy and PRM, in a scratch folder that links
them, and prints the mean time per part, the kernels' share of the iteration and response tokens
per second. The first iteration is dropped from the means when there are more than one (numba
compilation and allocator warm-up).
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from prmfast.config import load_config
from prmfast.report import read_metrics, timing_table
from prmfast.rl.stage import run_rl


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m prmfast.rl.bench", description=__doc__)
    parser.add_argument("run_dir", help="a run folder with sft/model and prm/model")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    cfg = load_config(args.preset, sets=[*args.set, f"rl.steps={args.steps}",
                                         "rl.num_checkpoints=0", f"rl.save_every={args.steps}"])
    with tempfile.TemporaryDirectory(prefix="prmfast-rl-bench-") as tmp:
        scratch = Path(tmp)
        for name in ("sft", "prm"):
            (scratch / name).symlink_to(Path(args.run_dir).resolve() / name)
        out = run_rl(cfg, scratch, "rl_prm", progress=False)
        rows = read_metrics(out)
    rows = rows[1:] if len(rows) > 1 else rows
    print(timing_table({f"rl_prm ({cfg.rl.prompts_per_step}x{cfg.rl.samples_per_prompt} "
                        f"samples/iter)": rows}))
    print(json.dumps({"mean_response_tokens": sum(r["response_tokens"] for r in rows) / len(rows),
                      "iterations_measured": len(rows)}))


if __name__ == "__main__":
    main()
