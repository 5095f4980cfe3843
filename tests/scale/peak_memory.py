"""Peak memory of one PPO update with SmolLM2-135M on CPU: packed + kernels.token_logprobs vs the
naive padded path (full [B, T, V] logits, log_softmax, gather). Each mode runs in a fresh
subprocess; peak = VmHWM after the update, with VmHWM reset (/proc/self/clear_refs = 5) just
before it, minus VmRSS at that point; ru_maxrss is printed too.

    .venv/bin/python tests/scale/peak_memory.py [--lengths 512,384,256,128]
"""
import argparse
import json
import resource
import subprocess
import sys
import time

MODEL = "/work/shared/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"


def _status(key: str) -> int:
    """A /proc/self/status field in MiB."""
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) // 1024
    raise KeyError(key)


def run_mode(mode: str, lengths: list[int]) -> dict:
    import torch

    from prmfast import kernels
    from prmfast.models import ValueModel, load_policy
    from prmfast.models.packed import pack_sequences, packed_logprobs, packed_values

    torch.manual_seed(0)
    torch.set_num_threads(2)
    policy, _ = load_policy(MODEL)
    critic = ValueModel.from_causal_lm(policy)
    params = list(policy.parameters()) + list(critic.parameters())
    opt = torch.optim.AdamW(params, lr=1e-6)
    seqs = [torch.randint(0, policy.config.vocab_size, (n,)).tolist() for n in lengths]
    ids, cu = pack_sequences(seqs)
    n = len(ids)
    old_lp, adv, old_v, ret = (torch.randn(n) * 0.1 for _ in range(4))
    for p in params:                                   # optimizer state exists before measuring
        opt.state[p] = {"step": torch.tensor(0.0), "exp_avg": torch.zeros_like(p),
                        "exp_avg_sq": torch.zeros_like(p)}
    rss_before = _status("VmRSS")
    open("/proc/self/clear_refs", "w").write("5")     # reset VmHWM to the current RSS
    start = time.perf_counter()
    if mode == "packed":
        lp, _ = packed_logprobs(policy, ids, cu)
        values = packed_values(critic, ids, cu)
    else:
        padded = torch.nn.utils.rnn.pad_sequence([torch.tensor(s) for s in seqs], batch_first=True)
        mask = torch.nn.utils.rnn.pad_sequence([torch.ones(len(s)) for s in seqs],
                                               batch_first=True).bool()
        logp = policy(input_ids=padded, attention_mask=mask.long()).logits.log_softmax(-1)
        tok_lp = logp[:, :-1].gather(2, padded[:, 1:, None])[..., 0]
        lp = torch.cat([tok_lp.new_zeros(len(seqs), 1), tok_lp], 1)[mask]
        values = critic.values(padded, mask.long())[mask]
    loss, _ = kernels.ppo_loss(lp, old_lp, adv, values, old_v, ret, cu, clip_low=0.2,
                               clip_high=0.2, dual_clip=None, value_clip=0.2, vf_coef=0.5)
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return {"mode": mode, "tokens": n, "lengths": lengths, "rss_before_mib": rss_before,
            "peak_mib": _status("VmHWM"), "peak_delta_mib": _status("VmHWM") - rss_before,
            "ru_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
            "update_s": round(time.perf_counter() - start, 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lengths", default="512,384,256,128")
    parser.add_argument("--mode", choices=["packed", "padded"])
    args = parser.parse_args()
    lengths = [int(x) for x in args.lengths.split(",")]
    if args.mode:
        print(json.dumps(run_mode(args.mode, lengths)))
        return
    for mode in ("padded", "packed"):
        out = subprocess.run([sys.executable, __file__, "--mode", mode, "--lengths", args.lengths],
                             capture_output=True, text=True, check=True).stdout
        print(out.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
