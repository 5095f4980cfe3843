"""The line-level oracle of the synthetic suite (docs/design.md, "Synthetic suite"): the true
first error of a response.

Definitions (kept simple so they can be stated in one breath):
- A step of a candidate is one top-level statement of the body of its function `f`; step i of the
  reference is its body line i (the last one is the return).
- The state after step i is the value of the variable that statement assigns when it is a plain
  `name = ...` / `name += ...` (so renaming `xs` is fine), otherwise the value of the parameter
  (`xs`); a `return` step's state is the returned value, marked as returned; a step that raises or
  runs out of time has the state "error"/"timeout". States are compared as canonical text of plain
  values (exact types: 1, 1.0 and True differ).
- The first error is the smallest step index at which the candidate's state differs from the
  reference's on any test input; None if every step matches on every input.
- Text that does not parse is kept up to the longest parsable prefix of lines; the statement after
  it is a failing step. A missing step (the function ends early) fails at the index it should have
  had. If every step matches but unparsable text follows, the first error is the index after the
  last step (== horizon).
Candidates run in a subprocess (trace_worker.py), each in a forked child with resource limits, a
per-call timer and a wall deadline. Code outside `f` is not executed. A step split over two lines
shifts every later step, so it counts as an error at the split.
"""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from prmfast.data.task import Task
from prmfast.data.trace_worker import STEP_HOOK, trace_calls

WORKER = Path(__file__).with_name("trace_worker.py")


@dataclass(frozen=True)
class Body:
    """A function body split into steps. Line indices are 0-based lines of the body text."""
    source: str                 # the function, instrumented with a STEP_HOOK call after each step
    step_lines: tuple[int, ...]  # line where each step starts
    broken: bool                # unparsable text follows the parsed steps
    after_line: int             # line blamed for a step past the last one: the first code line
                                # after the steps (unparsable text or code outside f), else the
                                # last non-blank line


def parse_body(header: str, body_text: str) -> Body:
    """Parse `header` (a `def f(xs):` line) plus the body lines, keeping the longest prefix of
    lines that parses, and instrument it."""
    lines = body_text.split("\n")
    k = len(lines)
    module = None
    while k > 0:
        try:
            module = ast.parse(header + "\n" + "\n".join(lines[:k]))
            break
        except SyntaxError as err:
            k = min(k - 1, max((err.lineno or 0) - 2, 0))
        except ValueError:  # e.g. null bytes
            k -= 1
    code_lines = [i for i, line in enumerate(lines) if line.strip() and not line.strip().startswith("#")]
    after = [i for i in code_lines if i >= k]
    if module is None:
        return Body(header + "\n    pass\n", (), bool(after), after[0] if after else 0)
    fn, *outside = module.body
    after += [node.lineno - 2 for node in outside]
    last_line = max((i for i, line in enumerate(lines) if line.strip()), default=0)
    return Body(
        source=_instrument(fn),
        step_lines=tuple(stmt.lineno - 2 for stmt in fn.body),
        broken=k < len(lines) and any(i >= k for i in code_lines),
        after_line=min(after) if after else last_line,
    )


def _state_name(stmt: ast.stmt, default: str) -> str:
    targets = stmt.targets if isinstance(stmt, ast.Assign) else [getattr(stmt, "target", None)]
    if len(targets) == 1 and isinstance(targets[0], ast.Name):
        return targets[0].id
    return default


def _instrument(fn: ast.FunctionDef) -> str:
    default = fn.args.args[0].arg if fn.args.args else "xs"
    body = []
    for i, stmt in enumerate(fn.body):
        body.append(stmt)
        hook = ast.Call(ast.Name(STEP_HOOK, ast.Load()),
                        [ast.Constant(i), ast.Name(_state_name(stmt, default), ast.Load())], [])
        body.append(ast.Expr(hook))
    fn = ast.FunctionDef(fn.name, fn.args, body, [], fn.returns, None, type_params=[])
    return ast.unparse(ast.fix_missing_locations(ast.Module([fn], [])))


def _states(events: list | None) -> list[str] | None:
    """Events of one call -> the state after each step; a call cut off ends in "killed"; None
    for a call that never started."""
    if events is None:
        return None
    states = []
    for kind, _step, payload in events:
        if kind == "step":
            states.append(payload)
        else:
            states.append(f"{kind} {payload}")
            return states
    return states + ["killed"]


def _first_divergence(candidate: list[list[str]], reference: list[list[str]]) -> int | None:
    first = None
    for cand, ref in zip(candidate, reference):
        if cand is None:
            continue
        for i, state in enumerate(ref):
            if i >= len(cand) or cand[i] != state:
                first = i if first is None else min(first, i)
                break
    return first


def _inputs(task: Task) -> list:
    return [list(args) for args, _ in task.tests.cases]


@lru_cache(maxsize=4096)
def _reference_states(header: str, reference: str, entry: str, inputs_json: str) -> tuple:
    events = [[] for _ in json.loads(inputs_json)]

    def emit(n, kind, step, payload):
        if kind != "start":
            events[n].append([kind, step, payload])

    trace_calls(parse_body(header, reference).source, entry, json.loads(inputs_json), emit)
    return tuple(tuple(_states(e)) for e in events)


def _run_worker(jobs: list[dict], timeout_s: float, memory_mb: int) -> list[list]:
    request = json.dumps({"jobs": jobs, "timeout_s": timeout_s, "memory_mb": memory_mb})
    budget = sum(2 * timeout_s * (len(job["inputs"]) + 1) + 2 for job in jobs) + 10
    try:
        stdout = subprocess.run([sys.executable, "-I", str(WORKER)], input=request, text=True,
                                capture_output=True, timeout=budget).stdout
    except subprocess.TimeoutExpired as err:  # keep the jobs that finished
        stdout = err.stdout.decode() if isinstance(err.stdout, bytes) else err.stdout or ""
    results = [json.loads(line) for line in stdout.splitlines()[:len(jobs)] if line.endswith("]")]
    # a job the worker never reported counts as killed at step 0 on its first input
    return results + [[[]] + [None] * (len(job["inputs"]) - 1) for job in jobs[len(results):]]


def _header(task: Task) -> str:
    return task.prompt.rstrip("\n").split("\n")[-1]


def _first_errors(tasks: list[Task], headers: list[str], bodies_text: list[str],
                  timeout_s: float, memory_mb: int) -> list[tuple[int | None, Body]]:
    bodies = [parse_body(h, b) for h, b in zip(headers, bodies_text)]
    jobs = [{"source": body.source, "entry": task.entry_point, "inputs": _inputs(task)}
            for task, body in zip(tasks, bodies)]
    traces = _run_worker(jobs, timeout_s, memory_mb) if jobs else []
    out = []
    for task, body, events in zip(tasks, bodies, traces):
        reference = _reference_states(_header(task), task.reference, task.entry_point,
                                      json.dumps(_inputs(task)))
        step = _first_divergence([_states(e) for e in events], list(map(list, reference)))
        if body.broken:
            step = len(body.step_lines) if step is None else min(step, len(body.step_lines))
        out.append((step, body))
    return out


def _split_program(task: Task, program: str) -> tuple[str, str]:
    """(def line, body text) of the entry function in a full program."""
    lines = program.split("\n")
    for i, line in enumerate(lines):
        if line.startswith(f"def {task.entry_point}("):
            return line, "\n".join(lines[i + 1:])
    return f"def {task.entry_point}(xs):", ""


def first_error_steps(tasks: list[Task], programs: list[str], *, timeout_s: float = 0.2,
                      memory_mb: int = 512) -> list[int | None]:
    """Batched first_error_step: one worker process for the whole batch."""
    headers, bodies = zip(*(_split_program(t, p) for t, p in zip(tasks, programs))) if tasks else ((), ())
    return [step for step, _ in _first_errors(tasks, list(headers), list(bodies), timeout_s, memory_mb)]


def first_error_lines(tasks: list[Task], responses: list[str], *, timeout_s: float = 0.2,
                      memory_mb: int = 512) -> list[int | None]:
    """Batched first_error_line."""
    results = _first_errors(tasks, [_header(t) for t in tasks], responses, timeout_s, memory_mb)
    return [None if step is None else _step_line(body, step) for step, body in results]


def _step_line(body: Body, step: int) -> int:
    return body.step_lines[step] if step < len(body.step_lines) else body.after_line


def first_error_step(task: Task, program: str, **kw) -> int | None:
    """0-based index of the first step of `program` (a full program defining the entry function)
    whose state differs from the reference's on the task's test inputs; None if all match."""
    return first_error_steps([task], [program], **kw)[0]


def first_error_line(task: Task, response_text: str, **kw) -> int | None:
    """The first error mapped to a 0-based line of the response (the completion after the
    prompt): the line where the failing step starts; None if every step matches."""
    return first_error_lines([task], [response_text], **kw)[0]
