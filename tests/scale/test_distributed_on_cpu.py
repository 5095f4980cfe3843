"""prmfast.distributed on CPU with gloo: 2 ranks == 1 process on the same global batch."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from prmfast import distributed as D

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
SCRIPT = HERE / "dist_step.py"


def _run(args, env_extra=None, timeout=300):
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update({"OMP_NUM_THREADS": "1", **(env_extra or {})})
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def _torchrun(nproc, *args):
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
            "--standalone", str(SCRIPT), *args]


def _assert_same(a_path, b_path, tol):
    a, b = torch.load(a_path), torch.load(b_path)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=tol, atol=tol, msg=key)


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    out = tmp_path_factory.mktemp("single") / "params.pt"
    _run([sys.executable, str(SCRIPT), "none", str(out)])
    return out


@pytest.mark.parametrize("backend", ["ddp", "fsdp"])
def test_torch_two_ranks_match_one_process_on_cpu(single, tmp_path, backend):
    out = tmp_path / f"{backend}.pt"
    _run(_torchrun(2, backend, str(out)))
    _assert_same(single, out, 1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_zero_two_ranks_match_one_process_on_cpu(single, tmp_path, stage):
    """DeepSpeed ZeRO-2 / ZeRO-3 on CPU (gloo). First use JIT-builds DeepSpeed's shm comm op (~45 s);
    it is cached in .cache/torch_extensions (or $TORCH_EXTENSIONS_DIR) so reruns are fast."""
    pytest.importorskip("deepspeed")
    out = tmp_path / "ds.pt"
    cache = os.environ.get("TORCH_EXTENSIONS_DIR",
                           str(REPO / ".cache" / "torch_extensions"))
    config = REPO / "configs" / "deepspeed" / f"zero{stage}.json"
    try:
        _run(_torchrun(2, "deepspeed", str(out), str(config)), {"TORCH_EXTENSIONS_DIR": cache})
    except AssertionError as exc:
        if "Error building extension" in str(exc) or "ninja" in str(exc).lower():
            pytest.skip(f"DeepSpeed could not build its CPU op here: {str(exc)[-500:]}")
        raise
    _assert_same(single, out, 1e-5)


def test_single_process_helpers_on_cpu():
    assert D.is_main() and D.get_world_size() == 1
    assert D.shard([1, 2, 3]) == [1, 2, 3]
    assert D.gather_shards([1, 2]) == [1, 2]
    assert D.token_mean_scale(7) == 1.0
    assert D.all_reduce_metrics({"a": 1}) == {"a": 1.0}
    with pytest.raises(ValueError, match="op"):
        D.all_reduce_metrics({"a": 1}, op="median")
    with pytest.raises(ValueError, match="backend"):
        D.init_distributed("horovod")


def test_deepspeed_configs_parse_on_cpu():
    for stage in (2, 3):
        config = D.load_deepspeed_config(REPO / "configs" / "deepspeed" / f"zero{stage}.json",
                                         {"gradient_clipping": 0.5})
        assert config["zero_optimization"]["stage"] == stage
        assert config["gradient_clipping"] == 0.5
        assert config["bf16"]["enabled"] is torch.cuda.is_available()


def test_rl_trainer_ddp_two_ranks_match_one_process_on_cpu(tmp_path):
    """One RL iteration (greedy rollouts, sandbox, experience, PPO update) with rl.engine=ddp on
    2 gloo ranks with unequal shares gives the parameters of one process on the same batch."""
    step = str(HERE / "rl_dist_step.py")
    one, two = tmp_path / "one.pt", tmp_path / "two.pt"
    _run([sys.executable, step, "none", str(one)])
    _run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
          step, "ddp", str(two)])
    a, b = torch.load(one), torch.load(two)
    assert a.pop("row")["policy_grad_norm"] == pytest.approx(b.pop("row")["policy_grad_norm"])
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-5, msg=key)
