"""model.device: resolution and config checks, and every stage's tensors on the models' device.

No GPU here, so "the tensors follow the model's device" is checked by running the training code
with torch's default device set to "meta" while the models sit on the CPU: a tensor created
without an explicit device then lands on meta and the step fails (mixed devices, or a copy out of
a meta tensor), which is what a GPU run does with a tensor left on the default (CPU) device. The
numbers must equal a plain run.
"""
import copy
import json
import zlib
from types import SimpleNamespace

import pytest
import torch

from prmfast import distributed as D
from prmfast.config import ConfigError, load_config
from prmfast.data import split_tasks
from prmfast.device import check_device_config, module_device, resolve_device, select_device
from prmfast.models import ValueModel, build_tiny_model, encode, save_policy, train_tokenizer
from prmfast.rl.trainer import PPOTrainer, deepspeed_overrides
from prmfast.rollout import HFGenerateBackend
from prmfast.train import main


def _fake_cuda(monkeypatch, count):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    for var in ("LOCAL_RANK", "LOCAL_WORLD_SIZE", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)


def test_auto_is_the_cpu_without_cuda_and_cuda_is_an_error_on_cpu(monkeypatch):
    _fake_cuda(monkeypatch, 0)
    assert resolve_device("auto") == resolve_device("cpu") == torch.device("cpu")
    assert select_device("auto") == torch.device("cpu")
    for bad, match in [("cuda", "CUDA is not available"), ("cuda:1", "CUDA is not available"),
                       ("cdua", "not a device"), ("mps", "only auto, cpu"), ("", "not a device")]:
        with pytest.raises(ValueError, match=match):
            resolve_device(bad)
        with pytest.raises(ConfigError, match="model.device"):
            check_device_config(load_config("smoke", sets=[f"model.device={bad}"]))
    check_device_config(load_config("smoke"))                     # default: auto


def test_cuda_devices_follow_the_launcher_on_cpu(monkeypatch):
    """Resolution only (nothing touches a GPU): auto / cuda -> cuda:LOCAL_RANK, an explicit
    index as given in one process per node, never past the visible GPUs."""
    _fake_cuda(monkeypatch, 2)
    assert resolve_device("auto") == resolve_device("cuda") == torch.device("cuda", 0)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="does not exist"):
        resolve_device("cuda:2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert resolve_device("auto") == resolve_device("cuda") == torch.device("cuda", 1)
    with pytest.raises(ValueError, match="one GPU"):
        resolve_device("cuda:0")
    monkeypatch.setenv("LOCAL_RANK", "2")
    with pytest.raises(ValueError, match="does not exist"):
        resolve_device("auto")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only machine")
def test_cli_rejects_an_unusable_device_before_any_work_on_cpu(tmp_path, capsys):
    assert main(["sft", "--out", str(tmp_path), "--set", "model.device=cuda"]) == 2
    assert "model.device" in capsys.readouterr().err
    assert main(["all", "--out", str(tmp_path), "--set", "model.device=gpu"]) == 2
    assert not (tmp_path / "config.json").exists()


def test_deepspeed_device_and_precision_settings_on_cpu(monkeypatch):
    """DeepSpeed on the CPU while CUDA is visible is refused (it would move the models to the
    GPU) unless DS_ACCELERATOR=cpu; on a GPU the engine's bf16 / fp16 follow model.dtype."""
    pytest.importorskip("deepspeed")
    from prmfast.rl.stage import check_rl_config
    _fake_cuda(monkeypatch, 1)
    monkeypatch.delenv("DS_ACCELERATOR", raising=False)
    with pytest.raises(ConfigError, match="DS_ACCELERATOR"):
        check_rl_config(load_config("smoke", sets=["rl.engine=deepspeed", "model.device=cpu"]))
    check_rl_config(load_config("smoke", sets=["rl.engine=deepspeed"]))          # auto: cuda
    monkeypatch.setenv("DS_ACCELERATOR", "cpu")
    check_rl_config(load_config("smoke", sets=["rl.engine=deepspeed", "model.device=cpu"]))

    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    for dtype, bf16 in (("float32", False), ("bfloat16", True)):
        cfg = load_config("smoke", sets=[f"model.dtype={dtype}", "rl.max_grad_norm=0.5"])
        on_gpu = D.load_deepspeed_config(None, deepspeed_overrides(cfg, gpu), device=gpu)
        assert (on_gpu["bf16"]["enabled"], on_gpu["fp16"]["enabled"]) == (bf16, False)
        on_cpu = D.load_deepspeed_config(None, deepspeed_overrides(cfg, cpu), device=cpu)
        assert not on_cpu["bf16"]["enabled"] and on_cpu["gradient_clipping"] == 0.5


# --- tensors follow the models' device ----------------------------------------------------------

class CpuStepAdamW(torch.optim.AdamW):
    """AdamW whose step runs with the CPU as default device: torch keeps the optimizer's `step`
    counters on the CPU on purpose (also on a GPU), which is no fault of the code under test."""

    def step(self, *args, **kwargs):
        with torch.device("cpu"):
            return super().step(*args, **kwargs)


class FakeSandbox:
    """Outcomes as a fixed function of the program text (the sandbox is not under test)."""

    def run(self, jobs):
        out = []
        for job in jobs:
            h = zlib.crc32(job.program.encode())
            tests = [bool(h >> i & 1) for i in range(3)]
            out.append(SimpleNamespace(passed=all(tests), tests=tests))
        return out


@pytest.fixture(scope="module")
def tiny_rl():
    cfg = load_config("smoke", sets=[
        "model.hidden_size=32", "model.intermediate_size=64", "model.device=cpu",
        "data.n_train=8", "rl.prompts_per_step=2", "rl.samples_per_prompt=2",
        "rl.ppo_epochs=2", "rl.minibatches=2", "sampling.max_new_tokens=16", "rl.kl_coef=0.5"])
    tasks = split_tasks(cfg, "train")
    tok = train_tokenizer([t.prompt + (t.reference or "") for t in tasks], 300)
    torch.manual_seed(0)
    policy = build_tiny_model(tok, cfg.model)
    prm = ValueModel.from_causal_lm(policy)
    torch.nn.init.normal_(prm.head.weight, std=0.1)
    return cfg, tasks, tok, policy, prm


def _trainer(tiny_rl, reward="dense", device="cpu"):
    cfg, tasks, tok, policy, prm = tiny_rl
    cfg = copy.deepcopy(cfg)
    cfg.rl.reward, cfg.model.device = reward, device
    device = select_device(cfg.model.device)
    policy, reference = copy.deepcopy(policy).to(device), copy.deepcopy(policy).to(device)
    with torch.no_grad():                       # a reference that differs: non-zero KL
        for p in reference.parameters():
            p.add_(0.01)
    trainer = PPOTrainer(cfg, policy=policy, reference=reference,
                         critic=copy.deepcopy(prm).to(device), prm=copy.deepcopy(prm).to(device),
                         tokenizer=tok, tasks=tasks,
                         backend=HFGenerateBackend(policy, tok, batch_size=4),
                         sandbox=FakeSandbox(), oracle=lambda ts, texts: [1] * len(ts))
    assert trainer.device == device
    return trainer


def _rl_step(tiny_rl, reward, default_device):
    trainer = _trainer(tiny_rl, reward)
    with torch.device(default_device):
        row = trainer.train_step()
    row = {k: v for k, v in row.items() if not k.startswith("time_") and k != "tokens_per_s"}
    return row, {k: v.clone() for k, v in trainer.policy.state_dict().items()}


@pytest.mark.parametrize("reward", ["dense", "oracle"])
def test_rl_iteration_creates_every_tensor_on_the_models_device_on_cpu(tiny_rl, monkeypatch,
                                                                       reward):
    """One iteration (rollout, packing, the four forwards, rewards, fused GAE, whitening, two
    epochs of two minibatches) with model.device=cpu given explicitly, the default device
    pointing elsewhere: the same row and weights as a plain run."""
    monkeypatch.setattr(torch.optim, "AdamW", CpuStepAdamW)
    row, weights = _rl_step(tiny_rl, reward, "cpu")
    meta_row, meta_weights = _rl_step(tiny_rl, reward, "meta")
    assert meta_row == row
    assert meta_row["kl"] != 0 and meta_row["policy_grad_norm"] > 0
    for key, value in weights.items():
        assert torch.equal(meta_weights[key], value), key


def test_prm_and_sft_training_create_tensors_on_the_models_device_on_cpu(tiny_rl, tmp_path,
                                                                         monkeypatch):
    from prmfast import sft
    from prmfast.prm import ValuePRM
    from prmfast.prm.train import train_prm
    monkeypatch.setattr(torch.optim, "AdamW", CpuStepAdamW)
    cfg, tasks, tok, policy, prm = tiny_rl
    examples = _prm_examples(tok, tasks)
    prm_cfg = load_config("smoke", sets=["prm.epochs=2", "prm.batch_size=4"]).prm
    sft_cfg = load_config("smoke", sets=["sft.epochs=2", "sft.batch_size=4",
                                         "sft.checkpoint_every=2"]).sft
    sft_examples = sft.build_examples(tok, tasks, max_len=512)
    results = []
    for default in ("cpu", "meta"):
        model = ValuePRM.of(copy.deepcopy(prm), tok.pad_token_id).to(
            select_device(cfg.model.device))
        with torch.device(default):
            history = train_prm(model, examples[:6], examples[6:], prm_cfg, progress=False)
            scores = model.predict(examples)
        lm = copy.deepcopy(policy)
        with torch.device(default):
            losses = sft.train(lm, sft_examples, sft_cfg, tmp_path / default, seed=0,
                               progress=False)
        results.append((history, scores, losses, lm.state_dict()))
    (history, scores, losses, weights), meta = results
    assert json.dumps(meta[0]) == json.dumps(history)         # NaN AUCs compare as text
    assert meta[1] == scores and meta[2] == losses
    assert all(torch.equal(meta[3][k], v) for k, v in weights.items())
    assert module_device(model) == torch.device("cpu")


def _prm_examples(tok, tasks):
    """A PRM example per task: its reference, lines labelled +1 / -1 alternately."""
    from prmfast.lines import segment
    from prmfast.prm.data import example
    out = []
    for i, task in enumerate(tasks):
        prompt, response = encode(tok, task.prompt), encode(tok, task.reference)
        spans = segment(response, tok).spans
        out.append(example(prompt, response, spans,
                           [1.0 if (i + j) % 2 else -1.0 for j in range(len(spans))]))
    return out


@pytest.mark.slow
def test_rl_stage_runs_with_an_explicit_cpu_device_on_cpu(tiny_rl, tmp_path):
    """The rl_prm stage from saved SFT and PRM folders with model.device=cpu (real sandbox):
    models loaded onto the device, one iteration, checkpoint, state and final model."""
    from prmfast.rl.stage import run_rl
    cfg, tasks, tok, policy, prm = tiny_rl
    cfg = copy.deepcopy(cfg)
    cfg.rl.steps, cfg.rl.num_checkpoints = 1, 1
    save_policy(policy, tok, tmp_path / "sft" / "model")
    prm.save_pretrained(tmp_path / "prm" / "model", tok)
    out = run_rl(cfg, tmp_path, "rl_prm", progress=False)
    assert (out / "DONE").exists() and (out / "model" / "model.safetensors").exists()
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1] and rows[0]["time_prm_fwd"] > 0


# --- on a GPU (skipped here; run with -m gpu where CUDA is available) ---------------------------

@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("reward", ["dense", "oracle"])
def test_rl_iteration_on_cuda_and_its_state_resumes_on_the_cpu(tiny_rl, tmp_path, reward):
    """One iteration with every model on the GPU (the default device stays the CPU, so a
    tensor created without a device breaks it); its saved state resumes on the CPU."""
    trainer = _trainer(tiny_rl, reward, "cuda")
    row = trainer.train_step()
    assert row["kl"] != 0 and row["policy_grad_norm"] > 0
    assert all(p.is_cuda for p in trainer.policy.parameters())
    trainer.save_state(tmp_path / "state")
    on_cpu = _trainer(tiny_rl, reward, "cpu")
    on_cpu.load_state(tmp_path / "state")
    assert on_cpu.step == 1
    for key, value in trainer.policy.state_dict().items():
        assert torch.equal(on_cpu.policy.state_dict()[key], value.cpu()), key
    on_cpu.train_step()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_prm_and_sft_training_on_cuda_on_cpu_checkpoints(tiny_rl, tmp_path):
    """PRM and SFT training with the models on the GPU; SFT's checkpoint loads on the CPU."""
    from prmfast import sft
    from prmfast.prm import ValuePRM
    from prmfast.prm.train import train_prm
    cfg, tasks, tok, policy, prm = tiny_rl
    gpu = select_device("cuda")
    examples = _prm_examples(tok, tasks)
    model = ValuePRM.of(copy.deepcopy(prm), tok.pad_token_id).to(gpu)
    train_prm(model, examples[:6], examples[6:], load_config("smoke").prm, progress=False)
    assert all(len(s) > 0 for s in model.predict(examples))
    sft_cfg = load_config("smoke", sets=["sft.batch_size=4", "sft.checkpoint_every=1"]).sft
    lm = copy.deepcopy(policy).to(gpu)
    sft.train(lm, sft.build_examples(tok, tasks, 512), sft_cfg, tmp_path, seed=0, progress=False)
    cpu_lm = copy.deepcopy(policy)
    opt = torch.optim.AdamW(cpu_lm.parameters())
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 1.0)
    assert sft.load_checkpoint(tmp_path, cpu_lm, opt, sched) > 0
    for key, value in lm.state_dict().items():
        assert torch.equal(cpu_lm.state_dict()[key], value.cpu()), key
