"""Random packed batches for the kernel tests: variable lengths with empty and length-1
sequences, one sequence without line ends."""
import torch

# The coefficients these tests were written with (the paper's dense-reward weights, PPO's usual
# clip ranges). The kernels take them as required keywords; their defaults live in prmfast.config.
REWARD_COEFS = dict(prm_coef_fail=0.25, prm_coef_pass=0.025, normalize_by_lines=True)
PPO_COEFS = dict(clip_low=0.2, clip_high=0.2, dual_clip=None, value_clip=0.2, vf_coef=0.5)


def random_lengths(gen, n_seq, max_len):
    lengths = torch.randint(2, max_len + 1, (n_seq,), generator=gen)
    lengths[0], lengths[1] = 0, 1
    return lengths[torch.randperm(n_seq, generator=gen)]


def cu_from_lengths(lengths):
    cu = torch.zeros(lengths.numel() + 1, dtype=torch.int64)
    cu[1:] = torch.cumsum(lengths, 0)
    return cu


def reward_batch(seed, n_seq=7, max_len=40, dtype=torch.float64):
    """-> dict of the dense_rewards_gae inputs (cu_seqlens int64)."""
    gen = torch.Generator().manual_seed(seed)
    lengths = random_lengths(gen, n_seq, max_len)
    cu = cu_from_lengths(lengths)
    n = int(cu[-1])
    line_end = torch.rand(n, generator=gen) < 0.2
    longest = int(lengths.argmax())
    line_end[cu[longest]:cu[longest + 1]] = False
    return dict(
        values=torch.randn(n, generator=gen, dtype=torch.float64).to(dtype),
        prm_scores=torch.randn(n, generator=gen, dtype=torch.float64).to(dtype),
        line_end=line_end,
        kl=torch.rand(n, generator=gen, dtype=torch.float64).to(dtype),
        outcome=(torch.rand(n_seq, generator=gen) < 0.5).to(dtype),
        passed=torch.rand(n_seq, generator=gen) < 0.5,
        cu_seqlens=cu,
    )


def ppo_batch(seed, n=300, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    r = lambda scale=1.0: (scale * torch.randn(n, generator=gen, dtype=torch.float64)).to(dtype)
    old_lp = -torch.rand(n, generator=gen, dtype=torch.float64).to(dtype) * 3
    old_v = r()
    return dict(logprobs=old_lp + r(0.3), old_logprobs=old_lp, advantages=r(), values=old_v + r(0.3),
                old_values=old_v, returns=r(), cu_seqlens=torch.tensor([0, n // 3, n // 3, n]))


def as_float64(batch):
    return {k: v.double() if v.is_floating_point() else v for k, v in batch.items()}
