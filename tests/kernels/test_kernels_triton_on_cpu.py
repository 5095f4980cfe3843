"""impl="triton" under TRITON_INTERPRET=1 (set by tests/conftest.py) against the float64 torch
reference, at small shapes (the interpreter runs programs one after another)."""
import os

import pytest
import torch

from kernel_checks import (check_dense_rewards_gae, check_gae, check_line_scores, check_ppo_loss,
                           check_token_logprobs, poisoned_buffers)  # noqa: F401 (fixture)

pytestmark = [pytest.mark.usefixtures("poisoned_buffers"),
              pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1",
                                 reason="CPU Triton tests need TRITON_INTERPRET=1")]
FP32 = (torch.float32, 1e-4)
BF16 = (torch.bfloat16, 1e-4)  # kernels cast to fp32 after loading; outputs are fp32
SHAPE = dict(n_seq=40, max_len=60)  # 2 programs of 32 sequences


@pytest.mark.parametrize("dtype,tol", [FP32, BF16])
@pytest.mark.parametrize("gamma,lam", [(0.0, 0.0), (1.0, 1.0), (0.95, 0.95)])
def test_gae_triton_matches_reference_on_cpu(gamma, lam, dtype, tol):
    check_gae("triton", 0, gamma, lam, dtype, tol, **SHAPE)


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("gamma,lam,dtype,tol", [(1.0, 0.95, *FP32), (0.0, 1.0, *BF16)])
def test_dense_rewards_gae_triton_matches_reference_on_cpu(gamma, lam, normalize, dtype, tol):
    check_dense_rewards_gae("triton", 1, gamma, lam, normalize, dtype, tol, **SHAPE)


@pytest.mark.parametrize("dtype,tol", [FP32, (torch.bfloat16, 1e-2)])
def test_line_scores_triton_matches_reference_on_cpu(dtype, tol):
    check_line_scores("triton", 2, 37, 70, dtype, tol)


@pytest.mark.parametrize("dual_clip,dtype,tol", [(None, *FP32), (3.0, *FP32), (3.0, *BF16)])
def test_ppo_loss_triton_matches_reference_on_cpu(dual_clip, dtype, tol):
    check_ppo_loss("triton", 3, dual_clip, dtype, tol, n=700)


@pytest.mark.parametrize("temperature,chunk_size,dtype,tol",
                         [(1.0, None, torch.float32, 1e-4), (0.7, 16, torch.float32, 1e-4),
                          (1.3, 16, torch.bfloat16, 5e-2)])
def test_token_logprobs_triton_matches_reference_on_cpu(temperature, chunk_size, dtype, tol,
                                                        monkeypatch):
    check_token_logprobs("triton", 4, 40, 32, 300, temperature, chunk_size, dtype, tol, monkeypatch,
                         chunk_elements=16 * 128)
