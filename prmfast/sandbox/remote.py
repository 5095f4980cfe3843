"""Values that live in the untrusted child, as the judge's test code sees them: the mirror of
the program's globals (plain values, remote references, allowed modules) and Remote, a
reference whose every operation is a request answered with plain data, never a verdict.

    namespace_from(manifest, child, entry_point, called) -> the test code's globals
    Remote(child, ref); call_remote / unpack_reply (the program's exceptions re-raised here)
"""
from __future__ import annotations

import ast
import builtins
import importlib
import sys
from collections.abc import Callable

from prmfast.sandbox import codec
from prmfast.sandbox.channel import Child, Stop

# Modules the test code may see when the program imported them: those the judge has already
# loaded, and these (with their public submodules). Importing any other name could run code
# as root here (a package's __main__, a demo), so the test code does not get it.
MIRRORED_MODULES = frozenset({
    "abc", "array", "bisect", "calendar", "cmath", "collections", "copy", "dataclasses",
    "datetime", "decimal", "enum", "fractions", "functools", "hashlib", "heapq", "io",
    "itertools", "json", "math", "numbers", "operator", "os", "queue", "random", "re",
    "statistics", "string", "struct", "sys", "textwrap", "time", "types", "typing",
    "unicodedata"})


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
