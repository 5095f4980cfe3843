"""GPU check of the Triton kernels: correctness against the torch reference and time against
eager torch (CUDA events), at production shapes, bf16 inputs. token_logprobs is timed against
two baselines: the float32 reference (exact) and the usual eager bf16 path.

    python bench/gpu_check.py out.json [--tokens 1048576] [--vocab 152064] [--hidden 4096]

token_logprobs uses --logprob-tokens rows (default 16384) so the full-logits baseline fits in
memory (16384 x 152064 fp32 logits = 10 GB). Exits with an error when CUDA is unavailable."""
import argparse
import json
import sys

import torch

from prmfast import kernels


def cuda_time_ms(fn, repeats=10):
    fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / repeats


def max_error(got, expected):
    return max(float((g.float() - e.float()).abs().max()) for g, e in zip(got, expected))


def packed_batch(n, dev, seqs=1024):
    cuts = torch.sort(torch.randint(0, n, (seqs - 1,), device=dev)).values
    cu = torch.cat([torch.zeros(1, dtype=torch.long, device=dev), cuts,
                    torch.full((1,), n, dtype=torch.long, device=dev)])
    bf = lambda: torch.randn(n, device=dev).to(torch.bfloat16)
    return dict(values=bf(), prm_scores=bf(), kl=bf().abs(), line_end=torch.rand(n, device=dev) < 0.1,
                outcome=(torch.rand(seqs, device=dev) < 0.5).float(),
                passed=torch.rand(seqs, device=dev) < 0.5, cu_seqlens=cu)


def cases(args, dev):
    n = args.tokens
    b = packed_batch(n, dev)
    kw = dict(gamma=0.99, lam=0.95, kl_coef=0.05, prm_coef_fail=0.25, prm_coef_pass=0.025,
              normalize_by_lines=True)
    yield "dense_rewards_gae", lambda impl: kernels.dense_rewards_gae(**b, impl=impl, **kw)
    yield "gae", lambda impl: kernels.gae(b["prm_scores"], b["values"], b["cu_seqlens"], gamma=0.99,
                                         lam=0.95, impl=impl)
    r = lambda: torch.randn(n, device=dev).to(torch.bfloat16)
    ppo = dict(old_logprobs=r(), advantages=r(), old_values=r(), returns=r(), cu_seqlens=b["cu_seqlens"])
    lp0, v0 = ppo["old_logprobs"] + 0.1 * r(), ppo["old_values"] + 0.1 * r()

    def ppo_step(impl):
        lp, v = lp0.clone().requires_grad_(True), v0.clone().requires_grad_(True)
        loss = kernels.ppo_loss(lp, ppo["old_logprobs"], ppo["advantages"], v, ppo["old_values"],
                                ppo["returns"], ppo["cu_seqlens"], clip_low=0.2, clip_high=0.2,
                                dual_clip=3.0, value_clip=0.2, vf_coef=0.5, impl=impl)[0]
        loss.backward()
        return loss.detach(), lp.grad, v.grad
    yield "ppo_loss fwd+bwd", ppo_step
    rows = args.line_rows
    hidden = torch.randn(rows, args.hidden, device=dev, dtype=torch.bfloat16)
    weight = torch.randn(args.hidden, device=dev, dtype=torch.bfloat16)
    ends = torch.rand(rows, device=dev) < 0.1

    def line_step(impl):
        h, w = hidden.clone().requires_grad_(True), weight.clone().requires_grad_(True)
        s = kernels.line_scores(h, w, torch.zeros(1, device=dev), ends, impl=impl)
        s.sum().backward()
        return s.detach(), h.grad, w.grad
    yield "line_scores fwd+bwd", line_step
    m = args.logprob_tokens
    h_lm = torch.randn(m, args.hidden, device=dev, dtype=torch.bfloat16)
    w_lm = (torch.randn(args.vocab, args.hidden, device=dev) / args.hidden ** 0.5).to(torch.bfloat16)
    targets = torch.randint(0, args.vocab, (m,), device=dev)

    def logprob_step(impl):
        h, w = h_lm.clone().requires_grad_(True), w_lm.clone().requires_grad_(True)
        lp, entropy = kernels.token_logprobs(h, w, targets, impl=impl)
        lp.sum().backward()
        return lp.detach(), h.grad, w.grad, entropy.detach()
    yield "token_logprobs fwd+bwd", logprob_step

    def eager_or_fused(impl):
        """"torch" here is the usual eager PPO path: bf16 logits from the lm_head matmul, then
        log-softmax, gather and entropy in fp32 (all [N, V] tensors materialised)."""
        if impl == "triton":
            return logprob_step("triton")
        h, w = h_lm.clone().requires_grad_(True), w_lm.clone().requires_grad_(True)
        log_probs = (h @ w.T).float().log_softmax(-1)
        lp = log_probs.gather(-1, targets[:, None]).squeeze(-1)
        entropy = -(log_probs.exp() * log_probs).sum(-1)
        lp.sum().backward()
        return lp.detach(), h.grad, w.grad, entropy.detach()
    yield "token_logprobs vs bf16 eager", eager_or_fused


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="path of the JSON results")
    parser.add_argument("--tokens", type=int, default=1 << 20)
    parser.add_argument("--line-rows", type=int, default=1 << 18)
    parser.add_argument("--logprob-tokens", type=int, default=16384)
    parser.add_argument("--vocab", type=int, default=152064)
    parser.add_argument("--hidden", type=int, default=4096)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("gpu_check.py needs a CUDA device: torch.cuda.is_available() is False")
    dev = torch.device("cuda")
    torch.manual_seed(0)
    rows = []
    for name, run in cases(args, dev):
        err = max_error(run("triton"), run("torch"))
        triton_ms, torch_ms = cuda_time_ms(lambda: run("triton")), cuda_time_ms(lambda: run("torch"))
        torch.cuda.reset_peak_memory_stats()
        run("triton")
        peak_triton = torch.cuda.max_memory_allocated() / 2 ** 20
        torch.cuda.reset_peak_memory_stats()
        run("torch")
        peak_torch = torch.cuda.max_memory_allocated() / 2 ** 20
        rows.append(dict(op=name, max_abs_err=err, triton_ms=triton_ms, torch_ms=torch_ms,
                         speedup=torch_ms / triton_ms, triton_peak_mib=peak_triton,
                         torch_peak_mib=peak_torch))
        print(f"{name:26s} err={err:.2e} triton={triton_ms:9.3f}ms torch={torch_ms:9.3f}ms "
              f"x{torch_ms / triton_ms:6.2f} peak {peak_triton:8.0f}/{peak_torch:8.0f} MiB", flush=True)
    with open(args.out, "w") as f:
        json.dump(dict(device=torch.cuda.get_device_name(), args=vars(args), results=rows), f,
                  indent=2)


if __name__ == "__main__":
    main()
