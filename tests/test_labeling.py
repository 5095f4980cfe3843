"""Binary-search labelling: the pure search, labels, probing waves, batching, cache, resume."""
import json
import random
from types import SimpleNamespace

import pytest

from prmfast.labeling.driver import Response, label_responses
from prmfast.labeling.probe import Prober, executions_for, wave_sizes
from prmfast.labeling.search import (binary_search, is_monotone, line_labels, m_star, max_probes,
                                     scan, scan_first_bad)
from prmfast.labeling.select import SELECTIONS, keeps_passing, select


# ---------------------------------------------------------------- the search, no model

@pytest.mark.parametrize("n_points", range(0, 33))
def test_binary_search_matches_scan_on_monotone_outcomes_on_cpu(n_points):
    for threshold in range(n_points + 1):
        def recoverable(p):
            return p < threshold
        first_bad, probed = binary_search(n_points, recoverable)
        assert first_bad == scan_first_bad(scan(n_points, recoverable)) == threshold
        assert len(probed) <= max_probes(n_points)
        assert len(set(probed)) == len(probed)


def test_binary_search_finds_a_transition_on_non_monotone_outcomes_on_cpu():
    rng = random.Random(0)
    for _ in range(2000):
        n_points = rng.randint(0, 40)
        outcomes = [rng.random() < 0.6 for _ in range(n_points)] + [False]
        first_bad, probed = binary_search(n_points, outcomes.__getitem__)
        assert not outcomes[first_bad]
        assert first_bad == 0 or outcomes[first_bad - 1]
        assert len(probed) <= max_probes(n_points)
        assert all(0 <= p < n_points for p in probed)
        if is_monotone(outcomes):
            assert first_bad == scan_first_bad(outcomes)


def test_probe_bound_is_tight_and_empty_prefix_probed_only_when_reached_on_cpu():
    assert [max_probes(p) for p in (0, 1, 2, 3, 4, 7, 8)] == [0, 1, 2, 2, 3, 3, 4]
    _, probed = binary_search(7, lambda p: p < 5)
    assert 0 not in probed
    first_bad, probed = binary_search(7, lambda p: False)
    assert first_bad == 0 and 0 in probed


def test_labels_and_m_star_skip_comment_lines_on_cpu():
    is_comment = [True, False, False, True, False, False]   # code lines are lines 2, 3, 5, 6
    assert line_labels(is_comment, None) == [0, 1, 1, 0, 1, 1]
    assert line_labels(is_comment, 0) == [0, -1, -1, 0, -1, -1]
    assert line_labels(is_comment, 3) == [0, 1, 1, 0, -1, -1]
    assert (m_star(is_comment, None), m_star(is_comment, 0), m_star(is_comment, 1),
            m_star(is_comment, 3)) == (None, 0, 2, 5)


def test_wave_schedule_and_execution_cost_on_cpu():
    assert wave_sizes(20, 4) == [4, 8, 8]
    assert wave_sizes(4, 4) == [4] and wave_sizes(3, 8) == [3] and wave_sizes(5, 1) == [1, 2, 2]
    assert executions_for(0, 20, 4) == 4
    assert executions_for(4, 20, 4) == 12
    assert executions_for(None, 20, 4) == executions_for(25, 20, 4) == 20


# ---------------------------------------------------------------- batched driver with fakes

PASS, FAIL = 1, 2


class FakeBackend:
    """Prompts are [task number, *prefix]; a prefix is recoverable while it holds no token >= 50
    (a "bug"); a recoverable prefix's completion passes with probability p_pass."""

    def __init__(self, p_pass=0.5):
        self.p_pass, self.calls = p_pass, []

    def generate(self, prompt_ids, *, n, max_new_tokens, temperature, top_p=1.0, seed=None,
                 progress=False):
        self.calls.append((len(prompt_ids), n))
        rng = random.Random(seed)
        out = []
        for ids in prompt_ids:
            ok = all(t < 50 for t in ids[1:])
            out.append([SimpleNamespace(response_ids=[PASS if ok and rng.random() < self.p_pass
                                                      else FAIL]) for _ in range(n)])
        return out


class FakeSandbox:
    def __init__(self):
        self.jobs = 0

    def run(self, jobs):
        self.jobs += len(jobs)
        return [SimpleNamespace(passed=job.program[-1] == PASS) for job in jobs]


def fake_job(task, prompt_ids, prefix_ids, completion_ids):
    return SimpleNamespace(program=list(prefix_ids) + list(completion_ids), tests=None)


def make_response(key, task_no, line_tokens, comment=(), passed=False):
    """line_tokens: one token id per line (each token ends its line)."""
    task = SimpleNamespace(task_id=f"t{task_no}", prompt="")
    spans = [(i, i + 1) for i in range(len(line_tokens))]
    is_comment = [i in comment for i in range(len(line_tokens))]
    return Response(key, task, [task_no], list(line_tokens), spans, is_comment, passed)


def make_prober(backend, sandbox, k=8, first_wave=2, journal=None):
    return Prober(backend, sandbox, fake_job, k=k, first_wave=first_wave, temperature=1.0,
                  top_p=1.0, max_new_tokens=4, seed=0, journal=journal)


def test_driver_labels_first_bug_line_and_counts_cost_on_cpu():
    backend, sandbox = FakeBackend(p_pass=1.0), FakeSandbox()
    responses = [make_response("a", 0, [3, 4, 60, 5]),            # bug on line 3
                 make_response("b", 0, [3, 4, 60, 5]),            # same task, same lines: cached
                 make_response("c", 1, [7, 0, 8, 61], comment={1}),  # bug on line 4
                 make_response("d", 2, [70, 1]),                  # bug on line 1: m* = 1
                 make_response("e", 3, [1, 2], passed=True)]
    out = label_responses(responses, make_prober(backend, sandbox))
    assert [o.m_star for o in out] == [3, 3, 4, 1, None]
    assert out[0].labels == [1, 1, -1, -1]
    assert out[2].labels == [1, 0, 1, -1]
    assert out[3].labels == [-1, -1] and out[4].labels == [1, 1]
    assert out[1].cost.probes == out[0].cost.probes and out[1].cost.executions == 0
    assert out[1].cost.cached == out[1].cost.probes
    assert out[4].cost.probes == 0
    assert sum(o.cost.executions for o in out) == sandbox.jobs
    assert all(o.cost.probes <= max_probes(4) for o in out)
    # p_pass = 1: every recoverable probe stops after its first wave of 2
    recoverable = sum(ok for o in out for _, ok in o.probed if o.cost.cached == 0)
    unrecoverable = sum(not ok for o in out for _, ok in o.probed if o.cost.cached == 0)
    assert sandbox.jobs == 2 * recoverable + 8 * unrecoverable


def test_driver_batches_probes_across_responses_per_round_on_cpu():
    backend, sandbox = FakeBackend(p_pass=0.0), FakeSandbox()
    responses = [make_response(str(i), i, [1] * (i + 1)) for i in range(6)]
    label_responses(responses, make_prober(backend, sandbox, k=4, first_wave=4))
    # one generate call per round (a single wave), holding every open search's probe
    assert [n for _, n in backend.calls] == [4] * len(backend.calls)
    assert backend.calls[0][0] == 6
    assert len(backend.calls) == max(len(binary_search(i + 1, lambda p: False)[1]) for i in range(6))


def test_batched_equals_sequential_on_cpu():
    rng = random.Random(1)
    responses = []
    for i in range(12):
        lines = [rng.choice([rng.randint(0, 49), rng.randint(50, 60)]) for _ in range(rng.randint(1, 9))]
        responses.append(make_response(str(i), i % 4, lines, passed=rng.random() < 0.2))
    batched = label_responses(responses, make_prober(FakeBackend(1.0), FakeSandbox()))
    sequential = [label_responses([r], make_prober(FakeBackend(1.0), FakeSandbox()))[0]
                  for r in responses]
    assert [o.labels for o in batched] == [o.labels for o in sequential]


def random_responses(n: int = 10, seed: int = 2) -> list:
    """n responses over 3 tasks with 2-8 random one-token lines each."""
    rng = random.Random(seed)
    return [make_response(str(i), i % 3, [rng.randint(0, 58) for _ in range(rng.randint(2, 8))])
            for i in range(n)]


def label_with_interrupt(folder, responses, rounds=None, after_interrupt=lambda: None) -> list:
    """labels.jsonl records (wall times dropped) of label_into over `responses`, journalled in
    `folder`. With `rounds`, the first prober is interrupted (KeyboardInterrupt) after that many
    probe rounds, after_interrupt() runs, and a fresh prober resumes from the journal."""
    from prmfast.labeling.store import label_into
    from prmfast.runio import read_jsonl

    folder.mkdir()
    labels, journal = folder / "labels.jsonl", folder / "probes.jsonl"
    prober = make_prober(FakeBackend(0.4), FakeSandbox(), journal=journal)
    if rounds is not None:
        resolve, calls = prober.resolve, []

        def cut(reqs):
            if len(calls) == rounds:
                raise KeyboardInterrupt
            calls.append(1)
            return resolve(reqs)
        prober.resolve = cut
        with pytest.raises(KeyboardInterrupt):
            label_into(labels, responses, prober, 4, lambda r: {})
        after_interrupt()
        prober = make_prober(FakeBackend(0.4), FakeSandbox(), journal=journal)
    label_into(labels, responses, prober, 4, lambda r: {})
    return [{k: v for k, v in rec.items() if k != "label_wall_s"} for rec in read_jsonl(labels)]


def test_resume_after_one_round_gives_the_same_labels_on_cpu(tmp_path):
    from prmfast.runio import read_jsonl

    def nothing_labelled_yet():
        assert len(read_jsonl(tmp_path / "b" / "probes.jsonl")) > 0
        assert not (tmp_path / "b" / "labels.jsonl").exists()

    def without_costs(records):
        return [{k: v for k, v in rec.items() if k != "cost"} for rec in records]

    responses = random_responses()
    straight = label_with_interrupt(tmp_path / "a", responses)
    resumed = label_with_interrupt(tmp_path / "b", responses, 1, nothing_labelled_yet)
    assert without_costs(resumed) == without_costs(straight) and len(straight) == 10


def test_selection_modes_on_cpu():
    recs = [{"passed": True, "n_good": 3}, {"passed": False, "n_good": 0},
            {"passed": False, "n_good": 2}]
    picked = {mode: [recs.index(r) for r in select(recs, mode)] for mode in SELECTIONS}
    assert picked == {"full": [0, 1, 2], "revised_only": [2], "failed_only": [1, 2],
                      "passed_and_revised": [0, 2]}
    assert {mode: keeps_passing(mode) for mode in SELECTIONS} == {
        "full": True, "revised_only": False, "failed_only": False, "passed_and_revised": True}
    with pytest.raises(ValueError, match="revised_only"):
        select(recs, "revised")


# ---------------------------------------------------------------- real tokenizer and lines

def test_prefixes_end_on_line_end_tokens_with_real_tokenizer_on_cpu():
    from prmfast.lines import segment
    from prmfast.models import encode, train_tokenizer

    body = "    xs = [x for x in xs if x > 3]\n    # double\n\n    xs = [x * 2 for x in xs]\n    return sum(xs)"
    tok = train_tokenizer([body * 20, "def f(xs):\n" * 10], vocab_size=300)
    ids = encode(tok, body)
    lines = segment(ids, tok)
    resp = Response("r", SimpleNamespace(task_id="t"), [], ids, lines.spans, lines.is_comment, False)
    code = [i for i, c in enumerate(lines.is_comment) if not c]
    assert len(code) == 3
    for point, line in enumerate(code, start=1):
        prefix = tok.decode(resp.prefix_ids(point))
        assert prefix.rstrip(" ").endswith(lines.texts[line].strip() + ("\n" if point < 3 else ""))
        assert lines.line_end[len(resp.prefix_ids(point)) - 1]
    labels = line_labels(lines.is_comment, 2)
    assert [labels[i] for i in code] == [1, -1, -1]
    assert all(labels[i] == 0 for i, c in enumerate(lines.is_comment) if c)
    json.dumps(resp.spans)


# ---------------------------------------------------------------- quality study, checkpoints

def test_quality_replays_binary_search_on_scan_outcomes_on_cpu():
    from prmfast.labeling.quality import compare_at_k, first_bad_line, summarize_k

    # points 0..4: first passing completion index per prefix (None: none of K_max=8 passed)
    first_pass = [0, 5, None, 3, None]          # non-monotone at k=8 (point 3 recovers)
    at8 = compare_at_k(first_pass, 8, first_wave=2)
    assert at8["scan_first_bad"] == 2 and not at8["monotone"]
    assert at8["scan_executions"] == 2 + 6 + 8 + 6 + 8   # waves 2, 4, 2
    at2 = compare_at_k(first_pass, 2, first_wave=2)    # at k=2 point 1 is unrecoverable
    assert at2["scan_first_bad"] == 1 and at2["binary_first_bad"] == 1 and at2["monotone"]
    assert at2["binary_executions"] == sum(
        [2, 2, 2][:at2["binary_probes"]])             # k=2: every probe costs one wave of 2
    assert at2["binary_probes"] <= max_probes(5)
    com = [False] * 5
    assert first_bad_line(com, 0) == 1 and first_bad_line([True, False], 0) == 2
    summary = summarize_k([at2, at8], [com, com], [1, None])
    assert summary["responses"] == 2
    assert summary["binary_vs_oracle"]["responses"] == 1
    assert summary["binary_vs_oracle"]["m_star_exact"] == 1.0     # first_bad point 1 = line 1
    assert summary["monotonicity_violation_rate"] == 0.5


def test_pick_checkpoints_evenly_spaced_ending_with_last_on_cpu(tmp_path):
    from prmfast.labeling.policy import list_checkpoints, pick_checkpoints

    for step in (5, 10, 15, 20, 25, 30, 35, 40):
        (tmp_path / f"ckpt_{step:04d}").mkdir()
    ckpts = list_checkpoints(tmp_path)
    assert [p.name for p in pick_checkpoints(ckpts, 4)] == \
        ["ckpt_0010", "ckpt_0020", "ckpt_0030", "ckpt_0040"]
    assert pick_checkpoints(ckpts[:2], 4) == ckpts[:2]


def test_k_defaults_to_the_papers_20_and_the_embedded_cpu_run_uses_8_on_cpu():
    from prmfast.config import Config, load_config
    from prmfast.labeling.collect import check_collect_config
    library = Config().collect
    assert library.k == 20 and max(library.quality_ks) == 20
    embedded = load_config().collect
    assert embedded.k == 8 and max(embedded.quality_ks) == 8
    for cfg in (Config(), load_config()):
        check_collect_config(cfg)
