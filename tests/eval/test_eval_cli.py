"""`python -m prmfast.eval` (prmfast.eval.benchmarks) on a tiny model and hand-made tasks: argument
checks, one-line errors, settings of a resumed run, task time limits, seeding on resume, prompts
over the context; and the run report's metrics.jsonl reading (`python -m prmfast.report`)."""
import json
import shutil

import pytest

from prmfast import report
from prmfast.data import Task, format_chat_prompt
from prmfast.eval import benchmarks
from prmfast.eval.benchmarks import (Settings, build_prompts, parse_args, read_results,
                                     run_benchmark)
from prmfast.errors import StageError
from prmfast.rl.stage import _truncate_metrics
from prmfast.rollout import Sample
from prmfast.runio import read_metrics
from prmfast.sandbox import CallTests, Result
from tests.conftest import save_tiny_model

TESTS = CallTests("f", [([1], 2)])
TASKS = [Task(f"t{i}", "def f(x):\n", TESTS, "f", "    return x + 1\n", {}) for i in range(5)]
SETTINGS = Settings(model="m", model_files="", backend="hf", dtype="float32", samples=2, temperature=0.5,
                    top_p=1.0, max_new_tokens=3, prompt_style="completion", seed=7, timeout_s=10.0)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory, max_position=64)


@pytest.fixture
def tasks(monkeypatch):
    """benchmarks loads TASKS for every benchmark (a list the test may change)."""
    tasks = list(TASKS)
    monkeypatch.setattr(benchmarks, "load_tasks", lambda name: tasks)
    return tasks


def cli(model, out, *extra):
    return ["--model", str(model), "--tasks", "humaneval", "--out", str(out), "--limit", "2",
            "--samples", "2", "--max-new-tokens", "3", "--workers", "1", *extra]


def error_line(capsys) -> str:
    """The one `error:` line a failed command printed (and no traceback)."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


# --- 1: a resumed run must have the settings of its results -----------------------------------

def test_resume_refuses_other_settings_and_summary_names_the_model_on_cpu(
        model_dir, tmp_path, tasks, capsys):
    assert benchmarks.main(cli(model_dir, tmp_path)) == 0
    folder = tmp_path / "humaneval"
    saved = json.loads((folder / "settings.json").read_text())
    assert saved["model"] == str(model_dir.resolve()) and saved["samples"] == 2
    assert json.loads((folder / "summary.json").read_text())["model"] == str(model_dir.resolve())
    other = tmp_path / "other_model"
    shutil.copytree(model_dir, other)
    capsys.readouterr()
    assert benchmarks.main(cli(other, tmp_path, "--samples", "3", "--temperature", "0.7")) == 2
    line = error_line(capsys)
    assert f"model: \"{model_dir.resolve()}\" -> \"{other.resolve()}\"" in line
    assert "samples: 2 -> 3" in line and "temperature: 0.2 -> 0.7" in line
    # batch size, workers and limit do not change results: resuming with others is fine
    assert benchmarks.main(cli(model_dir, tmp_path, "--batch-size", "4", "--limit", "3")) == 0
    assert json.loads((folder / "summary.json").read_text())["n_problems"] == 3


def test_resume_refuses_weights_replaced_in_place_on_cpu(model_dir, tmp_path, tasks, capsys):
    model = tmp_path / "model"
    shutil.copytree(model_dir, model)
    out = tmp_path / "out"
    assert benchmarks.main(cli(model, out)) == 0
    weights = next(model.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes())                 # retrained: same path, new file
    capsys.readouterr()
    assert benchmarks.main(cli(model, out)) == 2
    assert "model_files: " in error_line(capsys)
    # settings.json from a version that did not record model_files still resumes
    saved = json.loads((out / "humaneval" / "settings.json").read_text())
    del saved["model_files"]
    (out / "humaneval" / "settings.json").write_text(json.dumps(saved))
    assert benchmarks.main(cli(model, out)) == 0


# --- 2: each task's own time limit ------------------------------------------------------------

class RecordingSandbox:
    timeout_s = 10.0

    def __init__(self, fail_on_call: int | None = None):
        self.jobs, self.calls, self.fail_on_call = [], 0, fail_on_call

    def run(self, jobs):
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise KeyboardInterrupt
        self.jobs += jobs
        return [Result(passed="return 1" in job.program, status="passed") for job in jobs]


class SeededBackend:
    """Sample j of prompt k reads "seed s, position k, sample j": what a seeded sampler draws
    depends on the seed and the batch."""

    def generate(self, prompt_ids, *, n, max_new_tokens, temperature, top_p=1.0, seed=None,
                 progress=False):
        return [[Sample(p, [1] * (j + 1), [0.0] * (j + 1), "stop",
                        f"    return {(seed + k + j) % 2}  # seed {seed}, {k}, {j}\n")
                 for j in range(n)] for k, p in enumerate(prompt_ids)]


class CharTokenizer:
    def __call__(self, text, add_special_tokens=False, split_special_tokens=False):
        return {"input_ids": [ord(ch) for ch in text]}


def bench(out_dir, sandbox, **kw):
    args = dict(limit=None, problems_per_batch=2, max_k=2, length_threshold=2, progress=False)
    return run_benchmark("humaneval", SeededBackend(), CharTokenizer(), sandbox, out_dir,
                         SETTINGS, **{**args, **kw})


def test_jobs_get_the_task_time_limit_on_cpu(tmp_path, tasks):
    tasks[1] = Task("slow", "def f(x):\n", TESTS, "f", None, {"time_limit_s": 30.0})
    sandbox = RecordingSandbox()
    bench(tmp_path, sandbox, limit=2)
    assert [job.timeout_s for job in sandbox.jobs] == [10.0, 10.0, 30.0, 30.0]


# --- 7: a resumed run draws what an uninterrupted one draws -----------------------------------

def test_resume_draws_the_same_samples_on_cpu(tmp_path, tasks):
    bench(tmp_path / "whole", RecordingSandbox())
    whole = (tmp_path / "whole" / "results.jsonl").read_text()
    with pytest.raises(KeyboardInterrupt):                   # stopped in the second batch
        bench(tmp_path / "cut", RecordingSandbox(fail_on_call=2))
    results = tmp_path / "cut" / "results.jsonl"
    assert len(results.read_text().splitlines()) == 2
    results.write_text(results.read_text() + '{"task_id": "t2", "pass')        # torn line
    bench(tmp_path / "cut", RecordingSandbox())
    assert read_results(results) == read_results(tmp_path / "whole" / "results.jsonl")
    # a batch with some of its tasks done is drawn whole again (t3 alone would draw otherwise)
    rows = whole.splitlines()
    results.write_text("\n".join(rows[:3] + rows[4:]) + "\n")
    bench(tmp_path / "cut", RecordingSandbox())
    again = {json.loads(line)["task_id"]: line for line in results.read_text().splitlines()}
    assert again["t3"] == rows[3]


# --- 8: prompts over the context --------------------------------------------------------------

def test_prompts_over_the_context_are_counted_on_cpu(tmp_path, tasks, capsys):
    tasks[3] = Task("long", "def f(x):\n" + "#" * 40 + "\n", TESTS, "f", None, {})
    summary = bench(tmp_path, RecordingSandbox(), context=20)      # 10 + 3 fit, 51 + 3 do not
    assert summary["over_context"] == {"context": 20, "n": 1, "task_ids": ["long"]}
    assert "warning: humaneval: 1 of 5 prompts + max_new_tokens 3 exceed the model's context " \
           "of 20 tokens (long)" in capsys.readouterr().err
    assert bench(tmp_path, RecordingSandbox(), context=None)["over_context"]["n"] == 0


def test_cli_reads_the_context_from_the_model_on_cpu(model_dir, tmp_path, tasks):
    tasks[0] = Task("long", "def f(x):\n" + "# z y q\n" * 30, TESTS, "f", None, {})
    assert benchmarks.main(cli(model_dir, tmp_path)) == 0
    summary = json.loads((tmp_path / "humaneval" / "summary.json").read_text())
    assert summary["over_context"] == {"context": 64, "n": 1, "task_ids": ["long"]}


# --- 3, 4: argument ranges --------------------------------------------------------------------

@pytest.mark.parametrize("flag,value", [
    ("--limit", "0"), ("--limit", "-1"), ("--samples", "0"), ("--samples", "-1"),
    ("--batch-size", "0"), ("--max-new-tokens", "0"), ("--temperature", "-1"),
    ("--temperature", "nan"), ("--temperature", "inf"), ("--top-p", "0"), ("--top-p", "1.5"),
    ("--dtype", "foo"), ("--vllm-args", "notjson"), ("--vllm-args", "[1]"),
    ("--timeout-s", "0"), ("--workers", "0"), ("--max-k", "0"), ("--max-k", "-3"),
    ("--length-threshold", "-5")])
def test_out_of_range_arguments_are_usage_errors_on_cpu(flag, value, capsys):
    with pytest.raises(SystemExit) as exc:
        parse_args(["--model", "m", "--tasks", "humaneval", flag, value])
    assert exc.value.code == 2 and flag in capsys.readouterr().err


def test_greedy_with_several_samples_notes_they_are_identical_on_cpu(model_dir, tmp_path, tasks,
                                                                     capsys):
    assert benchmarks.main(cli(model_dir, tmp_path, "--temperature", "0")) == 0
    assert "note: --temperature 0 is greedy decoding: the 2 samples" in capsys.readouterr().err
    assert parse_args(["--model", "m", "--tasks", "mbpp", "--vllm-args",
                       '{"dtype": "bfloat16"}']).vllm_args == {"dtype": "bfloat16"}


# --- 5: bad --model / --out, Ctrl-C: one line each --------------------------------------------

def test_bad_model_or_out_is_one_error_line_on_cpu(model_dir, tmp_path, tasks, capsys,
                                                   monkeypatch):
    monkeypatch.setenv("PRMFAST_CACHE", str(tmp_path / "cache"))
    (tmp_path / "empty").mkdir()
    (tmp_path / "config_only").mkdir()
    shutil.copy(model_dir / "config.json", tmp_path / "config_only")
    (tmp_path / "x.gguf").write_text("not a model\n")
    (tmp_path / "cut.gguf").write_bytes(b"GGUF\x03\x00\x00\x00\x01")
    (tmp_path / "afile").write_text("")
    cases = {tmp_path / "missing": "no model folder or .gguf file",
             tmp_path / "empty": "has no config.json",
             tmp_path / "config_only": "has a config.json but no weights",
             tmp_path / "x.gguf": "is not a valid or complete GGUF file",
             tmp_path / "cut.gguf": "is not a valid or complete GGUF file"}
    for model, message in cases.items():
        assert benchmarks.main(cli(model, tmp_path / "out")) == 2
        line = error_line(capsys)
        assert line.startswith("error: --model: ") and message in line
    assert benchmarks.main(cli(model_dir, tmp_path / "afile")) == 2
    assert "a file is in the way" in error_line(capsys)
    assert benchmarks.main(cli(model_dir, tmp_path / "out", "--prompt-style", "chat")) == 2
    assert "has no chat template" in error_line(capsys)


def test_ctrl_c_exits_130_with_a_resume_hint_on_cpu(model_dir, tmp_path, tasks, capsys,
                                                    monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(benchmarks, "run_benchmark", interrupted)
    assert benchmarks.main(cli(model_dir, tmp_path)) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"rerun the same command (--out {tmp_path}) to resume" in err


# --- 10: literal special-token text in a prompt stays text; a chat template keeps its tokens ---

def test_prompts_keep_special_token_text_as_text_on_cpu(model_dir):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(model_dir)
    task = Task("s", "x = '<|pad|>'  # <|endoftext|>\n", TESTS, "f", None, {})
    [ids] = build_prompts([task], tok, "completion")
    assert tok.eos_token_id not in ids and tok.pad_token_id not in ids
    assert tok.decode(ids) == task.prompt
    tok.chat_template = ("{{ eos_token }}{% for m in messages %}{{ m['content'] }}{{ eos_token }}"
                         "{% endfor %}")
    [ids] = build_prompts([task], tok, "chat")
    assert ids.count(tok.eos_token_id) == 2         # the template's own tokens stay special
    assert ids[0] == ids[-1] == tok.eos_token_id and tok.pad_token_id not in ids
    assert task.prompt in tok.decode(ids[1:-1])     # the prompt's special-token text is text
    plain = Task("p", "x = 1\n", TESTS, "f", None, {})
    [ids] = build_prompts([plain], tok, "chat")     # nothing to split: the template as is
    assert ids == tok.encode(tok.apply_chat_template(format_chat_prompt(plain), tokenize=False,
                                                     add_generation_prompt=True),
                             add_special_tokens=False)
    tok.chat_template = "{% for m in messages %}{{ m['content'] | trim }}{{ eos_token }}{% endfor %}"
    with pytest.raises(benchmarks.EvalError, match="task s: its prompt holds special-token text"):
        build_prompts([task], tok, "chat")


# --- 9: metrics.jsonl torn by a hard kill; the report of a missing run folder -----------------

def test_metrics_with_a_torn_last_line_on_cpu(tmp_path):
    rows = [{"step": 1, "reward": 0.5}, {"step": 2, "reward": float("nan")}]
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 3, "rew')
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2]
    _truncate_metrics(metrics, 5)                   # resume: the torn line goes
    assert [json.loads(line)["step"] for line in metrics.read_text().splitlines()] == [1, 2]
    _truncate_metrics(metrics, 1)
    assert [json.loads(line)["step"] for line in metrics.read_text().splitlines()] == [1]
    metrics.write_text('{"step": 1}\n{"step": 2, "re\n{"step": 3}\n')
    with pytest.raises(StageError, match=r"metrics\.jsonl, line 2: not a JSON row"):
        read_metrics(tmp_path)
    with pytest.raises(StageError, match="line 2"):
        _truncate_metrics(metrics, 3)


def test_report_of_no_run_folder_is_an_error_on_cpu(tmp_path):
    (tmp_path / "afile").write_text("")
    for path, what in ((tmp_path / "missing", ""), (tmp_path / "afile", " (it is a file)")):
        with pytest.raises(SystemExit) as exc:
            report.main([str(path)])
        assert exc.value.code == f"error: no run folder at {path}{what}"
