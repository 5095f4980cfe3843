"""One training step of a tiny Llama on a fixed global batch, for the distributed tests.

    python dist_step.py none OUT.pt                          # one process, whole batch
    torchrun --nproc_per_node 2 dist_step.py ddp|fsdp OUT.pt # each rank its shard
    torchrun --nproc_per_node 2 dist_step.py deepspeed OUT.pt CONFIG.json   # ZeRO-2 or -3
The forward is the packed one (PackedPolicy, kernels.token_logprobs) under the engine. Rank 0
writes the parameters after the step to OUT.pt. Sequences have unequal lengths, so the result
matches the single process only if the loss is scaled to the global token mean.
"""
import sys

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from prmfast import distributed as D
from prmfast.models.packed import PackedPolicy, pack_sequences


def main() -> None:
    backend, out = sys.argv[1], sys.argv[2]
    ds_config = None
    if len(sys.argv) > 3:  # plain SGD without clipping, as in the single-process run; ZeRO-3
        # partitions every parameter of the tiny model (no persistence threshold)
        ds_config = D.load_deepspeed_config(sys.argv[3], {
            "zero_allow_untested_optimizer": True, "gradient_clipping": 0.0,
            "zero_optimization.stage3_param_persistence_threshold": 0})
    D.init_distributed(backend, comm="gloo")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64)
    model = LlamaForCausalLM(config)
    gen = torch.Generator().manual_seed(1)
    batch = [torch.randint(0, 64, (n,), generator=gen) for n in (5, 9, 3, 12, 7)]
    wrapped = D.wrap_model(PackedPolicy(model), backend, lambda p: torch.optim.SGD(p, lr=0.5),
                           max_grad_norm=None, ds_config=ds_config)
    local = D.shard(batch)  # one packed forward per rank
    ids, cu = pack_sequences([seq.tolist() for seq in local])
    n_local = sum(len(seq) - 1 for seq in local)
    logprobs, _ = wrapped(ids, cu)
    loss = -logprobs.sum() / n_local * D.token_mean_scale(n_local)
    wrapped.backward(loss)
    wrapped.step()
    metrics = D.all_reduce_metrics({"tokens": float(n_local)}, op="sum")
    assert metrics["tokens"] == sum(len(seq) - 1 for seq in batch), metrics
    assert D.gather_shards(local)[3].tolist() == batch[3].tolist()
    state = D.full_state_dict(wrapped)
    if D.is_main():
        torch.save({k.removeprefix("model."): v for k, v in state.items()}, out)
    D.exit_rank(0)      # not a return: locals freed after leaving the group can deadlock


if __name__ == "__main__":
    main()
