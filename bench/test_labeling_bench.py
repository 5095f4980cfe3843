"""Labelling throughput: batched binary search (all open searches per round in one rollout call
and one sandbox batch) vs the same algorithm run sequentially (one response at a time, so one
probe per rollout call), same policy, K, wave schedule, seed and probe cache.

    .venv/bin/python -m pytest bench/test_labeling_bench.py --benchmark-only -s

The policy is a tiny Llama briefly trained on the synthetic suite's references (so some prefixes
are recoverable and early stop matters); sizes are small enough for a 2-core CPU in minutes.
"""
import time

import pytest
import torch

from prmfast.config import load_config
from prmfast.labeling.collect import sample_responses, to_response
from prmfast.labeling.driver import label_responses
from prmfast.labeling.policy import Policy, make_sandbox

N_TASKS, K = 16, 8


@pytest.fixture(scope="module")
def policy_and_responses(tmp_path_factory):
    from prmfast import sft
    from prmfast.data import synthetic
    from prmfast.models import build_tiny_model, save_policy, train_tokenizer

    tmp = tmp_path_factory.mktemp("labeling_bench")
    cfg = load_config("smoke", sets=[f"collect.k={K}", "collect.first_wave=2", "sft.epochs=10",
                                     "sampling.max_new_tokens=64", "sampling.batch_size=64"])
    train = synthetic.generate("train", n=300, seed=0, max_horizon=4)
    tok = train_tokenizer([t.prompt + t.reference for t in train], cfg.model.vocab_size)
    torch.manual_seed(0)
    model = build_tiny_model(tok, cfg.model)
    sft.train(model, sft.build_examples(tok, train, 512), cfg.sft, tmp / "state", seed=0,
              progress=False)
    save_policy(model, tok, tmp / "ckpt_0001")
    policy = Policy(tmp / "ckpt_0001", cfg, make_sandbox(cfg))
    tasks = train[:N_TASKS]
    rows = sample_responses(policy, tasks, 1, cfg, tmp / "responses.jsonl", temperature=1.0)
    by_id = {t.task_id: t for t in tasks}
    return cfg, policy, [to_response(r, by_id[r["task_id"]], policy.tokenizer) for r in rows]


def _throughput(labelled, wall_s):
    executions = sum(lab.cost.executions for lab in labelled)
    return {"responses_per_min": 60 * len(labelled) / wall_s,
            "executions_per_s": executions / wall_s, "executions": executions, "wall_s": wall_s}


def test_labeling_throughput_batched_vs_sequential(benchmark, policy_and_responses):
    cfg, policy, responses = policy_and_responses

    def batched():
        return label_responses(responses, policy.prober(K, None, seed=0))

    start = time.perf_counter()
    out_batched = benchmark.pedantic(batched, rounds=1, iterations=1)
    fast = _throughput(out_batched, time.perf_counter() - start)

    start = time.perf_counter()
    prober = policy.prober(K, None, seed=0)
    out_seq = [label_responses([r], prober)[0] for r in responses]
    slow = _throughput(out_seq, time.perf_counter() - start)

    failed = sum(not r.passed for r in responses)
    ratio = fast["responses_per_min"] / slow["responses_per_min"]
    benchmark.extra_info.update({"batched": fast, "sequential": slow, "speedup": ratio,
                                 "responses": len(responses), "failed": failed, "k": K})
    print(f"\nlabelling {len(responses)} responses ({failed} failed), K={K}: batched "
          f"{fast['responses_per_min']:.1f} resp/min, {fast['executions_per_s']:.1f} exec/s; "
          f"sequential {slow['responses_per_min']:.1f} resp/min, {slow['executions_per_s']:.1f} "
          f"exec/s; speed-up {ratio:.2f}x")
    assert [lab.m_star is None for lab in out_batched] == [r.passed for r in responses]
