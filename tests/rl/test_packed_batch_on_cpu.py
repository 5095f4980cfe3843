"""PackedBatch's vectorised layout and the packed PRM path against straightforward references,
on fresh random batches (empty responses and one-token prompts included)."""
import random

import pytest
import torch

from prmfast.prm import ValuePRM
from prmfast.rl.experience import PackedBatch, critic_values, policy_logprobs
from prmfast.models.packed import PackedCritic, PackedPolicy


def _sequences(seed, n_seq=9):
    """Sequences whose prompts (1-7 tokens) are shared by 1-4 of them, interleaved."""
    rng = random.Random(seed)
    seqs, plens = [], []
    while len(seqs) < n_seq:
        prompt = [rng.randrange(3, 90) for _ in range(rng.randint(1, 7))]
        for _ in range(rng.randint(1, 4)):
            response = [rng.randrange(3, 90) for _ in range(rng.choice([0, 1, rng.randint(2, 12)]))]
            seqs.append(prompt + response)
            plens.append(len(prompt))
    order = list(range(len(seqs)))
    rng.shuffle(order)
    return [seqs[i] for i in order[:n_seq]], [plens[i] for i in order[:n_seq]]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_layout_equals_a_per_sequence_build_on_cpu(seed):
    seqs, plens = _sequences(seed)
    batch = PackedBatch.from_sequences(seqs, plens, pad_id=0)
    width = max(map(len, seqs))
    x = batch.packed()
    ids = x.input_ids
    assert ids[x.response].tolist() == [t for s, p in zip(seqs, plens) for t in s[p:]]
    assert len(ids) == sum(len(s) - p for s, p in zip(seqs, plens)) + sum(
        len(p) for p in {tuple(s[:p]) for s, p in zip(seqs, plens)})   # each prompt once
    prompt_last = [t for s, p in zip(seqs, plens) if len(s) > p for t in [s[p - 1]] + s[p:-1]]
    assert ids[x.act].tolist() == prompt_last          # act: the token before each response token
    assert batch.cu_seqlens.tolist() == [sum(len(s) - p for s, p in zip(seqs[:i], plens[:i]))
                                         for i in range(len(seqs) + 1)]
    assert batch.num_tokens == len(x.response)
    assert batch.input_ids.tolist() == [s + [0] * (width - len(s)) for s in seqs]
    assert batch.attention_mask.tolist() == [[1] * len(s) + [0] * (width - len(s)) for s in seqs]
    assert batch.act_index.tolist() == [i * width + j - 1 for i, (s, p) in
                                        enumerate(zip(seqs, plens)) for j in range(p, len(s))]
    assert batch.targets.tolist() == [t for s, p in zip(seqs, plens) for t in s[p:]]
    chosen = random.Random(seed).sample(range(len(seqs)), 4)
    sub, index = batch.select(chosen, pad_id=0)
    assert sub.sequences == [seqs[i] for i in chosen]
    assert torch.equal(batch.targets[index], sub.targets)


def test_no_prompt_token_is_refused_on_cpu():
    with pytest.raises(ValueError, match="prompt_lens"):
        PackedBatch.from_sequences([[1, 2]], [0], pad_id=0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_packed_forwards_equal_the_padded_batch_on_cpu(models, seed):
    """Policy log-probs, critic values and PRM line scores read at the response tokens of the
    packed forwards (prompts shared by several sequences packed once) equal the padded [S, T]
    forwards read at act_index / tok_index."""
    _, tok, policy, _, critic = models
    torch.nn.init.normal_(critic.head.weight, std=0.1)
    seqs, plens = _sequences(seed)
    seqs = [[t % len(tok) for t in s] for s in seqs]
    batch = PackedBatch.from_sequences(seqs, plens, tok.pad_token_id)
    assert (batch.packed().parents >= 0).any()
    line_end = torch.rand(batch.num_tokens, generator=torch.Generator().manual_seed(seed)) < 0.4
    with torch.no_grad():
        lp, ent = policy_logprobs(PackedPolicy(policy, temperature=0.7), batch)
        values = critic_values(PackedCritic(critic), batch)
        scores = ValuePRM.of(critic).packed_line_scores(batch, line_end)
        logits = policy(input_ids=batch.input_ids,
                        attention_mask=batch.attention_mask).logits / 0.7
        logp = logits.log_softmax(-1).reshape(-1, logits.shape[-1])[batch.act_index]
        hidden = critic.hidden(batch.input_ids, batch.attention_mask).reshape(-1, 32)
        head = critic.head(hidden).squeeze(-1)
    torch.testing.assert_close(lp, logp.gather(1, batch.targets[:, None])[:, 0])
    torch.testing.assert_close(ent, -(logp.exp() * logp).sum(-1))
    torch.testing.assert_close(values, head[batch.act_index])
    torch.testing.assert_close(scores, torch.where(line_end, head[batch.tok_index], 0.0))


def test_forwards_hand_back_views_of_the_engine_outputs_on_cpu(models):
    """DeepSpeed hooks an engine's forward outputs to start its backward; the loss's first
    autograd pass (distributed.backward_per_model) must stop before them, or ZeRO-2 reduces an
    empty gradient bucket (tests/scale/test_distributed_on_cpu.py). policy_logprobs and
    critic_values hand back views, whose gradients never reach the outputs' hooks."""
    _, tok, policy, _, critic = models
    seqs, plens = _sequences(0)
    batch = PackedBatch.from_sequences([[t % len(tok) for t in s] for s in seqs], plens,
                                       tok.pad_token_id)
    outputs, fired = [], []

    def engine(module):
        def forward(*args, **kwargs):
            out = module(*args, **kwargs)
            for t in out if isinstance(out, tuple) else (out,):
                t.register_hook(lambda grad: fired.append(grad))
            outputs.append(out)
            return out
        return forward
    logprobs, entropy = policy_logprobs(engine(PackedPolicy(policy)), batch)
    values = critic_values(engine(PackedCritic(critic)), batch)
    assert logprobs is not outputs[0][0] and entropy is not outputs[0][1]
    assert values is not outputs[1]
    torch.testing.assert_close(values, outputs[1])
    torch.autograd.grad((logprobs + entropy + values).sum(), [logprobs, entropy, values])
    assert not fired


@pytest.mark.parametrize("seed", range(5))
def test_prompt_groups_are_the_sequences_of_each_distinct_prompt_on_cpu(seed):
    seqs, plens = _sequences(seed, n_seq=12)
    groups = PackedBatch.from_sequences(seqs, plens, pad_id=0).prompt_groups()
    assert sorted(i for g in groups for i in g) == list(range(len(seqs)))
    prompts = [tuple(seqs[g[0]][:plens[g[0]]]) for g in groups]
    assert len(set(prompts)) == len(groups)
    for prompt, group in zip(prompts, groups):
        assert all(tuple(seqs[i][:plens[i]]) == prompt for i in group)
        assert group == sorted(group)
