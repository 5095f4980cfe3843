"""The untrusted side: a process its judge's zygote forked from the server's clean
interpreter (under the slot's seccomp filter) and confined (fds, working directory,
environment, rlimits, uid, Landlock: forkserver.cpp) before any Python runs in it. Here: the
Python-level setup, then the program.

Everything here runs before the program is executed, except the request loop, whose
answers the judge treats as claims (plain data only), never as verdicts.
"""
from __future__ import annotations

import builtins
import io
import os
import sys
import traceback
import types

from prmfast.sandbox import codec

MEMORY_EXIT = 121  # stdio mode: the program died of MemoryError
SERVE, SCRIPT = 0, 1  # modes: answer the judge's requests / run as a script (stdio tests)
PROGRAM_FD = 4  # a sealed memfd holding the program (UTF-8, surrogates passed through)
SOURCE_NAME = "main.py"  # the program's __file__; the judge writes a copy there
# A global whose value encodes to more than this crosses to the judge as a reference, not as
# a copy: the judge bounds what it reads (channel.MAX_FRAME), and the tests rarely read one.
MANIFEST_VALUE_BYTES = 1 << 20


def start(mode: int, workdir: str) -> None:
    """Entry of an untrusted child (fds 0-2 stdio, 3 the judge's channel, 4 the program;
    nothing else open); never returns."""
    try:
        prepare(workdir)
        program = read_program()
    except BaseException as exc:
        os.write(2, f"sandbox setup failed: {exc!r}\n".encode())
        os._exit(120)
    if mode == SCRIPT:
        run_script(program)
    serve(program)
    os._exit(0)


_STDIO = None  # (stdin, stdout, stderr) for fds 0-2, built by the server: make_stdio()


def make_stdio() -> None:
    """Build the program's sys.stdin/stdout/stderr once, in the server, so that a child
    only rebinds them (building three text streams in every child costs ~90 copy-on-write
    faults). They wrap fds 0-2, which are the child's own stdio by the time it runs. The
    streams remember whether their fd was seekable when built, so they are built while
    fd 0 is seekable (as the child's stdin memfd is) and fds 1-2 are pipes (as the
    child's stdout and stderr are)."""
    global _STDIO
    r, w = os.pipe()
    saved = [os.dup(fd) for fd in (0, 1, 2)]
    stdin = os.memfd_create("stdin")
    try:
        os.dup2(stdin, 0)
        os.dup2(w, 1)
        os.dup2(w, 2)
        _STDIO = (
            io.TextIOWrapper(io.BufferedReader(io.FileIO(0, "r", closefd=False)),
                             encoding="utf-8", errors="replace"),
            io.TextIOWrapper(io.BufferedWriter(io.FileIO(1, "w", closefd=False)),
                             encoding="utf-8", errors="backslashreplace"),
            io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8",
                             errors="backslashreplace", write_through=True))
        for stream in _STDIO:
            stream.seekable()  # cached now, while the fd is of the child's kind
    finally:
        for fd, old in zip((0, 1, 2), saved):
            os.dup2(old, fd)
            os.close(old)
        for fd in (r, w, stdin):
            os.close(fd)


def warm_up() -> None:
    """Run, in the server, the code paths every child runs (messages both ways, compile),
    until CPython 3.11 has specialised their bytecode: a child that ran them first would
    write to those shared code objects, copying their pages."""
    sample = {"op": "call", "ref": 0, "args": codec.encode([[1, 2.5, "s", None, True], (3,)]),
              "kwargs": codec.encode({})}
    for _ in range(64):
        codec.decode(codec.loads(codec.dumps(sample)[codec.FRAME_HEADER.size:])["args"])
        codec.loads(codec.dumps({"ok": codec.encode([1, "x", {"k": (2.0,)}], [])})
                    [codec.FRAME_HEADER.size:])
        _manifest({"f": len, "x": 1, "m": sys}, [])
        _exc_reply(ValueError("x"))
        compile("def f(x):\n    return x\n", SOURCE_NAME, "exec")


def prepare(workdir: str) -> None:
    """What the C++ side cannot do for Python. Kept to a few C-level calls: every Python
    code path that runs for the first time in a fresh fork costs copy-on-write faults.
    (Signals need nothing: CPython ignores SIGXFSZ at start-up, so oversized writes fail
    with EFBIG, and SIGINT has Python's default handler.)"""
    # The C environment was already scrubbed and set by the server (forkserver.cpp);
    # os.environ mirrors it (its private dict, replaced in one step).
    wd = workdir.encode()
    os.environ._data = {b"PATH": b"/usr/local/bin:/usr/bin:/bin", b"HOME": wd, b"TMPDIR": wd,
                        b"LANG": b"C.UTF-8", b"PYTHONIOENCODING": b"utf-8"}
    # The trusted processes lift the int<->str digit limit; the program gets stock Python's.
    sys.set_int_max_str_digits(sys.int_info.default_max_str_digits)
    sys.stdin, sys.stdout, sys.stderr = _STDIO
    sys.argv = [SOURCE_NAME]


def read_program() -> str:
    size = os.fstat(PROGRAM_FD).st_size
    data = os.pread(PROGRAM_FD, size, 0)
    os.close(PROGRAM_FD)
    return data.decode("utf-8", "surrogatepass")


def _fresh_main() -> dict:
    """The globals of a new __main__ module, which replaces the server's in sys.modules:
    pickle (multiprocessing) finds the program's functions there by name."""
    main = types.ModuleType("__main__")
    main.__dict__.update(__builtins__=builtins, __file__=SOURCE_NAME)
    sys.modules["__main__"] = main
    return main.__dict__


def run_script(program: str) -> None:
    """Stdio mode: run the program as __main__ and exit with its status."""
    code = 0
    try:
        exec(compile(program, SOURCE_NAME, "exec"), _fresh_main())
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except MemoryError:
        code = MEMORY_EXIT
    except BaseException as exc:
        _print_traceback(exc)
        code = 1
    try:
        sys.stdout.flush()
    except BaseException:
        code = code or 1
    os._exit(code & 0xFF)


def _print_traceback(exc: BaseException) -> None:
    """The program's traceback as `python main.py` prints it: without this harness's frame."""
    tb = exc.__traceback__.tb_next if exc.__traceback__ is not None else None
    traceback.print_exception(type(exc), exc, tb)


def _send(message) -> None:
    data = codec.dumps(message)
    while data:
        data = data[os.write(3, data):]


def _recv():
    def exact(n):
        buf = b""
        while len(buf) < n:
            chunk = os.read(3, n - len(buf))
            if not chunk:
                os._exit(0)
            buf += chunk
        return buf
    (size,) = codec.FRAME_HEADER.unpack(exact(codec.FRAME_HEADER.size))
    return codec.loads(exact(size))


def _exc_reply(exc: BaseException) -> dict:
    return {"exc": [type(exc).__name__, str(exc)[:500]]}


def _resolve_entry(ns: dict, name: str):
    """entry_point as a global, or a method of a LeetCode-style `Solution` class."""
    if name in ns:
        return ns[name]
    if "Solution" in ns and hasattr(ns["Solution"], name):
        return getattr(ns["Solution"](), name)
    raise NameError(f"name {name!r} is not defined")


def _manifest(ns: dict, refs: list) -> dict:
    out = {}
    for name, value in list(ns.items()):
        if name.startswith("__"):
            continue
        if type(value) is type(sys):
            out[name] = {"module": value.__name__}
        else:
            tree = codec.encode(value, refs)
            if codec.encoded_size(tree) > MANIFEST_VALUE_BYTES:
                refs.append(value)
                tree = ["ref", len(refs) - 1]
            out[name] = {"value": tree}
    return out


def _serve_calls(ns: dict, req: dict, arg, refs: list) -> None:
    """CallTests: one reply saying whether the entry point is callable, then one per case."""
    try:
        fn = _resolve_entry(ns, req["name"])
        if not callable(fn):
            raise TypeError(f"entry point {req['name']!r} is not callable")
        _send({"ok": None})
    except BaseException as exc:
        _send(_exc_reply(exc))
        return
    for args in req["args"]:
        try:
            reply = {"ok": codec.encode(fn(*arg(args)), refs)}
        except BaseException as exc:
            reply = _exc_reply(exc)
        _send(reply)


def serve(program: str) -> None:
    """Assert/call mode: load the program, then answer the judge's requests."""
    refs: list = []
    ns = _fresh_main()
    try:
        exec(compile(program, SOURCE_NAME, "exec"), ns)
        _send({"ok": _manifest(ns, refs)})
    except BaseException as exc:  # SystemExit included: exiting early is an error
        _print_traceback(exc)
        _send(_exc_reply(exc))
        os._exit(1)

    def arg(tree):
        return codec.decode(tree, refs.__getitem__)

    while True:
        req = _recv()
        if req.get("op") == "calls":
            _serve_calls(ns, req, arg, refs)
            continue
        try:
            op = req["op"]
            if op == "call":
                value = refs[req["ref"]](*arg(req["args"]), **arg(req["kwargs"]))
            elif op == "getattr":
                value = getattr(refs[req["ref"]], req["name"])
            elif op == "list":
                value = list(refs[req["ref"]])
            elif op == "len":
                value = len(refs[req["ref"]])
            elif op == "bool":
                value = bool(refs[req["ref"]])
            elif op == "getitem":
                value = refs[req["ref"]][arg(req["key"])]
            elif op == "setattr":
                setattr(refs[req["ref"]], str(req["name"]), arg(req["value"]))
                value = None
            elif op == "delattr":
                delattr(refs[req["ref"]], str(req["name"]))
                value = None
            elif op == "setitem":
                refs[req["ref"]][arg(req["key"])] = arg(req["value"])
                value = None
            elif op == "delitem":
                del refs[req["ref"]][arg(req["key"])]
                value = None
            else:
                raise ValueError(f"unknown op {op!r}")
            reply = {"ok": codec.encode(value, refs)}
        except BaseException as exc:
            reply = _exc_reply(exc)
        _send(reply)
