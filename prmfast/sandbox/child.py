"""The untrusted side: confines a freshly forked process, then runs the program.

Everything here runs before the program is executed, except the request loop, whose
answers the judge treats as claims (plain data only), never as verdicts.
"""
from __future__ import annotations

import builtins
import io
import os
import signal
import sys
import traceback

from prmfast import _sandbox
from prmfast.sandbox import codec

MEMORY_EXIT = 121  # stdio mode: the program died of MemoryError


def confine(cfg: dict, workdir: str, chan: int, stdin_fd: int, out_fd: int, err_fd: int) -> None:
    """Set up stdio and fds, then apply the isolation layers named in cfg['layers']."""
    os.setpgid(0, 0)
    os.dup2(stdin_fd, 0)
    os.dup2(out_fd, 1)
    os.dup2(err_fd, 2)
    os.dup2(chan, 3)
    os.closerange(4, 1 << 16)  # judge's result pipe, payload, server socket: none reach the program
    os.chdir(workdir)
    os.environ.clear()
    os.environ.update(PATH="/usr/local/bin:/usr/bin:/bin", HOME=workdir, TMPDIR=workdir,
                      LANG="C.UTF-8", PYTHONIOENCODING="utf-8")
    # The trusted processes lift the int<->str digit limit; the program gets stock Python's.
    sys.set_int_max_str_digits(sys.int_info.default_max_str_digits)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # oversized writes fail with EFBIG instead
    layers = cfg["layers"]
    lim = cfg["limits"]
    if "rlimits" in layers:
        _sandbox.apply_limits(address_space_mb=lim["memory_mb"], cpu_s=lim["cpu_s"],
                              file_size_mb=lim["file_size_mb"], open_files=lim["open_files"],
                              processes=lim["processes"])
    if "setuid" in layers:
        _sandbox.drop_privileges(cfg["uid"], cfg["uid"])
    if "landlock" in layers:
        _sandbox.landlock_restrict([workdir, "/dev/null"])
    sys.stdin = io.TextIOWrapper(io.BufferedReader(io.FileIO(0, "r", closefd=False)),
                                 encoding="utf-8", errors="replace")
    sys.stdout = io.TextIOWrapper(io.BufferedWriter(io.FileIO(1, "w", closefd=False)),
                                  encoding="utf-8", errors="backslashreplace")
    sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8",
                                  errors="backslashreplace", write_through=True)
    sys.argv = ["main.py"]


def _fresh_main() -> dict:
    return {"__name__": "__main__", "__builtins__": builtins, "__file__": "main.py"}


def run_script(program: str) -> None:
    """Stdio mode: run the program as __main__ and exit with its status."""
    code = 0
    try:
        exec(compile(program, "main.py", "exec"), _fresh_main())
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except MemoryError:
        code = MEMORY_EXIT
    except BaseException:
        traceback.print_exc()
        code = 1
    try:
        sys.stdout.flush()
    except BaseException:
        code = code or 1
    os._exit(code & 0xFF)


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
            out[name] = {"value": codec.encode(value, refs)}
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
        exec(compile(program, "main.py", "exec"), ns)
        _send({"ok": _manifest(ns, refs)})
    except BaseException as exc:  # SystemExit included: exiting early is an error
        traceback.print_exc()
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
