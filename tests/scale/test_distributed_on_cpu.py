"""prmfast.distributed on CPU with gloo: 2 ranks == 1 process on the same global batch."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from prmfast import distributed as D
from prmfast.config import ConfigError, load_config
from prmfast.rl.stage import check_rl_config

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
SCRIPT = HERE / "dist_step.py"
RL_SCRIPT = HERE / "rl_dist_step.py"


def _run(args, env_extra=None, timeout=300):
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update({"OMP_NUM_THREADS": "1", **(env_extra or {})})
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def _torchrun(nproc, *args, script=SCRIPT):
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
            "--standalone", str(script), *args]


# A rank of a 2-rank DeepSpeed CPU job once died in CI with this C++ abort from inside the
# ZeRO-3 collectives (DeepSpeed's shm comm op or gloo, not our code); 17 reruns, 5 under load, did
# not repeat it. Such a job is run once more; its results are checked either way.
NATIVE_ABORT = "terminate called without an active exception"


def _run_deepspeed(args, attempts=2):
    """_run for a DeepSpeed job: its JIT-built CPU comm op (~45 s the first time) is cached in
    .cache/torch_extensions (or $TORCH_EXTENSIONS_DIR); skips the test if it cannot be built."""
    pytest.importorskip("deepspeed")
    cache = os.environ.get("TORCH_EXTENSIONS_DIR", str(REPO / ".cache" / "torch_extensions"))
    try:
        _run(args, {"TORCH_EXTENSIONS_DIR": cache})
    except AssertionError as exc:
        if "Error building extension" in str(exc) or "ninja" in str(exc).lower():
            pytest.skip(f"DeepSpeed could not build its CPU op here: {str(exc)[-500:]}")
        if NATIVE_ABORT in str(exc) and attempts > 1:
            return _run_deepspeed(args, attempts - 1)
        raise


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
    """DeepSpeed ZeRO-2 / ZeRO-3 on CPU (gloo)."""
    out = tmp_path / "ds.pt"
    config = REPO / "configs" / "deepspeed" / f"zero{stage}.json"
    _run_deepspeed(_torchrun(2, "deepspeed", str(out), str(config)))
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


@pytest.fixture(scope="module")
def rl_single(tmp_path_factory):
    """The policy and critic after one RL iteration in one process (rl.engine=none)."""
    out = tmp_path_factory.mktemp("rl_single") / "one.pt"
    _run([sys.executable, str(RL_SCRIPT), "none", str(out)])
    return out


def _assert_same_rl(a_path, b_path, tol):
    a, b = torch.load(a_path), torch.load(b_path)
    assert a.pop("row")["policy_grad_norm"] == pytest.approx(b.pop("row")["policy_grad_norm"])
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=tol, atol=tol, msg=key)


def test_rl_trainer_ddp_two_ranks_match_one_process_on_cpu(rl_single, tmp_path):
    """One RL iteration (greedy rollouts, sandbox, experience, PPO update) with rl.engine=ddp on
    2 gloo ranks with unequal shares gives the parameters of one process on the same batch."""
    two = tmp_path / "two.pt"
    _run(_torchrun(2, "ddp", str(two), script=RL_SCRIPT))
    _assert_same_rl(rl_single, two, 1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("stage", [2, 3])
def test_rl_trainer_deepspeed_two_ranks_match_one_process_and_resume_on_cpu(
        rl_single, tmp_path, stage):
    """rl.engine=deepspeed, ZeRO-2 / ZeRO-3 (every parameter partitioned), 2 gloo ranks: one RL
    iteration gives the parameters of one process (ZeRO-3 rollouts run on the gathered policy);
    after save_state, a fresh launch that loads it runs iteration 2 exactly as the run that went
    on (weights and ZeRO optimizer partitions from DeepSpeed's checkpoints)."""
    config = json.loads((REPO / "configs" / "deepspeed" / f"zero{stage}.json").read_text())
    config["zero_optimization"]["stage3_param_persistence_threshold"] = 0
    (tmp_path / "ds.json").write_text(json.dumps(config))
    ds = ["--ds-config", str(tmp_path / "ds.json")]
    out, resumed, state = tmp_path / "ds.pt", tmp_path / "resumed.pt", tmp_path / "state"
    _run_deepspeed(_torchrun(2, "deepspeed", str(out), *ds, "--save", str(state),
                             script=RL_SCRIPT))
    _assert_same_rl(rl_single, out, 1e-5)
    params = torch.load(out)                    # the HF folder in the state has full weights
    for key, value in load_file(state / "policy" / "model.safetensors").items():
        assert torch.equal(value, params[f"policy.{key}"]), key
    _run_deepspeed(_torchrun(2, "deepspeed", str(resumed), *ds, "--resume", str(state),
                             script=RL_SCRIPT))
    _assert_same_rl(out.with_suffix(".step2.pt"), resumed, 0.0)


def test_rl_engine_config_checks_on_cpu(tmp_path):
    def check(*sets):
        check_rl_config(load_config("smoke", sets=list(sets)))
    with pytest.raises(ConfigError, match="rl.engine"):
        check("rl.engine=fsdp")
    pytest.importorskip("deepspeed")
    check("rl.engine=deepspeed")                                      # zero2.json by default
    check("rl.engine=deepspeed", "rl.deepspeed_config=configs/deepspeed/zero3.json")
    with pytest.raises(ConfigError, match="rl.deepspeed_config"):
        check("rl.engine=deepspeed", f"rl.deepspeed_config={tmp_path / 'missing.json'}")
    (tmp_path / "bad.json").write_text("{stage: 3")
    with pytest.raises(ConfigError, match="rl.deepspeed_config"):
        check("rl.engine=deepspeed", f"rl.deepspeed_config={tmp_path / 'bad.json'}")


def test_exit_rank_without_a_launcher_returns_on_cpu():
    D.exit_rank(3)                  # no process group: nothing to leave, the process goes on
    assert not torch.distributed.is_initialized()
