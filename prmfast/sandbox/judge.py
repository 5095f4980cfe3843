"""The trusted side of a job: asks for the untrusted children, drives them, decides.

One judge per worker slot runs job after job (root, PID 1 of the slot's PID namespace).
It reads each job's payload, public and secret halves (test code, expected outputs), but
the untrusted children are forked by its zygote, which was forked before the judge saw
any job (csrc/forkserver.cpp) and holds no job's data: no child's memory ever holds this
or any other job's secret, and the judge's memory is out of their reach (another uid,
Landlock's ptrace and signal scoping). Children send back plain data only (see codec),
and every verdict is computed here. After each job the zygote has killed everything of
it, and the judge removes the job's folder before it reports the job finished.
"""
from __future__ import annotations

import ast
import builtins
import collections
import fcntl
import importlib
import json
import os
import selectors
import signal
import socket
import struct
import sys
import time
from collections.abc import Callable

from prmfast import _sandbox
from prmfast.sandbox import child as child_side
from prmfast.sandbox import codec
from prmfast.sandbox.compare import stdout_matches, values_match

# A reply (one encoded value) above this ends the job as an error: the judge decodes every
# reply, and this bounds the memory that takes (a reply is read only when one is awaited).
MAX_FRAME = 8 << 20
# Messages to and from the fork server and the zygote (csrc/protocol.h).
SUBMIT, KILL, SPAWN, SPAWNED, CHILD_EXITED, FINISHED, KILLED = 1, 2, 4, 5, 6, 7, 8
MESSAGE = struct.Struct("<IiQ")          # op, arg, job or child sequence number
CHILD_EXIT = struct.Struct("<IiQqq")     # op, wait status, seq, CPU microseconds, OOM kills
SPAWN_REQUEST = struct.Struct("<IiQQqqqqq")  # op, mode, job, seq, five limits
# Modules the test code may see when the program imported them: those the judge has already
# loaded, and these (with their public submodules). Importing any other name could run code
# as root here (a package's __main__, a demo), so the test code does not get it.
MIRRORED_MODULES = frozenset({
    "abc", "array", "bisect", "calendar", "cmath", "collections", "copy", "dataclasses",
    "datetime", "decimal", "enum", "fractions", "functools", "hashlib", "heapq", "io",
    "itertools", "json", "math", "numbers", "operator", "os", "queue", "random", "re",
    "statistics", "string", "struct", "sys", "textwrap", "time", "types", "typing",
    "unicodedata"})


class Stop(BaseException):
    """The child is gone; `status` says why. BaseException so test code cannot swallow it."""

    def __init__(self, status: str, detail: str = ""):
        super().__init__(status, detail)
        self.status, self.detail = status, detail


class Link:
    """The judge's sockets: to the fork server (jobs in, "finished" out) and to its zygote,
    which forks, confines, kills and reaps the untrusted children."""

    def __init__(self, server_fd: int, zygote_fd: int):
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET, fileno=server_fd)
        self.zygote = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET, fileno=zygote_fd)
        self.seq = 0
        # One epoll set for the judge's life: each child adds its fds and removes them.
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.zygote.fileno(), selectors.EVENT_READ)

    def next_job(self):
        """(job, payload fd, result fd) of the next job; exits when the server is gone."""
        while True:
            data, fds, _, _ = socket.recv_fds(self.server, MESSAGE.size, 2)
            if not data:
                self.exit()
            if len(data) == MESSAGE.size and len(fds) == 2 and MESSAGE.unpack(data)[0] == SUBMIT:
                return MESSAGE.unpack(data)[2], fds[0], fds[1]
            for fd in fds:
                os.close(fd)

    def finished(self, job: int, retire: bool) -> None:
        self.server.send(MESSAGE.pack(FINISHED, int(retire), job))

    def exit(self) -> None:
        """Stop the zygote (it kills what is left of the job) and reap it before exiting:
        as PID 1, exiting first would let the kernel reap it without adding its CPU time
        to anyone's (CPU accounting would lose it)."""
        self.zygote.close()
        try:
            while True:
                os.wait()
        except ChildProcessError:
            pass
        os._exit(0)

    def spawn(self, job: int, mode: int, limits: dict, fds: list[int]) -> int:
        """Ask for a child; returns its sequence number (the zygote's messages about it
        carry it)."""
        self.seq += 1
        request = SPAWN_REQUEST.pack(SPAWN, mode, job, self.seq, limits["memory_mb"],
                                     limits["cpu_s"], limits["file_size_mb"],
                                     limits["open_files"], limits["processes"])
        socket.send_fds(self.zygote, [request], fds)
        return self.seq

    def kill(self, seq: int) -> None:
        """Ask the zygote to kill every process of the job (KILLED answers once none is left)."""
        self.zygote.send(MESSAGE.pack(KILL, 0, seq))

    def receive(self):
        """(op, arg, seq, CPU seconds, OOM kills) of the zygote's next message (blocking);
        exits if it is gone."""
        data = self.zygote.recv(64)
        if not data:
            os._exit(1)  # the zygote died: this judge cannot make a clean one again
        if len(data) == CHILD_EXIT.size:
            op, arg, seq, cpu_us, oom_kills = CHILD_EXIT.unpack(data)
            return op, arg, seq, cpu_us / 1e6, oom_kills
        if len(data) == MESSAGE.size:
            return (*MESSAGE.unpack(data), 0.0, 0)
        return 0, 0, 0, 0.0, 0


class Child:
    """One untrusted process as seen from the judge: its channel, output and deadline.
    The zygote forks, confines and reaps it, and reports how it ended."""

    def __init__(self, cfg: dict, mode: int, stdin: bytes = b""):
        self.limit = cfg["limits"]["output_bytes"]
        self.link: Link = cfg["link"]
        # A script (stdio tests) talks to nobody: its fd 3 is /dev/null, so nothing it writes
        # there piles up here.
        if mode == child_side.SCRIPT:
            chan_parent, chan_fd = None, os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        else:
            chan_parent, chan_child = socket.socketpair()
            chan_fd = chan_child.fileno()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        stdin_fd = os.memfd_create("stdin")
        if stdin:
            os.write(stdin_fd, stdin)
            os.lseek(stdin_fd, 0, os.SEEK_SET)
        try:
            fds = [cfg["program_fd"], stdin_fd, chan_fd, out_w, err_w]
            self.seq = self.link.spawn(cfg["job"], mode, cfg["limits"], fds)
        finally:
            for fd in (out_w, err_w, stdin_fd, chan_fd):
                os.close(fd)
        self.spawn_error: Stop | None = None
        self.sock = chan_parent
        self.chan = chan_parent.fileno() if chan_parent is not None else -1
        self.sel = self.link.selector
        for fd in (out_r, err_r):
            os.set_blocking(fd, False)
        for fd in (self.chan, out_r, err_r):
            if fd >= 0:
                self.sel.register(fd, selectors.EVENT_READ)
        self.out_fd, self.err_fd = out_r, err_r
        self.stdout, self.stderr, self.total_output = bytearray(), bytearray(), 0
        self.inbuf, self.frames = bytearray(), collections.deque()
        self.wait_status = None
        self.killed = False
        self.cpu_s = 0.0  # CPU time the child used, from the zygote
        self.oom_kills = 0  # processes of the job the memory cgroup killed while it ran
        self.cpu_limit = cfg["limits"]["cpu_s"] if "rlimits" in cfg["layers"] else None
        self.deadline = float("inf")
        self.stopped: Stop | None = None

    def _on_zygote_message(self) -> None:
        op, arg, seq, cpu_s, oom_kills = self.link.receive()
        if seq != self.seq:
            return  # about an earlier child of this judge: already settled
        if op == KILLED:
            self.killed = True
        if op == SPAWNED and arg < 0:
            self.spawn_error = Stop("error", f"could not start the program: {os.strerror(-arg)}")
            self.wait_status = 127 << 8
        elif op == CHILD_EXITED:
            self.wait_status, self.cpu_s, self.oom_kills = arg, cpu_s, oom_kills

    # -- waiting -------------------------------------------------------------------
    def _on_readable(self, fd: int) -> None:
        if fd == self.link.zygote.fileno():
            self._on_zygote_message()
            return
        data = os.read(fd, 1 << 16)
        if not data:
            self.sel.unregister(fd)
            return
        if fd == self.chan:
            self.inbuf += data
            self._parse_frames()
            return
        self.total_output += len(data)
        if self.total_output > self.limit:
            self.stop(Stop("output_limit", f"more than {self.limit} bytes of output"))
        if fd == self.out_fd:
            self.stdout += data
        else:
            self.stderr += data
            del self.stderr[:-4096]

    def _parse_frames(self) -> None:
        while len(self.inbuf) >= 4:
            (size,) = struct.unpack_from("<I", self.inbuf)
            if size > MAX_FRAME:
                self.stop(Stop("error", "oversized reply from the program"))
            if len(self.inbuf) < 4 + size:
                return
            self.frames.append(bytes(self.inbuf[4:4 + size]))
            del self.inbuf[:4 + size]

    def _pump(self, until) -> None:
        """Process events until until() is true; stops the child on deadline."""
        while not until():
            if self.stopped:
                raise self.stopped
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                self.stop(Stop("timeout"))
            for key, _ in self.sel.select(min(remaining, 3600)):
                self._on_readable(key.fd)

    def _exited(self) -> bool:
        return self.wait_status is not None

    def send(self, message: dict) -> None:
        if self.stopped:
            raise self.stopped
        try:
            self.sock.sendall(codec.dumps(message))  # blocking, as before; reads wait in select
        except OSError:
            pass  # the child died: noticed by reply() through its exit status

    def reply(self):
        """The child's next message (stops the child if it is gone or too slow)."""
        self._pump(lambda: self.frames or self._exited())
        if not self.frames:
            self.stop(exit_stop(self))
        try:
            return codec.loads(self.frames.popleft())
        except codec.ProtocolError as exc:
            self.stop(Stop("error", f"malformed reply from the program: {exc}"))

    def request(self, message: dict):
        """Send one request and wait for its reply."""
        self.send(message)
        return self.reply()

    def wait_exit(self) -> None:
        self._pump(self._exited)

    def stop(self, reason: Stop):
        """Kill the child and everything it started, drain its output, raise `reason`."""
        if self.stopped is None:
            self.stopped = reason
            self.kill()
        raise self.stopped

    def kill(self) -> None:
        """Kill the child and everything it started; return once the zygote reaped them."""
        if not self.killed:
            self.link.kill(self.seq)
            while not self.killed:
                self._on_zygote_message()

    def close(self) -> None:
        """Reap the child, stop whatever it left behind and read its output to the end."""
        self.kill()
        registered = self.sel.get_map()
        for fd in (self.out_fd, self.err_fd):
            if fd in registered:
                os.set_blocking(fd, True)
                while self.total_output <= self.limit and (data := os.read(fd, 1 << 16)):
                    self.total_output += len(data)
                    (self.stdout if fd == self.out_fd else self.stderr).extend(data)
        del self.stderr[:-4096]
        for fd in (self.chan, self.out_fd, self.err_fd):
            if fd >= 0 and fd in registered:
                self.sel.unregister(fd)
        if self.sock is not None:
            self.sock.close()
        for fd in (self.out_fd, self.err_fd):
            os.close(fd)


def exit_stop(ch: Child) -> Stop:
    """Why a child that should still be running is gone."""
    if ch.spawn_error is not None:
        return ch.spawn_error
    wait_status = ch.wait_status
    if os.WIFSIGNALED(wait_status):
        sig = os.WTERMSIG(wait_status)
        # SIGKILL is RLIMIT_CPU's hard limit only if the child used that much CPU time
        # (otherwise: the program killed itself, or the kernel's OOM killer did).
        if sig == signal.SIGXCPU or (sig == signal.SIGKILL and ch.cpu_limit is not None
                                     and ch.cpu_s >= ch.cpu_limit):
            return Stop("timeout", "CPU time limit")
        if sig == signal.SIGKILL and ch.oom_kills:
            return Stop("memory", "the job's processes together passed memory_mb")
        return Stop("crashed", f"killed by {signal.Signals(sig).name}")
    code = os.WEXITSTATUS(wait_status)
    if code == child_side.MEMORY_EXIT:
        return Stop("memory", "MemoryError")
    return Stop("error", f"the program exited (code {code}) before the tests finished")


class Remote:
    """An object that lives in the untrusted child: it can be called, its attributes and
    items read, set and deleted, iterated, and it equals nothing but itself. Every operation
    is a request whose reply is plain data or another reference, never a verdict."""
    __slots__ = ("_child", "_ref")

    def __init__(self, ch: Child, ref: int):
        object.__setattr__(self, "_child", ch)
        object.__setattr__(self, "_ref", ref)

    def __call__(self, *args, **kwargs):
        return call_remote(self._child, {"op": "call", "ref": self._ref, "args": encode_arg(args),
                                         "kwargs": encode_arg(kwargs)})

    def __getattr__(self, name):
        return call_remote(self._child, {"op": "getattr", "ref": self._ref, "name": name})

    def __setattr__(self, name, value):  # test setup code: root.left = Node(2)
        call_remote(self._child, {"op": "setattr", "ref": self._ref, "name": name,
                                  "value": encode_arg(value)})

    def __delattr__(self, name):
        call_remote(self._child, {"op": "delattr", "ref": self._ref, "name": name})

    def __iter__(self):
        return iter(call_remote(self._child, {"op": "list", "ref": self._ref}))

    def __len__(self):
        return call_remote(self._child, {"op": "len", "ref": self._ref})

    def __bool__(self):
        return call_remote(self._child, {"op": "bool", "ref": self._ref}) is True

    def __getitem__(self, key):
        return call_remote(self._child, {"op": "getitem", "ref": self._ref, "key": encode_arg(key)})

    def __setitem__(self, key, value):
        call_remote(self._child, {"op": "setitem", "ref": self._ref, "key": encode_arg(key),
                                  "value": encode_arg(value)})

    def __delitem__(self, key):
        call_remote(self._child, {"op": "delitem", "ref": self._ref, "key": encode_arg(key)})

    def __repr__(self):
        return f"<untrusted object #{self._ref}>"


class RemoteError(Exception):
    """An exception raised inside the untrusted program (of a type the judge cannot rebuild)."""


def encode_arg(value):
    if isinstance(value, Remote):
        return ["ref", value._ref]
    if type(value) in (list, tuple, set, frozenset):
        return [type(value).__name__] + [encode_arg(v) for v in value]
    if type(value) is dict:
        return ["dict"] + [[encode_arg(k), encode_arg(v)] for k, v in value.items()]
    return codec.encode(value)


def call_remote(ch: Child, message: dict):
    return unpack_reply(ch, ch.request(message))


def unpack_reply(ch: Child, reply):
    """The value of an {"ok": ...} reply, or the program's exception raised here."""
    if type(reply) is not dict:
        ch.stop(Stop("error", "malformed reply from the program"))
    if "ok" in reply:
        try:
            return codec.decode(reply["ok"], lambda i: Remote(ch, i))
        except (codec.ProtocolError, RecursionError) as exc:
            ch.stop(Stop("error", f"malformed reply from the program: {exc}"))
    name, msg = reply.get("exc", ["RemoteError", ""])
    if name == "MemoryError":
        ch.stop(Stop("memory", "MemoryError"))
    kind = getattr(builtins, str(name), None)
    if not (isinstance(kind, type) and issubclass(kind, Exception)):
        kind = RemoteError
    exc = kind(f"{name}: {msg}")
    exc.from_program = True
    raise exc


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


# -- the three test kinds -----------------------------------------------------------
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


def namespace_from(manifest: dict, ch: Child, entry_point: str | None,
                   called: Callable[[], set[str]]) -> dict:
    """The judge's mirror of the program's globals, for the test code: plain values, remote
    callables, and the modules of MIRRORED_MODULES imported here by name. `called()`: the
    names the test code calls (asked for only when it matters)."""
    ns = {"__name__": "__main__", "__builtins__": builtins}
    shown = mirrored_names(set(manifest), entry_point, called)
    for name, entry in manifest.items():
        if type(entry) is not dict:
            raise Stop("error", "malformed manifest")
        if name not in shown:
            continue
        if "module" in entry:
            module = mirrored_module(str(entry["module"]))
            if module is not None:
                ns[name] = module
            continue
        try:
            ns[name] = codec.decode(entry.get("value"), lambda i: Remote(ch, i))
        except (codec.ProtocolError, RecursionError) as exc:
            raise Stop("error", f"malformed reply from the program: {exc}") from None
    return ns


def mirrored_names(names: set[str], entry_point: str | None,
                   called: Callable[[], set[str]]) -> set[str]:
    """The program's globals the test code sees. One named like a builtin (`def abs(x)`)
    would replace that builtin in the test code and could forge a pass, so it is left out,
    unless it is the function under test: the entry point or, without one, what the tests
    call when they call no other function of the program (MBPP's `def sum(a, b)`, tested as
    `assert sum(10, 15) == 6`)."""
    shadowing = {name for name in names if hasattr(builtins, name)}
    if not shadowing:
        return names
    if entry_point is not None:
        allowed = {entry_point}
    elif called() & (names - shadowing):
        allowed = set()
    else:
        allowed = called()
    return (names - shadowing) | (shadowing & allowed)


def mirrored_module(name: str):
    """The module `name` if the test code may see it (MIRRORED_MODULES), else None."""
    if name in sys.modules:
        return sys.modules[name]
    parts = name.split(".")
    if parts[0] not in MIRRORED_MODULES or any(p.startswith("_") for p in parts):
        return None
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def called_names(cases) -> set[str]:
    """Names the test code calls directly (`f(...)`)."""
    return {node.func.id for case, _ in cases for node in ast.walk(case)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}


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
            if ch.stopped:
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
            if ch.stopped:
                break
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
    runs, last, detail = [], None, ""
    for stdin in public["stdin"]:
        ch = Child(cfg, child_side.SCRIPT, stdin.encode())
        ch.deadline = min(job_deadline, time.monotonic() + case_timeout)
        try:
            ch.wait_exit()
            stop = None if ch.wait_status == 0 else exit_stop(ch)
        except Stop as exc:
            stop = exc
        ch.close()
        if stop is not None and not detail:
            detail = f"case {len(runs)}: {stop.status} {stop.detail}".strip()
        runs.append((stop, bytes(ch.stdout)))
        last = ch
        if stop is not None and stop.status == "timeout" and time.monotonic() >= job_deadline:
            break
    secret = secret_reader()
    expected, grader = secret["stdout"], secret["grader"]
    tests, statuses = [], []
    for (stop, out), want in zip(runs, expected):
        if stop is not None:
            status = stop.status
        else:
            got = out.decode("utf-8", errors="replace")
            status = "passed" if stdout_matches(got, want, grader) else "failed"
        tests.append(status == "passed")
        statuses.append(status)
    tests += [False] * (len(expected) - len(tests))
    statuses += ["timeout"] * (len(expected) - len(statuses))
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
            "first_failure": bad[0] if bad else (0 if stop is not None and not tests else None),
            "stderr": stderr[-2000:]}


RUNNERS = {"assert": run_assert, "call": run_call, "stdio": run_stdio}


def _read_part(fd: int):
    (size,) = struct.unpack("<Q", os.read(fd, 8))
    data = b""
    while len(data) < size:
        data += os.read(fd, size - len(data))
    return json.loads(data)


def program_memfd(program: str) -> int:
    """The program in a sealed memfd, which each child of the job reads (fd 4)."""
    fd = os.memfd_create("program", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    data = program.encode("utf-8", "surrogatepass")
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW
                | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL)
    return fd


def run_job(link: Link, job: int, payload_fd: int, layers: list[str], workdir: str) -> dict:
    """One job, from its payload to its verdict; every child of it is gone on return."""
    start = time.monotonic()
    public = _read_part(payload_fd)
    write_source(workdir, public["program"])
    limits = public["limits"]
    program_fd = program_memfd(public["program"])
    cfg = {"link": link, "job": job, "program_fd": program_fd, "limits": limits,
           "layers": layers}
    try:
        return RUNNERS[public["kind"]](cfg, public, lambda: _read_part(payload_fd),
                                       limits["case_timeout_s"], start + limits["timeout_s"])
    except Stop as stop:
        return verdict([], [], stop, None)
    finally:
        os.close(program_fd)


def write_source(workdir: str, program: str) -> None:
    """The program as `main.py` in its folder, as `python main.py` would find it: its
    __file__ exists, and tracebacks show its lines (the child runs the sealed copy)."""
    fd = os.open(os.path.join(workdir, child_side.SOURCE_NAME),
                 os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        data = program.encode("utf-8", "surrogatepass")
        while data:
            data = data[os.write(fd, data):]
    finally:
        os.close(fd)


def serve(sock: int, zygote: int, slot: int, server_cfg: dict) -> None:
    """Entry of a slot's judge (root, PID 1 of the slot's namespace): runs the jobs the
    server hands it, one at a time; after server_cfg["judge_jobs"] of them it retires
    (the server starts a fresh one), which bounds what a long life can accumulate."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    link = Link(sock, zygote)
    uid = server_cfg["uid_base"] + slot
    lifetime = server_cfg["judge_jobs"]
    for n in range(lifetime):
        job, payload_fd, result_fd = link.next_job()
        workdir = os.path.join(server_cfg["base"], str(job))
        os.mkdir(workdir, 0o700)
        if "setuid" in server_cfg["layers"]:
            os.chown(workdir, uid, uid)
        result = run_job(link, job, payload_fd, server_cfg["layers"], workdir)
        os.close(payload_fd)
        data = json.dumps(result).encode()
        while data:
            data = data[os.write(result_fd, data):]
        os.close(result_fd)
        _sandbox.remove_tree(workdir)
        link.finished(job, retire=n == lifetime - 1)
    link.exit()
