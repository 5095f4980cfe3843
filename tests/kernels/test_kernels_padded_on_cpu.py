"""Padded [B, T] + mask wrappers agree with the packed ops."""
import torch

from kernel_batches import PPO_COEFS, REWARD_COEFS, reward_batch
from prmfast import kernels


def test_padded_wrappers_match_packed_on_cpu():
    b = reward_batch(2, n_seq=5, max_len=12)
    lengths = (b["cu_seqlens"][1:] - b["cu_seqlens"][:-1])
    mask = torch.arange(int(lengths.max()))[None, :] < lengths[:, None]
    padded = {k: kernels.unpack(mask, b[k])[0] for k in ("values", "prm_scores", "line_end", "kl")}
    kw = dict(gamma=0.9, lam=0.8, kl_coef=0.1, **REWARD_COEFS)
    got = kernels.dense_rewards_gae_padded(**padded, outcome=b["outcome"], passed=b["passed"],
                                           mask=mask, **kw)
    expected = kernels.dense_rewards_gae(**b, **kw)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g[mask], e)
        assert not g[~mask].any()
    adv, _ = kernels.gae_padded(got[0], padded["values"], mask, gamma=0.9, lam=0.8)
    torch.testing.assert_close(adv, got[1])
    cu, *packed = kernels.pack(mask, got[1], padded["values"])
    torch.testing.assert_close(cu, b["cu_seqlens"])
    loss, _ = kernels.ppo_loss_padded(padded["values"], padded["values"], got[1], padded["values"],
                                      padded["values"], got[2], mask, **PPO_COEFS)
    ref, _ = kernels.ppo_loss(b["values"], b["values"], expected[1], b["values"], b["values"],
                              expected[2], b["cu_seqlens"], **PPO_COEFS)
    torch.testing.assert_close(loss, ref)
