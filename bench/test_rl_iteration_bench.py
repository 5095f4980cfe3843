"""RL iteration benchmark (the embedded default, rl_prm: every forward of the method), at 32 and
128 responses per iteration, measured against the machine in the same run.

    PRMFAST_RL_BENCH_RUN=runs/x .venv/bin/python -m pytest bench/test_rl_iteration_bench.py \
        --benchmark-only -s

RUN (default runs/bench) is a default-preset run folder with sft/model and prm/model:
`python -m prmfast.train all --out runs/x` makes one (sft, rl_baseline, collect and prm are
what it needs). Per size, one trainer (prmfast.rl.bench.build_trainer):
- iterations: 1 warm-up then 5 measured iterations, the two sizes alternating; median total
  and median of each part, and the time per response at 128 against 32;
- update FLOP/s: the matmul FLOPs of one update (torch.utils.flop_counter, counted on the last
  iteration's experience) over its time, against a plain 2048^3 fp32 matmul and a matmul of
  the update's own commonest shape, both timed in the same run;
- attention: forward + backward of the policy on one update minibatch (half the responses):
  packed with shared prompts (the trainer's layout), whole sequences with bucketed attention,
  a right-padded [S, T] batch, and the dense [N, N] block mask (the path before issue 18),
  results compared;
- side by side: the update and the experience's four forwards with the two models' passes side
  by side on two threads (prmfast.rl.pairs) against in order, on the same experience, arms
  alternating (skipped when torch has one thread: then they are the same code);
- generation: our HF backend (preallocated KV cache, stopped rows dropped) vs the same loop
  on transformers' DynamicCache and with every row decoded to the last step (the same samples,
  asserted) and plain `model.generate` on the iteration's prompts, generated tokens per second.
Each run appends one JSON row (machine, date, commit, versions, load, figures) to
bench/results/rl_iteration.jsonl.
"""
import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

import pytest
import torch

from prmfast import kernels
from prmfast.models import encode
from prmfast.models.packed import pack_sequences, packed_logprobs
from prmfast.rl.bench import bench_config, build_trainer
from prmfast.rollout import HFGenerateBackend

RUN = Path(os.environ.get("PRMFAST_RL_BENCH_RUN", "runs/bench"))
RESULTS = Path(__file__).parent / "results" / "rl_iteration.jsonl"
SIZES = (32, 128)
WARMUP, MEASURED = 1, 5
PARTS = ("generate", "sandbox", "lines", "policy_fwd", "ref_fwd", "critic_fwd", "prm_fwd",
         "kernels", "update")
ROW: dict = {}


@pytest.fixture(scope="module", autouse=True)
def results_row():
    """Collects the module's figures and appends them as one row to RESULTS at the end."""
    if not (RUN / "sft" / "model").is_dir() or not (RUN / "prm" / "model").is_dir():
        pytest.skip(f"no run folder with sft/model and prm/model at {RUN} (set "
                    f"PRMFAST_RL_BENCH_RUN; make one with python -m prmfast.train all --out DIR)")
    ROW.clear()
    ROW.update(environment(), load_before=os.getloadavg()[0])
    yield ROW
    ROW["load_after"] = os.getloadavg()[0]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as f:
        f.write(json.dumps(ROW) + "\n")


def environment() -> dict:
    def git(*args):
        out = subprocess.run(["git", *args], capture_output=True, text=True,
                             cwd=Path(__file__).parent)
        return out.stdout.strip()
    import numba
    import transformers
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), platform.processor())
    return {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "commit": git("rev-parse", "HEAD"),
            "dirty": bool(git("status", "--porcelain", "--", "prmfast")),
            "machine": {"cpu": cpu, "cores": os.cpu_count(), "arch": platform.machine(),
                        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None},
            "versions": {"python": platform.python_version(), "torch": torch.__version__,
                         "transformers": transformers.__version__, "numba": numba.__version__},
            "torch_threads": torch.get_num_threads(), "run": str(RUN)}


def make_trainer(n):
    """A warmed-up trainer for n responses per iteration; `trainer.captured["exp"]` is the
    experience of its last iteration (captured from its update), `trainer.rows` its rows."""
    cfg = bench_config("default", WARMUP + MEASURED,
                       [f"rl.prompts_per_step={n // 4}", "rl.samples_per_prompt=4"])
    trainer = build_trainer(cfg, RUN)
    captured = {}
    update = trainer.update

    def capturing_update(exp, **kwargs):
        captured["exp"] = exp
        return update(exp, **kwargs)
    trainer.update = capturing_update
    trainer.rows = [trainer.train_step() for _ in range(WARMUP)]
    trainer.captured = captured
    return trainer


@pytest.fixture(scope="module")
def trainers():
    """One trainer per size, built together so their iterations can alternate."""
    built = {n: make_trainer(n) for n in SIZES}
    yield built
    for trainer in built.values():
        trainer.sandbox.close()


@pytest.fixture(params=SIZES, ids=lambda n: f"{n}resp")
def trainer(request, trainers):
    return trainers[request.param]


def median(values):
    return statistics.median(values) if values else 0.0


def timed(fn, rounds):
    """Median wall time of `rounds` calls of fn()."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return median(times)


def benchmarked(benchmark, fn, rounds):
    """Median wall time of `rounds` calls of fn() through pytest-benchmark (recorded in its
    table), or timed here when benchmarks are disabled."""
    benchmark.pedantic(fn, rounds=rounds, iterations=1)
    return benchmark.stats.stats.median if benchmark.stats else timed(fn, rounds)


def test_iterations(benchmark, report, trainers):
    """MEASURED rounds of one iteration per size, alternating, so that both sizes see the same
    machine (a shared one's load moves by tens of per cent within minutes)."""
    benchmark.pedantic(lambda: [t.rows.append(t.train_step()) for t in trainers.values()],
                       rounds=MEASURED, iterations=1)
    for n, trainer in trainers.items():
        rows = trainer.rows[WARMUP:]
        figures = {"total_s": median([r["time_total"] for r in rows]),
                   **{f"{p}_s": median([r[f"time_{p}"] for r in rows]) for p in PARTS},
                   "response_tokens": median([r["response_tokens"] for r in rows])}
        figures["per_response_ms"] = 1000 * figures["total_s"] / n
        figures["kernels_share"] = figures["kernels_s"] / figures["total_s"]
        ROW[f"iteration_{n}"] = figures
        report(f"rl iteration, {n} responses", **figures)
    first, *others = SIZES
    for n in others:
        ratio = (ROW[f"iteration_{n}"]["per_response_ms"]
                 / ROW[f"iteration_{first}"]["per_response_ms"])
        ROW[f"per_response_ratio_{n}_vs_{first}"] = ratio
        report(f"time per response, {n} vs {first} responses", ratio=ratio)


def matmul_gflops(m, k, n, rounds=5):
    """Best GFLOP/s of an fp32 [m, k] @ [k, n] matmul on this machine."""
    a, b = torch.randn(m, k), torch.randn(k, n)
    a @ b
    best = min(timed(lambda: a @ b, 1) for _ in range(rounds))
    return 2 * m * k * n / best / 1e9


def test_update_flops_against_a_plain_matmul(benchmark, report, trainer):
    """Matmul FLOP/s the PPO update achieves against plain matmuls timed in the same run."""
    from torch.utils.flop_counter import FlopCounterMode
    n = trainer.rl.prompts_per_step * trainer.rl.samples_per_prompt
    exp = trainer.captured["exp"]
    counter = FlopCounterMode(display=False)
    allowed, trainer.pairs.allowed = trainer.pairs.allowed, False   # the counter sees only its
    try:                                                            # own thread: count in order
        with counter:
            trainer.update(exp)
    finally:
        trainer.pairs.allowed = allowed
    flops = counter.get_total_flops()
    seconds = benchmarked(benchmark, lambda: trainer.update(exp), 3)
    tokens = len(exp.batch.packed().input_ids) // trainer.rl.minibatches
    hidden = trainer.policy.config.hidden_size
    figures = {"update_gflop": flops / 1e9, "update_s": seconds,
               "update_gflops": flops / seconds / 1e9,
               "matmul_2048_gflops": matmul_gflops(2048, 2048, 2048),
               "matmul_update_shape_gflops": matmul_gflops(
                   tokens, hidden, trainer.policy.config.intermediate_size)}
    figures["update_vs_matmul_2048"] = figures["update_gflops"] / figures["matmul_2048_gflops"]
    ROW[f"update_flops_{n}"] = figures
    report(f"update FLOP/s, {n} responses", **figures)


def test_attention_padded_vs_packed(benchmark, report, trainer):
    """Forward + backward of the policy's log-probs on one update minibatch (half the
    sequences, as rl.minibatches=2 splits them), four layouts: packed with shared prompts
    (what the trainer runs), packed whole sequences (bucketed attention), one right-padded
    [S, T] batch, and whole sequences under the dense [N, N] block mask (issue 18's starting
    point; once at 128 responses, it is quadratic). Results compared first."""
    n = trainer.rl.prompts_per_step * trainer.rl.samples_per_prompt
    policy = trainer.policy
    batch = trainer.captured["exp"].batch
    mb, _ = batch.select(list(range(0, len(batch.sequences), 2)), trainer.pad_id)
    shared = mb.packed()
    whole_ids, whole_cu = pack_sequences(mb.sequences)
    whole_at = torch.cat([torch.arange(start + p, end) for start, end, p in
                          zip(whole_cu[:-1].tolist(), whole_cu[1:].tolist(), mb.prompt_lens)])
    weight = policy.get_output_embeddings().weight
    temperature = trainer.cfg.sampling.temperature

    def packed(ids, cu, at, parents, attention):
        def run():
            lp, ent = packed_logprobs(policy, ids, cu, at=at, parents=parents,
                                      temperature=temperature, attention=attention)
            (lp.sum() + ent.sum()).backward()
            return lp.detach()
        return run

    def padded():
        hidden = policy.base_model(input_ids=mb.input_ids, attention_mask=mb.attention_mask,
                                   use_cache=False).last_hidden_state
        lp, ent = kernels.token_logprobs(hidden.reshape(-1, hidden.shape[-1])[mb.act_index],
                                         weight, mb.targets, temperature=temperature)
        (lp.sum() + ent.sum()).backward()
        return lp.detach()

    arms = {"shared": packed(shared.input_ids, shared.cu_seqlens, shared.response,
                             shared.parents, "bucketed"),
            "bucketed": packed(whole_ids, whole_cu, whole_at, None, "bucketed"),
            "padded": padded,
            "mask": packed(whole_ids, whole_cu, whole_at, None, "mask")}
    reference = arms["padded"]()
    for fn in arms.values():
        torch.testing.assert_close(fn(), reference, rtol=1e-4, atol=1e-4)
    figures = {"sequences": len(mb.sequences), "tokens_shared": len(shared.input_ids),
               "tokens_whole": len(whole_ids), "tokens_padded": mb.input_ids.numel()}
    figures["shared_s"] = benchmarked(benchmark, arms["shared"], 3)
    for name in ("bucketed", "padded"):
        figures[f"{name}_s"] = timed(arms[name], 3)
    figures["mask_s"] = timed(arms["mask"], 1 if n > SIZES[0] else 3)
    policy.zero_grad(set_to_none=True)
    for name in ("bucketed", "padded", "mask"):
        figures[f"{name}_vs_shared"] = figures[f"{name}_s"] / figures["shared_s"]
    ROW[f"attention_{n}"] = figures
    report(f"policy fwd+bwd on {len(mb.sequences)} sequences", **figures)


def experience_inputs(trainer):
    """(batch, facts) of the trainer's last experience, for make_experience again."""
    from prmfast.rl.experience import ResponseFacts
    exp = trainer.captured["exp"]
    cu, ends, comments = (t.tolist() for t in (exp.batch.cu_seqlens, exp.line_end,
                                               exp.comment_end))
    facts = []
    for s in range(len(cu) - 1):
        line_end = ends[cu[s]:cu[s + 1]]
        index = [sum(line_end[:t]) for t in range(len(line_end))]
        facts.append(ResponseFacts(line_end, index, comments[cu[s]:cu[s + 1]],
                                   bool(exp.passed[s]), float(exp.frac_passed[s])))
    return exp.batch, facts


def test_side_by_side_against_in_order(benchmark, report, trainer):
    """The update and the experience's four forwards, the two models' passes side by side on two
    threads against one after the other (torch's threads inside each operation), same
    experience, MEASURED alternating rounds (medians and the median of the per-round ratios)."""
    from prmfast.rl.experience import make_experience
    from prmfast.rl.trainer import StepTimer
    if torch.get_num_threads() < 2:
        pytest.skip("torch has one thread: side by side and in order are the same code")
    n = trainer.rl.prompts_per_step * trainer.rl.samples_per_prompt
    exp = trainer.captured["exp"]
    batch, facts = experience_inputs(trainer)
    parts = {"update": lambda: trainer.update(exp),
             "forwards": lambda: make_experience(
                 batch, facts, policy=trainer.policy_engine, reference=trainer.reference_fwd,
                 critic=trainer.critic_engine, prm=trainer.prm, cfg=trainer.exp_cfg,
                 timer=StepTimer(), run_pair=trainer.pairs.run)}
    times = {(arm, part): [] for arm in ("side_by_side", "in_order") for part in parts}
    try:
        for i in range(MEASURED):
            for arm in (("side_by_side", "in_order") if i % 2 else ("in_order", "side_by_side")):
                trainer.pairs.allowed = arm == "side_by_side"
                for part, fn in parts.items():
                    start = time.perf_counter()
                    fn()
                    times[(arm, part)].append(time.perf_counter() - start)
    finally:
        trainer.pairs.allowed = True
    benchmark.pedantic(parts["update"], rounds=1, iterations=1)
    figures = {}
    for part in parts:
        new, old = times[("side_by_side", part)], times[("in_order", part)]
        figures.update({f"{part}_side_by_side_s": median(new), f"{part}_in_order_s": median(old),
                        f"{part}_ratio": median([a / b for a, b in zip(new, old)])})
    ROW[f"side_by_side_{n}"] = figures
    report(f"side by side vs in order, {n} responses", **figures)


def test_generation_against_hf_generate(benchmark, report, trainer):
    """Generated tokens per second: our backend (prmfast.rollout.hf), the same with every row
    decoded to the last step (stopped rows kept in the batch, as before issue 18's second
    session; the same samples, asserted), on transformers' DynamicCache, and plain
    model.generate with the same sampling settings on the same prompts and global seed."""
    n = trainer.rl.prompts_per_step * trainer.rl.samples_per_prompt
    cfg, tok, model = trainer.cfg, trainer.tokenizer, trainer.policy
    prompts = [encode(tok, t.prompt) for t in trainer.tasks[:trainer.rl.prompts_per_step]]
    samples = trainer.rl.samples_per_prompt
    max_new = cfg.sampling.max_new_tokens

    dynamic = HFGenerateBackend(model, tok, batch_size=cfg.sampling.batch_size,
                                kv_cache="dynamic")

    every_row = HFGenerateBackend(model, tok, batch_size=cfg.sampling.batch_size)
    every_row.SHRINK_AT = float("inf")

    def sample(backend):
        return backend.generate(prompts, n=samples, max_new_tokens=max_new,
                                temperature=cfg.sampling.temperature, top_p=cfg.sampling.top_p,
                                seed=0)

    def count(groups):
        return sum(len(s.response_ids) + (s.finish_reason == "stop") for g in groups for s in g)

    def ours():
        return count(sample(trainer.backend))

    def ours_dynamic():
        return count(sample(dynamic))

    def ours_every_row():
        return count(sample(every_row))

    def plain():
        torch.manual_seed(0)
        rows = [p for p in prompts for _ in range(samples)]
        generated = 0
        for b in range(0, len(rows), cfg.sampling.batch_size):
            chunk = rows[b:b + cfg.sampling.batch_size]
            width = max(map(len, chunk))
            ids = torch.tensor([[tok.pad_token_id] * (width - len(p)) + p for p in chunk])
            mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in chunk])
            with torch.inference_mode():
                out = model.generate(input_ids=ids, attention_mask=mask, do_sample=True,
                                     temperature=cfg.sampling.temperature,
                                     top_p=cfg.sampling.top_p, top_k=0, max_new_tokens=max_new,
                                     pad_token_id=tok.pad_token_id,
                                     eos_token_id=tok.eos_token_id)[:, width:]
            stopped = (out == tok.eos_token_id).int()
            generated += int(((stopped.cumsum(1) - stopped) == 0).sum())
        return generated

    ids = [[s.response_ids for g in sample(backend) for s in g]
           for backend in (trainer.backend, dynamic, every_row)]
    assert ids[0] == ids[1] == ids[2]
    arms = {"ours": ours, "ours_dynamic": ours_dynamic, "ours_every_row": ours_every_row,
            "generate": plain}
    counts = {name: fn() for name, fn in arms.items()}
    times = {name: [] for name in arms}
    for _ in range(5):                                   # interleaved
        for name, fn in arms.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    benchmark.pedantic(ours, rounds=1, iterations=1)
    figures = {f"{name}_tokens": counts[name] for name in counts}
    figures.update({f"{name}_tok_s": counts[name] / median(times[name]) for name in counts})
    figures["ours_vs_generate"] = figures["ours_tok_s"] / figures["generate_tok_s"]
    figures["ours_vs_dynamic_cache"] = figures["ours_tok_s"] / figures["ours_dynamic_tok_s"]
    figures["ours_vs_every_row"] = figures["ours_tok_s"] / figures["ours_every_row_tok_s"]
    ROW[f"generation_{n}"] = figures
    report(f"generation, {n} responses", **figures)
