"""The synthetic long-horizon suite: ops, generation, splits, rejection rules."""
from collections import Counter

from prmfast.data import horizon_bucket, load_tasks, validate_tasks
from prmfast.data.ops import FINALS, OPS, TRANSFORMS
from prmfast.data.synthetic import SPLITS, _acceptable, composition_split, generate


def test_library_has_twenty_ops_with_rendering_templates():
    assert len(TRANSFORMS) + len(FINALS) >= 20 and len(OPS) == len(TRANSFORMS) + len(FINALS)
    for op in OPS.values():
        text, code = op.render(3)
        assert "{" not in text + code
        assert code.startswith("return " if op.final else "xs = ")


def test_prompt_and_reference_format():
    for task in generate("train", 40, seed=1):
        h = task.meta["horizon"]
        lines = task.prompt.split("\n")
        assert lines[0] == "# Write f(xs):" and task.prompt.endswith("def f(xs):\n")
        assert [line.split(".")[0] for line in lines[1:h + 1]] == [f"# {i}" for i in range(1, h + 1)]
        body = task.reference.rstrip("\n").split("\n")
        assert len(body) == h and all(line.startswith("    xs = ") for line in body[:-1])
        assert body[-1].startswith("    return ")
        assert task.entry_point == "f" and len(task.tests.cases) == 8


def test_same_seed_same_tasks_other_seed_other_tasks():
    a, b = generate("train", 30, seed=3), generate("train", 30, seed=3)
    assert [(t.prompt, t.tests) for t in a] == [(t.prompt, t.tests) for t in b]
    assert [t.prompt for t in generate("train", 30, seed=4)] != [t.prompt for t in a]


def test_splits_hold_out_compositions():
    by_split = {s: {t.meta["composition"] for t in generate(s, 150, seed=0, min_horizon=2)}
                for s in SPLITS}
    assert not by_split["train"] & by_split["test"]
    assert not by_split["train"] & by_split["validation"]
    assert not by_split["validation"] & by_split["test"]
    for split, comps in by_split.items():
        assert all(composition_split(tuple(c.split(">"))) == split for c in comps)


def test_horizons_cycle_and_are_recorded():
    tasks = load_tasks("synthetic", split="train", n=80, min_horizon=1, max_horizon=8)
    counts = Counter(t.meta["horizon"] for t in tasks)
    assert sorted(counts) == list(range(1, 9))  # horizon 1 has few distinct tasks: it may run out
    assert max(counts.values()) - min(counts[h] for h in range(2, 9)) <= 1
    assert {horizon_bucket(h) for h in counts} == {"short", "medium", "long"}


def test_outputs_vary_and_every_transform_changes_the_list():
    for task in generate("validation", 60, seed=2):
        outputs = [expected for _, expected in task.tests.cases]
        assert any(out != outputs[0] for out in outputs)


def test_constant_outputs_and_no_op_steps_are_rejected():
    inputs = [[1, 2], [3, 4]]
    assert not _acceptable([[[1], 5], [[3], 5]], inputs)              # constant output
    assert not _acceptable([[[1, 2], 3], [[3, 4], 7]], inputs)        # step 0 changes nothing
    assert _acceptable([[[2], 2], [[4], 4]], inputs)


def test_horizon_bucket():
    assert [horizon_bucket(h) for h in (1, 3, 4, 5, 6, 12)] == \
        ["short", "short", "medium", "medium", "long", "long"]


def test_every_reference_passes_in_the_sandbox(sandbox):
    tasks = generate("train", 120, seed=5) + generate("test", 60, seed=5)
    report = validate_tasks(tasks, sandbox)
    assert report.ok, str(report)
