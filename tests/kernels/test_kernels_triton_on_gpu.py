"""impl="triton" compiled for a CUDA device (not the interpreter) against the float64 torch
reference on the same device, at shapes that need many programs and blocks: long sequences,
hidden sizes past one block, a vocabulary cut into several chunks. Run where CUDA is available
with TRITON_INTERPRET=0 (scripts/test.sh sets 1, which these tests refuse):

    TRITON_INTERPRET=0 python -m pytest -m gpu tests/kernels/test_kernels_triton_on_gpu.py"""
import os

import pytest
import torch

from kernel_checks import (check_dense_rewards_gae, check_gae, check_line_scores, check_ppo_loss,
                           check_token_logprobs, poisoned_buffers)  # noqa: F401 (fixture)
from prmfast import kernels
from prmfast.kernels import fused

pytestmark = [pytest.mark.gpu, pytest.mark.usefixtures("poisoned_buffers"),
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
              pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") == "1",
                                 reason="GPU Triton tests need TRITON_INTERPRET unset or 0")]
CUDA = "cuda"
FP32 = (torch.float32, 1e-4)
BF16 = (torch.bfloat16, 1e-4)  # kernels cast to fp32 after loading; outputs are fp32
SHAPE = dict(n_seq=700, max_len=1500)  # ~500k tokens, sequences longer than one block


@pytest.fixture(autouse=True)
def fresh_autotuning():
    """Every test tunes again: autotuning's benchmark runs of the other configs must leave no
    trace in the buffers the chosen config then updates (partial sums, in-place state)."""
    from prmfast.kernels.triton import line_scores, logprobs, ppo_loss
    for kernel in (line_scores.line_scores_fwd_kernel, line_scores.line_scores_bwd_kernel,
                   logprobs.logprobs_fwd_chunk_kernel, logprobs.logprobs_bwd_chunk_kernel,
                   ppo_loss.ppo_loss_fwd_kernel):
        kernel.cache.clear()


@pytest.mark.parametrize("dtype,tol", [FP32, BF16])
@pytest.mark.parametrize("gamma,lam", [(0.0, 0.0), (1.0, 1.0), (0.99, 0.95)])
def test_gae_triton_matches_reference_on_gpu(gamma, lam, dtype, tol):
    check_gae("triton", 10, gamma, lam, dtype, tol, device=CUDA, **SHAPE)


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("gamma,lam,dtype,tol", [(1.0, 0.95, *FP32), (0.99, 1.0, *BF16)])
def test_dense_rewards_gae_triton_matches_reference_on_gpu(gamma, lam, normalize, dtype, tol):
    check_dense_rewards_gae("triton", 11, gamma, lam, normalize, dtype, tol, device=CUDA, **SHAPE)


@pytest.mark.parametrize("n,h", [(5000, 896), (777, 4096), (3, 33)])
@pytest.mark.parametrize("dtype,tol", [FP32, (torch.bfloat16, 1e-2)])
def test_line_scores_triton_matches_reference_on_gpu(n, h, dtype, tol):
    check_line_scores("triton", 12, n, h, dtype, tol, device=CUDA)


@pytest.mark.parametrize("dual_clip,dtype,tol", [(None, *FP32), (3.0, *FP32), (3.0, *BF16)])
def test_ppo_loss_triton_matches_reference_on_gpu(dual_clip, dtype, tol):
    check_ppo_loss("triton", 13, dual_clip, dtype, tol, n=300_001, device=CUDA)


@pytest.mark.parametrize("temperature,chunk_size,dtype,tol",
                         [(1.0, None, torch.float32, 1e-4), (0.7, 256, torch.float32, 1e-4),
                          (1.3, 100, torch.bfloat16, 5e-2)])
def test_token_logprobs_triton_matches_reference_on_gpu(temperature, chunk_size, dtype, tol,
                                                        monkeypatch):
    """Vocabulary 49,153 (not a power of two) with 2^23 logits held at once on the GPU
    (fused.CUDA_CHUNK_SCALE x 2^20): 8388-column chunks (all 1000 rows, a ragged last chunk),
    32768 (256 rows) or all columns (100 rows)."""
    check_token_logprobs("triton", 14, 1000, 576, 49153, temperature, chunk_size, dtype, tol,
                         monkeypatch, chunk_elements=(1 << 23) // fused.CUDA_CHUNK_SCALE,
                         device=CUDA)


def test_auto_picks_triton_for_cuda_tensors_on_gpu():
    assert kernels.resolve_impl("auto", torch.device(CUDA)) == "triton"
    values = torch.randn(100, device=CUDA)
    cu = torch.tensor([0, 40, 100], device=CUDA)
    auto = kernels.gae(values, values, cu, gamma=0.9, lam=0.8)
    for got, expected in zip(auto, kernels.gae(values, values, cu, gamma=0.9, lam=0.8, impl="torch")):
        assert got.is_cuda
        torch.testing.assert_close(got, expected.to(got.dtype), rtol=1e-5, atol=1e-5)
