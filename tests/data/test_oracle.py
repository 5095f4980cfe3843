"""The line-level oracle: planted errors are found at the step where they were planted."""
import pytest

from prmfast.data import build_program
from prmfast.data.synthetic import first_error_line, first_error_lines, first_error_step, generate

WRONG_TRANSFORM = "    xs = xs + [99]"
WRONG_RETURN = "    return [99]"


@pytest.fixture(scope="module")
def tasks():
    return generate("test", 12, seed=7, min_horizon=3, max_horizon=8)


def _lines(task):
    return task.reference.rstrip("\n").split("\n")


def _with_line(task, k, line):
    lines = _lines(task)
    lines[k] = line
    return "\n".join(lines) + "\n"


def test_reference_has_no_error(tasks):
    assert first_error_lines(tasks, [t.reference for t in tasks]) == [None] * len(tasks)
    assert first_error_step(tasks[0], build_program(tasks[0], tasks[0].reference)) is None


def test_planted_errors_are_found_at_their_step(tasks):
    pairs = [(task, k) for task in tasks for k in range(task.meta["horizon"])]
    responses = [_with_line(t, k, WRONG_RETURN if k == t.meta["horizon"] - 1 else WRONG_TRANSFORM)
                 for t, k in pairs]
    assert first_error_lines([t for t, _ in pairs], responses) == [k for _, k in pairs]


@pytest.mark.parametrize("bad_line, name", [
    ("    xs = [x for x in", "syntax error"),
    ("    while True: pass", "infinite loop"),
    ("    xs = xs[1000]", "exception"),
    ("    import os; os._exit(0)", "exit"),
    ("    xs = [0] * 10**10", "memory"),
    ("    print('PASSED' * 10000)", "noise that changes nothing"),
])
def test_broken_lines_are_errors_at_their_step(tasks, bad_line, name):
    task = tasks[0]
    assert first_error_line(task, _with_line(task, 1, bad_line)) == 1, name


def test_missing_and_extra_lines(tasks):
    task = tasks[1]
    h = task.meta["horizon"]
    without_return = "\n".join(_lines(task)[:-1]) + "\n"
    assert first_error_line(task, without_return) == h - 2      # blamed on the last line
    assert first_error_step(task, build_program(task, without_return)) == h - 1
    junk = task.reference + "    xs = (\n"
    assert first_error_line(task, junk) == h and first_error_step(task, task.prompt + junk) == h
    assert first_error_line(task, task.reference + "    xs = []\n") is None  # unreachable
    assert first_error_line(task, "") == 0


def test_comments_renamed_variables_and_lines_map_to_the_response(tasks):
    task = tasks[2]
    assert first_error_line(task, "    # plan\n" + task.reference) is None
    assert first_error_line(task, "    # plan\n" + _with_line(task, 1, WRONG_TRANSFORM)) == 2
    lines = _lines(task)
    renamed = [lines[0].replace("xs = ", "ys = ", 1)] + [line.replace("xs", "ys") for line in lines[1:]]
    assert first_error_line(task, "\n".join(renamed) + "\n") is None

def test_program_without_the_function_fails_at_step_zero(tasks):
    assert first_error_step(tasks[0], "print(1)\n") == 0
