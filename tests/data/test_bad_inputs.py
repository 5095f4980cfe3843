"""Bad dataset files and data.* settings: one clear DataError / ConfigError naming the file and
line (or the key), never a traceback from deep inside a loader. Small files in tmp_path only."""
import copy
import gzip
import json

import pytest

from prmfast.config import ConfigError, load_config
from prmfast.data import DataError, Task, drop_failing_references, load_tasks, split_tasks
from prmfast.data.load import check_data_config
from prmfast.data.task import tasks_by_id
from prmfast.sandbox.specs import AssertTests

MBPP = {"task_id": 11, "text": "Return x.", "code": "def f(x):\r\n    return x\r\n",
        "test_list": ["assert f(1) == 1", "assert f(2) == 2"], "test_setup_code": ""}
HUMANEVAL = {"task_id": "HumanEval/0", "prompt": "def f(x):\n", "entry_point": "f",
             "canonical_solution": "    return x\n",
             "test": "def check(candidate):\n    assert candidate(1) == 1\n"}
LCB = {"question_id": "q1", "question_title": "Echo", "question_content": "Print the input.",
       "difficulty": "easy", "starter_code": "",
       "public_test_cases": json.dumps([{"input": "1\n", "output": "1\n", "testtype": "stdin"}])}
# (dataset, file name, a valid row, the field holding its id)
DATASETS = [("mbpp", "mbpp.jsonl", MBPP, "task_id"),
            ("humaneval", "HumanEval.jsonl", HUMANEVAL, "task_id"),
            ("livecodebench", "refined_test.jsonl", LCB, "question_id")]


def row(base: dict, **changes) -> dict:
    return {**copy.deepcopy(base), **changes}


def write_rows(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def renumbered(base: dict, key: str, n: int) -> list[dict]:
    """n copies of a row with distinct ids."""
    ids = [base[key] + i if isinstance(base[key], int) else f"{base[key]}_{i}" for i in range(n)]
    return [row(base, **{key: i}) for i in ids]


@pytest.mark.parametrize("name, file, base, key", DATASETS)
def test_non_utf8_byte_names_file_and_line(tmp_path, name, file, base, key):
    path = tmp_path / file
    lines = [json.dumps(r).encode() for r in renumbered(base, key, 3)]
    lines[1] = lines[1].replace(b'"', b'"\xff', 1)
    path.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(DataError, match=rf"{file}:2: not UTF-8 text"):
        load_tasks(name, path=path)


@pytest.mark.parametrize("name, file, base, key", DATASETS)
def test_empty_file_says_no_tasks(tmp_path, name, file, base, key):
    (tmp_path / file).write_text("\n")
    with pytest.raises(DataError, match=rf"{file}: no tasks in the file"):
        load_tasks(name, path=tmp_path / file)


@pytest.mark.parametrize("name, file, base, key", DATASETS)
def test_duplicate_task_ids_name_the_id_and_both_lines(tmp_path, name, file, base, key):
    other = renumbered(base, key, 2)[1]
    path = write_rows(tmp_path / file, [base, other, row(base)])
    with pytest.raises(DataError, match=rf"duplicate task id '[^']*{base[key]}'.*{file}:1 and "
                                        rf".*{file}:3"):
        load_tasks(name, path=path)


def test_duplicates_passed_by_hand_are_refused_too():
    task = Task("t", "def f():\n", AssertTests(""), "f", None)
    assert list(tasks_by_id([task])) == ["t"]
    with pytest.raises(DataError, match="duplicate task id 't'"):
        tasks_by_id([task, copy.copy(task)])


def test_gz_that_is_plain_text_or_truncated(tmp_path):
    plain = tmp_path / "HumanEval.jsonl.gz"
    write_rows(plain, [HUMANEVAL])
    with pytest.raises(DataError, match=r"HumanEval\.jsonl\.gz: not a gzip file"):
        load_tasks("humaneval", path=plain)
    rows = renumbered(HUMANEVAL, "task_id", 200)
    data = gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode())
    plain.write_bytes(data[:len(data) // 2])
    with pytest.raises(DataError, match=r"HumanEval\.jsonl\.gz:\d+: truncated or corrupt gzip"):
        load_tasks("humaneval", path=plain)


@pytest.mark.parametrize("field, value, message", [
    ("code", None, "field 'code' must be a string, got null"),
    ("task_id", "11", "field 'task_id' must be an integer, got a string"),
    ("test_list", "assert f(1) == 1", "field 'test_list' must be an array, got a string"),
    ("test_list", [1], "field 'test_list' must be an array of strings"),
])
def test_mbpp_field_of_the_wrong_type(tmp_path, field, value, message):
    path = write_rows(tmp_path / "mbpp.jsonl", [MBPP, row(MBPP, **{"task_id": 12, field: value})])
    with pytest.raises(DataError, match=rf"mbpp\.jsonl:2: {message}"):
        load_tasks("mbpp", path=path, split="all")


def test_livecodebench_bad_test_cases_name_file_line_and_problem(tmp_path):
    bad_json = row(LCB, question_id="q2", public_test_cases='[{"input": "1"')
    path = write_rows(tmp_path / "refined_test.jsonl", [LCB, bad_json])
    with pytest.raises(DataError, match=r"refined_test\.jsonl:2 \(q2\): public_test_cases is "
                                        r"not JSON"):
        load_tasks("livecodebench", path=path)
    no_type = row(LCB, question_id="q2",
                  public_test_cases=json.dumps([{"input": "1\n", "output": "1\n"}]))
    write_rows(tmp_path / "refined_test.jsonl", [LCB, no_type])
    with pytest.raises(DataError, match=r"refined_test\.jsonl:2 \(q2\): public test case 0: "
                                        r"testtype missing"):
        load_tasks("livecodebench", path=path)


def test_json_array_file_is_not_jsonl_but_mbpp_reads_the_sanitized_one(tmp_path):
    array = tmp_path / "HumanEval.jsonl"
    array.write_text(json.dumps([HUMANEVAL], indent=1))
    with pytest.raises(DataError, match=r"HumanEval\.jsonl:1: a JSON array file, not JSON lines"):
        load_tasks("humaneval", path=array)
    sanitized = {"task_id": 11, "prompt": "Return x.", "code": MBPP["code"],
                 "test_list": MBPP["test_list"], "test_imports": ["import math"]}
    path = tmp_path / "sanitized-mbpp.json"
    path.write_text(json.dumps([sanitized], indent=1))
    (task,) = load_tasks("mbpp", path=path)
    assert task.meta["dataset"] == "mbpp-sanitized" and task.meta["source"].endswith("element 0")
    assert task.tests.code.startswith("import math\n")
    with pytest.raises(DataError, match="sanitized-mbpp.json: .*not 'full'"):
        load_tasks("mbpp", path=path, variant="full")


def test_an_empty_mbpp_split_names_the_split_and_the_file(tmp_path):
    path = write_rows(tmp_path / "mbpp.jsonl", renumbered(row(MBPP, task_id=601), "task_id", 3))
    assert len(load_tasks("mbpp", path=path, split="train")) == 3
    with pytest.raises(DataError, match=r"mbpp\.jsonl: no task in the 'test' split"):
        load_tasks("mbpp", path=path, split="test")


@pytest.mark.parametrize("name", ["humaneval", "humanevalplus", "mbppplus", "livecodebench"])
def test_test_only_datasets_cannot_be_trained_on(name):
    cfg = load_config("smoke", None, [f"data.name={name}"])
    with pytest.raises(DataError, match=rf"{name} has only a test split.*python -m prmfast\.eval"):
        split_tasks(cfg, "train")


@pytest.mark.parametrize("setting, key", [
    (["data.path=/tmp/mbpp.jsonl"], "data.path"),
    (["data.max_horizon=1"], "data.min_horizon/max_horizon"),
    (["data.min_horizon=30", "data.max_horizon=40"], "data.min_horizon/max_horizon"),
    (["data.n_test_inputs=1"], "data.n_test_inputs"),
    (["data.n_train=0"], "data.n_train"),
])
def test_synthetic_settings_generate_cannot_use_are_config_errors(setting, key):
    with pytest.raises(ConfigError, match=key) as err:
        check_data_config(load_config("smoke", None, setting))
    if "horizon" in key:
        assert "1 <= min_horizon <= max_horizon <= 15" in str(err.value)


def test_valid_settings_pass_and_an_unfillable_split_names_its_size_key():
    check_data_config(load_config("smoke", None, ["data.min_horizon=2", "data.max_horizon=15"]))
    check_data_config(load_config("smoke", None, ["data.name=mbpp", "data.path=/x.jsonl"]))
    cfg = load_config("smoke", None, ["data.max_horizon=2", "data.n_test=200"])
    with pytest.raises(DataError, match=r"data\.n_test=200: only \d+ distinct test tasks"):
        split_tasks(cfg, "test")


def test_failing_references_are_left_out_with_one_warning_line(tmp_path, sandbox, capsys):
    rows = renumbered(row(MBPP, task_id=601), "task_id", 4)
    rows[1]["test_list"] = ["assert False"]
    tasks = load_tasks("mbpp", path=write_rows(tmp_path / "mbpp.jsonl", rows), split="train")
    kept = drop_failing_references(tasks, sandbox, "train-split")
    assert [t.task_id for t in kept] == ["mbpp/601", "mbpp/603", "mbpp/604"]
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.startswith("warning: 1 of 4 train-split references fail")
    assert "mbpp/602" in out
    for r in rows:
        r["test_list"] = ["assert False"]
    tasks = load_tasks("mbpp", path=write_rows(tmp_path / "mbpp.jsonl", rows), split="train")
    with pytest.raises(DataError, match=r"mbpp\.jsonl:1: all 4 train-split references fail"):
        drop_failing_references(tasks, sandbox, "train-split")
