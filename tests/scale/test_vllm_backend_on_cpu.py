"""VLLMBackend: the worker process protocol, weight sync and errors, on CPU with the "hf" engine
(prmfast's HFGenerateBackend inside the worker); the real vLLM engine only where it exists."""
import os

import pytest
import torch

from prmfast.config import ModelConfig
from prmfast.models import build_tiny_model, save_policy, train_tokenizer
from prmfast.rollout import HFGenerateBackend
from prmfast.rollout.vllm_backend import VLLMBackend, WorkerError

TEXTS = ["def f(xs):\n    return sorted(xs)\n", "xs = [x * 2 for x in xs]\n"] * 20


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
    tokenizer = train_tokenizer(TEXTS, 300, tmp_path_factory.mktemp("tok"))
    torch.manual_seed(0)
    model = build_tiny_model(tokenizer, ModelConfig(hidden_size=32, num_layers=1, num_heads=2,
                                                    intermediate_size=64, max_position=128))
    folder = tmp_path_factory.mktemp("serve")
    save_policy(model, tokenizer, folder)
    return model, tokenizer, folder


def _ids(samples):
    return [[s.response_ids for s in row] for row in samples]


@pytest.mark.slow
def test_worker_matches_in_process_and_syncs_weights_on_cpu(policy):
    model, tokenizer, folder = policy
    prompts = [tokenizer.encode("def f(xs):\n"), tokenizer.encode("xs = [")]
    kwargs = dict(n=2, max_new_tokens=8, temperature=1.0, seed=7)
    local = HFGenerateBackend(model, tokenizer)
    with VLLMBackend(folder, engine="hf") as backend:
        remote = backend.generate(prompts, **kwargs)
        assert _ids(remote) == _ids(local.generate(prompts, **kwargs))
        sample = remote[0][0]
        assert sample.prompt_ids == prompts[0] and len(sample.logprobs) == len(sample.response_ids)
        assert sample.finish_reason in ("stop", "length") and isinstance(sample.text, str)
        with torch.no_grad():                                   # a "PPO update"
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        backend.sync_weights(model, tokenizer)
        synced = backend.generate(prompts, **kwargs)
        assert _ids(synced) == _ids(local.generate(prompts, **kwargs))
        assert _ids(synced) != _ids(remote)
        with pytest.raises(WorkerError, match="at least one token"):
            backend.generate([[]], **kwargs)
        assert backend.generate(prompts[:1], **kwargs)[0][0].prompt_ids == prompts[0]  # still alive


def test_worker_start_failures_are_clear_on_cpu(policy, tmp_path):
    with pytest.raises(WorkerError, match="FileNotFoundError|OSError|no model"):
        VLLMBackend(tmp_path / "missing", engine="hf")
    with pytest.raises(WorkerError, match="exited with code"):
        VLLMBackend(policy[2], python="/bin/false")


@pytest.mark.gpu
def test_real_vllm_worker(policy):
    """Set PRMFAST_VLLM_PYTHON to a Python with vllm (and a GPU) to run the real engine."""
    python = os.environ.get("PRMFAST_VLLM_PYTHON")
    if not python:
        pytest.skip("vLLM not available: set PRMFAST_VLLM_PYTHON to a Python that has vllm "
                    "installed (see docs/scale.md); vLLM cannot be installed beside torch 2.13")
    model, tokenizer, folder = policy
    prompts = [tokenizer.encode("def f(xs):\n")]
    with VLLMBackend(folder, python=python, engine_args={"gpu_memory_utilization": 0.2,
                                                         "enforce_eager": True}) as backend:
        out = backend.generate(prompts, n=2, max_new_tokens=8, temperature=1.0, seed=1)
        assert len(out[0]) == 2 and all(len(s.logprobs) == len(s.response_ids) for s in out[0])
        backend.sync_weights(model, tokenizer)
        assert backend.generate(prompts, n=1, max_new_tokens=4, temperature=0.0)[0][0].prompt_ids
