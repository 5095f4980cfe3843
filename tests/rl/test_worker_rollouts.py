"""The RL stage with rollouts from a worker process (rl.rollout_backend=vllm; the worker's CPU
engine stands in for vLLM): the same iterations as in-process rollouts, which holds only if the
trainer hands the updated weights to the worker after every update and after a resume."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def train(*args):
    proc = subprocess.run([sys.executable, "-m", "prmfast.train", *args, "--preset", "smoke"],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def rows(run: Path) -> list[dict]:
    lines = (run / "rl_oracle" / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items()
             if not k.startswith("time_") and k != "tokens_per_s"} for x in lines]


# What was sampled: a worker that missed a weight update samples other tokens, so these move
# by far more than rounding. They are means of counts, equal whatever the float path.
SAMPLED = ("step", "response_tokens", "lines_per_response", "comment_share", "pass_rate",
           "outcome", "frac_passed")


def assert_same_iterations(got: list[dict], want: list[dict]):
    """The same iterations: what was sampled exactly, the losses and statistics to rounding.
    The two runs compute in different processes (thread pools, kernels picked per CPU), so
    floats agree to ~1e-6 relative, not bitwise (kl 3.8150082 vs 3.8150070 on an Intel CPU)."""
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert a.keys() == b.keys()
        assert {k: a[k] for k in SAMPLED} == {k: b[k] for k in SAMPLED}
        assert a == pytest.approx(b, rel=1e-4, abs=1e-5)


@pytest.mark.slow
def test_worker_rollouts_follow_every_update_and_resume(tmp_path, monkeypatch):
    from prmfast.config import load_config
    from prmfast.sandbox import Sandbox
    from prmfast.train import STAGES
    local, worker = tmp_path / "local", tmp_path / "worker"
    train("sft", "--out", str(local))
    worker.mkdir()
    for name in ("tokenizer", "sft"):
        (worker / name).symlink_to(local / name)
    # line rewards (the smoke policy never passes, so sparse rewards would leave it unchanged)
    # and a learning rate large enough to change what is sampled
    sets = ["rl.steps=3", "rl.reward=oracle", "rl.policy_lr=0.01"]
    train("rl", "--out", str(local), *[a for x in sets for a in ("--set", x)])
    cfg = load_config("smoke", sets=[*sets, "rl.save_every=2", "rl.rollout_backend=vllm",
                                     "rl.vllm_engine=hf"])
    real_run, calls = Sandbox.run, {"n": 0}

    def interrupted(self, jobs):          # the third iteration, after the state of step 2
        calls["n"] += 1                   # (calls 1-2 are the probe before the first update)
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real_run(self, jobs)
    monkeypatch.setattr(Sandbox, "run", interrupted)
    with pytest.raises(KeyboardInterrupt):
        STAGES["rl"](cfg, worker)
    monkeypatch.undo()
    assert not list((worker / "rl_oracle").glob("vllm_policy*"))    # worker closed
    assert (worker / "rl_oracle" / "state" / "trainer.pt").exists() and len(rows(worker)) == 2
    STAGES["rl"](cfg, worker)    # resumes at step 2: the worker must get its weights
    assert len(rows(local)) == 3
    assert_same_iterations(rows(worker), rows(local))
    assert not list((worker / "rl_oracle").glob("vllm_policy*"))


def test_worker_backend_config_errors_exit_2(tmp_path):
    for bad, key in ((["rl.rollout_backend=vlm"], "rl.rollout_backend"),
                     (["rl.vllm_engine=sglang"], "rl.vllm_engine"),
                     (["rl.vllm_python=/nonexistent/python"], "rl.vllm_python")):
        proc = subprocess.run([sys.executable, "-m", "prmfast.train", "rl_baseline", "--preset",
                               "smoke", "--out", str(tmp_path / "x"),
                               *[a for b in bad for a in ("--set", b)]],
                              cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2 and key in proc.stderr, proc.stderr[-500:]
