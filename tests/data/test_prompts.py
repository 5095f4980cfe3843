"""Prompt formats and program extraction."""
from prmfast.data import build_program, extract_program, format_chat_prompt
from prmfast.data.synthetic import generate
from prmfast.data.task import Task
from prmfast.sandbox.specs import CallTests, StdioTests

TASK = generate("train", 1, seed=0)[0]


def test_build_program_is_prompt_plus_response():
    assert build_program(TASK, TASK.reference) == TASK.prompt + TASK.reference
    assert build_program(TASK, "    return 1").endswith("return 1\n")
    assert extract_program(TASK, TASK.reference, "completion") == TASK.prompt + TASK.reference


def test_chat_prompt_has_instruction_and_fenced_prompt():
    [message] = format_chat_prompt(TASK)
    assert message["role"] == "user" and f"```python\n{TASK.prompt}```" in message["content"]
    stdio = Task("s", '"""\nsum two numbers\n"""\n', StdioTests([("1 2", "3")]), None, None, {})
    assert "standard input" in format_chat_prompt(stdio)[0]["content"]


def test_extract_chat_blocks():
    full = "def f(xs):\n    return xs\n"
    assert extract_program(TASK, f"Here:\n```python\n{full}```\nDone.", "chat") == full
    assert extract_program(TASK, f"```\nprint(1)\n```\n```python\n{full}```", "chat") == full
    assert extract_program(TASK, full, "chat") == full                      # no fence
    assert extract_program(TASK, f"```python\n{full}", "chat") == full      # unclosed fence
    body = "```python\n    return xs\n```"
    assert extract_program(TASK, body, "chat") == TASK.prompt + "    return xs\n"


def test_extract_adds_preamble_and_harness():
    task = Task("lc", "class Solution:\n    def g(self, a):\n", CallTests("g", [([1], 1)]), "g", None,
                {"preamble": "from typing import *\n", "harness": "\ndef g(*a):\n    return Solution().g(*a)\n"})
    answer = "```python\nclass Solution:\n    def g(self, a):\n        return a\n```"
    program = extract_program(task, answer, "chat")
    assert program.startswith("from typing import *\nclass Solution") and program.endswith("Solution().g(*a)\n")
