"""Reward assembly and GAE on packed sequences: one lane per sequence, BLOCK_S sequences per
program, each lane walking its own sequence backwards from its last token."""
import triton
import triton.language as tl


@triton.jit
def reward_scan_kernel(values_ptr, prm_ptr, line_end_ptr, kl_ptr, outcome_ptr, passed_ptr,
                       rewards_in_ptr, cu_ptr, n_seq, max_len, gamma, lam, kl_coef, coef_fail,
                       coef_pass, rewards_out_ptr, adv_out_ptr, ret_out_ptr,
                       ASSEMBLE: tl.constexpr, NORMALIZE: tl.constexpr, SCAN: tl.constexpr,
                       BLOCK_S: tl.constexpr):
    """ASSEMBLE: build rewards from prm/line_end/kl/outcome (else read rewards_in).
    SCAN: run GAE and write advantages/returns. Token pointers index [N]; fp32 math."""
    seq = tl.program_id(0) * BLOCK_S + tl.arange(0, BLOCK_S)
    seq_ok = seq < n_seq
    begin = tl.load(cu_ptr + seq, mask=seq_ok, other=0).to(tl.int64)
    end = tl.load(cu_ptr + seq + 1, mask=seq_ok, other=0).to(tl.int64)
    length = end - begin
    per_line = tl.zeros([BLOCK_S], dtype=tl.float32)
    outcome = tl.zeros([BLOCK_S], dtype=tl.float32)
    if ASSEMBLE:
        passed = tl.load(passed_ptr + seq, mask=seq_ok, other=0)
        outcome = tl.load(outcome_ptr + seq, mask=seq_ok, other=0.0).to(tl.float32)
        per_line = tl.where(passed != 0, coef_pass, coef_fail) + per_line
        if NORMALIZE:
            n_lines = tl.zeros([BLOCK_S], dtype=tl.float32)
            for i in range(0, max_len):
                ends = tl.load(line_end_ptr + begin + i, mask=i < length, other=0)
                n_lines += ends.to(tl.float32)
            per_line = tl.where(n_lines > 0, per_line / tl.maximum(n_lines, 1.0), 0.0)
    next_adv = tl.zeros([BLOCK_S], dtype=tl.float32)
    next_value = tl.zeros([BLOCK_S], dtype=tl.float32)
    for i in range(0, max_len):
        live = i < length
        t = end - 1 - i
        if ASSEMBLE:
            kl = tl.load(kl_ptr + t, mask=live, other=0.0).to(tl.float32)
            prm = tl.load(prm_ptr + t, mask=live, other=0.0).to(tl.float32)
            ends = tl.load(line_end_ptr + t, mask=live, other=0)
            reward = -kl_coef * kl + tl.where(ends != 0, per_line * prm, 0.0)
            reward += tl.where(i == 0, outcome, 0.0)
            tl.store(rewards_out_ptr + t, reward, mask=live)
        else:
            reward = tl.load(rewards_in_ptr + t, mask=live, other=0.0).to(tl.float32)
        if SCAN:
            value = tl.load(values_ptr + t, mask=live, other=0.0).to(tl.float32)
            next_adv = reward + gamma * next_value - value + gamma * lam * next_adv
            tl.store(adv_out_ptr + t, next_adv, mask=live)
            tl.store(ret_out_ptr + t, next_adv + value, mask=live)
            next_value = value
