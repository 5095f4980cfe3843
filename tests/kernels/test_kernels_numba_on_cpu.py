"""impl="numba" (and "auto" on CPU) against the float64 torch reference."""
import pytest
import torch

from kernel_checks import (check_dense_rewards_gae, check_gae, check_line_scores, check_ppo_loss,
                           check_token_logprobs, poisoned_buffers)  # noqa: F401 (fixture)

GAMMA_LAM = [(0.0, 0.0), (1.0, 1.0), (0.95, 0.95), (1.0, 0.0), (0.0, 1.0), (0.99, 0.9)]
DTYPES = [(torch.float64, 1e-10), (torch.float32, 2e-5)]
pytestmark = pytest.mark.usefixtures("poisoned_buffers")


@pytest.mark.parametrize("dtype,tol", DTYPES)
@pytest.mark.parametrize("gamma,lam", GAMMA_LAM)
@pytest.mark.parametrize("seed", [0, 1])
def test_gae_numba_matches_reference_on_cpu(seed, gamma, lam, dtype, tol):
    check_gae("numba", seed, gamma, lam, dtype, tol * 10, n_seq=9, max_len=200)


@pytest.mark.parametrize("dtype,tol", DTYPES)
@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("gamma,lam", GAMMA_LAM)
def test_dense_rewards_gae_numba_matches_reference_on_cpu(gamma, lam, normalize, dtype, tol):
    check_dense_rewards_gae("numba", 3, gamma, lam, normalize, dtype, tol * 10, n_seq=9, max_len=200)


def test_auto_is_numba_on_cpu():
    from prmfast.kernels import resolve_impl
    assert resolve_impl("auto", torch.device("cpu")) == "numba"
    check_gae("auto", 5, 0.9, 0.8, torch.float32, 2e-4)


@pytest.mark.parametrize("dtype,tol", DTYPES + [(torch.bfloat16, 1e-3)])
@pytest.mark.parametrize("seed,n,h", [(0, 1, 4), (1, 50, 33), (2, 600, 64)])
def test_line_scores_numba_matches_reference_on_cpu(seed, n, h, dtype, tol):
    check_line_scores("numba", seed, n, h, dtype, tol * 10)


@pytest.mark.parametrize("dtype,tol", DTYPES)
@pytest.mark.parametrize("dual_clip", [None, 3.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_ppo_loss_numba_matches_reference_on_cpu(seed, dual_clip, dtype, tol):
    check_ppo_loss("numba", seed, dual_clip, dtype, tol, n=40000)


@pytest.mark.parametrize("dtype,tol", DTYPES)
@pytest.mark.parametrize("temperature,chunk_size,chunk_elements",
                         [(1.0, None, None), (0.7, 16, 16 * 50), (1.3, 7, 7 * 33)])
def test_token_logprobs_numba_matches_reference_on_cpu(temperature, chunk_size, chunk_elements,
                                                      dtype, tol, monkeypatch):
    check_token_logprobs("numba", 4, 45, 24, 301, temperature, chunk_size, dtype, tol * 10,
                         monkeypatch, chunk_elements)
