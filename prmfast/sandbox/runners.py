"""The three test kinds, run by the judge against one job's children: assert (test code run
here on the mirrored globals), call (the entry point called per case in the child, results
compared here) and stdio (the program run per stdin, stdout compared here). Every verdict is
decided here, from plain data.

    RUNNERS[kind](cfg, public, secret_reader, case_timeout, job_deadline) -> result dict
    verdict(tests, statuses, stop, child, case_detail) -> {"status", "tests", "statuses",
                                                          "first_failure", "stderr"}

With public["stop_on_failure"] (Job.stop_on_failure) a runner stops at the first case that
does not pass: the verdict's passed and first_failure are a full run's, and the cases after it
are NOT_RUN.
"""
from __future__ import annotations

import ast
import time

from prmfast.sandbox import child as child_side
from prmfast.sandbox import codec
from prmfast.sandbox.channel import Child, Stop, exit_stop
from prmfast.sandbox.compare import stdout_matches, values_match
from prmfast.sandbox.remote import called_names, namespace_from, unpack_reply
from prmfast.sandbox.specs import NOT_RUN

def describe(exc: BaseException, stopped: Stop | None) -> str:
    """One line on why a case did not pass, for the result's stderr."""
    if stopped is not None:
        return f"{stopped.status} {stopped.detail}".strip()
    if getattr(exc, "from_program", False):
        return str(exc.args[0]) if exc.args else str(exc)  # "<Type>: <message>" from the child
    return f"{type(exc).__name__}: {exc}"


def classify(exc: BaseException) -> str:
    """Verdict of a test case that raised `exc`."""
    if isinstance(exc, Stop):
        return exc.status
    if isinstance(exc, AssertionError):
        return "failed"
    return "error" if getattr(exc, "from_program", False) else "failed"


def load_program(ch: Child) -> dict:
    """Wait for the child's first message: the program's globals, or why it failed."""
    reply = _first_reply(ch)
    if "ok" not in reply or type(reply["ok"]) is not dict:
        name, msg = reply.get("exc", ["Error", ""])
        if name == "MemoryError":
            raise Stop("memory", "MemoryError while loading the program")
        raise Stop("error", f"{name}: {msg}")
    return reply["ok"]


def _first_reply(ch: Child) -> dict:
    reply = ch.reply()
    if type(reply) is not dict:
        ch.stop(Stop("error", "malformed reply from the program"))
    return reply


SETUP_STATEMENTS = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef,
                    ast.ClassDef, ast.Assign, ast.AnnAssign, ast.AugAssign)


def split_cases(code: str, entry_point: str | None):
    """[(top-level statement, whether it is a test case)]. With an entry point and a check(),
    the single case is check(<entry point>); otherwise every top-level assert is a case, and
    test code without one has a case per top-level statement other than imports, definitions
    and assignments (`check(f)`, a loop or a try block of asserts)."""
    tree = ast.parse(code)
    defines_check = any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == "check"
                        for n in tree.body)
    if entry_point and defines_check:
        call = ast.parse(f"check({entry_point})").body
        return [(n, False) for n in tree.body] + [(call[0], True)]
    if any(isinstance(n, ast.Assert) for n in tree.body):
        return [(n, isinstance(n, ast.Assert)) for n in tree.body]
    return [(n, not isinstance(n, SETUP_STATEMENTS)) for n in tree.body]


def run_assert(cfg, public, secret_reader, case_timeout, job_deadline) -> dict:
    ch = Child(cfg, child_side.SERVE)
    tests, statuses = [], []
    try:
        cases = split_cases(secret_reader()["code"], public.get("entry_point"))
    except SyntaxError as exc:
        ch.close()
        return verdict(tests, statuses, Stop("error", f"test code: {exc}"), ch)
    n_cases = sum(is_case for _, is_case in cases)
    detail = ""  # why the first failing case failed, for the user
    try:
        ch.deadline = job_deadline
        entry_point = public.get("entry_point")
        ns = namespace_from(load_program(ch), ch, entry_point, lambda: called_names(cases))
        if entry_point and entry_point not in ns and any(
                isinstance(node, ast.FunctionDef) and node.name == "check" for node, _ in cases):
            raise Stop("error", f"the program does not define {entry_point!r}")
        for node, is_case in cases:
            ch.deadline = min(job_deadline, time.monotonic() + case_timeout)
            status = "passed"
            try:
                exec(compile(ast.Module([node], []), "<tests>", "exec"), ns)
            except BaseException as exc:
                status = classify(exc)
                if status != "passed" and not detail:
                    detail = f"test line {node.lineno}: {describe(exc, ch.stopped)}"[:500]
            if ch.stopped:  # even if the test code swallowed the Stop
                status = ch.stopped.status
            if not is_case:
                if status != "passed":
                    raise Stop(status, "a test setup statement failed")
                continue
            tests.append(status == "passed")
            statuses.append(status)
            if ch.stopped or (status != "passed" and public.get("stop_on_failure")):
                break
    except Stop as stop:
        return verdict(tests + [False] * (n_cases - len(tests)), statuses, stop, ch)
    finally:
        ch.close()
    return verdict(tests + [False] * (n_cases - len(tests)), statuses, None, ch, detail)


def run_call(cfg, public, secret_reader, case_timeout, job_deadline) -> dict:
    """All calls go in one request; the child streams one reply per case, so a case costs
    no round trip, and each reply still has its own deadline."""
    ch = Child(cfg, child_side.SERVE)
    secret = secret_reader()
    tests, statuses, first_detail = [], [], ""
    try:
        ch.deadline = job_deadline
        load_program(ch)
        ch.send({"op": "calls", "name": public["entry_point"], "args": public["args"]})
        unpack_reply(ch, ch.reply())  # the entry point exists and is callable
        for case, expected in enumerate(secret["expected"]):
            ch.deadline = min(job_deadline, time.monotonic() + case_timeout)
            try:
                got = unpack_reply(ch, ch.reply())
                status = "passed" if accepted(got, case, secret) else "failed"
                detail = "" if status == "passed" else f"case {case}: wrong value or type"
            except BaseException as exc:
                status = ch.stopped.status if ch.stopped else classify(exc)
                detail = f"case {case}: {describe(exc, ch.stopped)}"[:300]
            first_detail = first_detail or detail
            tests.append(status == "passed")
            statuses.append(status)
            if ch.stopped or (status != "passed" and public.get("stop_on_failure")):
                break  # closing the child below kills it, with the cases it has not answered
        stop = ch.stopped  # why the remaining cases did not run (its detail goes to stderr)
    except Stop as exc:
        stop = exc
    except Exception as exc:  # the entry point is missing or not callable
        stop = Stop("error", str(exc))
    finally:
        ch.close()
    return verdict(pad(tests, public["args"]), statuses, stop, ch, first_detail)


def accepted(got, case: int, secret: dict) -> bool:
    """Whether `got` passes case `case`: it matches the expected result, or one of the case's
    alternatives, under the spec's grader."""
    wanted = [codec.decode(secret["expected"][case])]
    if secret["alternatives"]:
        wanted += codec.decode(secret["alternatives"][case])
    atol = secret["atol"][case] if type(secret["atol"]) is list else secret["atol"]
    return any(values_match(got, want, secret["grader"], atol) for want in wanted)


def pad(tests: list, cases: list) -> list:
    """Cases that never ran count as failed."""
    return tests + [False] * (len(cases) - len(tests))


def run_stdio(cfg, public, secret_reader, case_timeout, job_deadline) -> dict:
    secret = secret_reader()  # read by the judge only; no child of the job sees it
    expected, grader = secret["stdout"], secret["grader"]
    tests, statuses, last, detail = [], [], None, ""
    for stdin, want in zip(public["stdin"], expected):
        ch = Child(cfg, child_side.SCRIPT, stdin.encode())
        ch.deadline = min(job_deadline, time.monotonic() + case_timeout)
        try:
            ch.wait_exit()
            stop = None if ch.wait_status == 0 else exit_stop(ch)
        except Stop as exc:
            stop = exc
        ch.close()
        if stop is not None and not detail:
            detail = f"case {len(tests)}: {stop.status} {stop.detail}".strip()
        last = ch
        if stop is not None:
            status = stop.status
        else:
            got = bytes(ch.stdout).decode("utf-8", errors="replace")
            status = "passed" if stdout_matches(got, want, grader) else "failed"
        tests.append(status == "passed")
        statuses.append(status)
        if status != "passed" and public.get("stop_on_failure"):
            break
        if stop is not None and stop.status == "timeout" and time.monotonic() >= job_deadline:
            statuses += ["timeout"] * (len(expected) - len(statuses))
            break
    return verdict(tests, statuses, None, last, detail)


def verdict(tests, statuses, stop: Stop | None, ch: Child | None, case_detail: str = "") -> dict:
    bad = [i for i, s in enumerate(statuses) if s != "passed"]
    if stop is not None:
        status = stop.status
    elif bad:
        status = statuses[bad[0]]
    else:
        status = "passed" if statuses else "error"
    stderr = bytes(ch.stderr).decode("utf-8", errors="replace") if ch else ""
    detail = stop.detail if stop is not None else case_detail
    if detail:
        stderr = (stderr + "\n" + detail).strip()
    if status == "error" and not statuses and not detail and not stderr:
        stderr = "no test cases"
    return {"status": status, "tests": tests,
            "statuses": statuses[:len(tests)] + [NOT_RUN] * (len(tests) - len(statuses)),
            "first_failure": bad[0] if bad else (0 if stop is not None and not tests else None),
            "stderr": stderr[-2000:]}


RUNNERS = {"assert": run_assert, "call": run_call, "stdio": run_stdio}
