"""Prompt formatting and program extraction for completion-style and chat-template models."""
from __future__ import annotations

import re

from prmfast.data.task import Task
from prmfast.sandbox.specs import StdioTests

FENCE = re.compile(r"```[^\n]*\n(.*?)(?:```|\Z)", re.S)
FUNCTION_INSTRUCTION = ("Complete the following Python code. Reply with the whole program in one "
                        "```python code block.")
STDIO_INSTRUCTION = ("Solve the following problem with a Python program that reads standard input "
                     "and prints the answer. Reply with the whole program in one ```python code block.")


def build_program(task: Task, response_text: str) -> str:
    """The program the sandbox runs for a completion-style response: prompt + response (+ the
    task's harness, e.g. a LeetCode method shim)."""
    program = task.prompt + response_text
    if not program.endswith("\n"):
        program += "\n"
    return program + task.meta.get("harness", "")


def format_chat_prompt(task: Task) -> list[dict]:
    """Chat messages for a chat-template model: an instruction and the prompt as fenced code."""
    instruction = STDIO_INSTRUCTION if isinstance(task.tests, StdioTests) else FUNCTION_INSTRUCTION
    return [{"role": "user", "content": f"{instruction}\n\n```python\n{task.prompt}```\n"}]


def _pick_block(task: Task, answer_text: str) -> str:
    """The fenced block that defines the entry point, else the longest block, else the text."""
    blocks = FENCE.findall(answer_text)
    if not blocks:
        return answer_text
    if task.entry_point:
        defining = [b for b in blocks if f"def {task.entry_point}(" in b]
        if defining:
            return defining[0]
    return max(blocks, key=len)


def extract_program(task: Task, answer_text: str, style: str) -> str:
    """The program to run for a model's answer. style "completion": the answer continues the
    prompt. style "chat": take the fenced code block (see _pick_block; no fence: the whole
    answer); a block that does not define the entry point is taken as a continuation of the
    prompt; the task's preamble (imports) goes before and its harness after."""
    if style == "completion":
        return build_program(task, answer_text)
    if style != "chat":
        raise ValueError(f"style must be 'completion' or 'chat', got {style!r}")
    code = _pick_block(task, answer_text)
    if task.entry_point and f"def {task.entry_point}(" not in code:
        return build_program(task, code)
    program = task.meta.get("preamble", "") + code
    if not program.endswith("\n"):
        program += "\n"
    return program + task.meta.get("harness", "")
