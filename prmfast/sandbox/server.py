"""The fork server: a warm, clean interpreter that forks judges and untrusted children.

Started by the dispatcher as `python -I server.py CONFIG_JSON` with its socket on fd 3.
After setting up (mount and network namespaces, preloaded modules) it hands control to the
C++ loop `_sandbox.serve_jobs`, which forks one long-lived judge per worker slot (PID 1 of
its own PID namespace) and, in it before it runs any Python, the judge's zygote, which
forks each untrusted child on the judge's request and confines it before it returns to
Python. Python runs again only in judges and children. Neither the server nor a zygote
ever reads a payload, so a child holds no job's data. Killing a judge (the dispatcher's
kill, or the server's death through the parent-death signal) makes the kernel kill
everything left in its namespace, its zygote's nested one included.
"""
from __future__ import annotations

import gc
import json
import os
import sys
import types

# Warm in the server so programs importing them pay nothing (shared by every fork). Kept
# short on purpose: every preloaded page makes each fork (page tables) and each copy-on-write
# fault after it more expensive; rarer, heavier modules (decimal, random...) load on demand.
PRELOAD = ("typing", "math", "re", "collections", "itertools", "functools", "heapq", "bisect",
           "string", "operator", "copy")

CONFIG: dict = {}  # the server's configuration (from the dispatcher), for the judges
# What a program may read (and run) besides its job folder, under Landlock: the system's files
# and the interpreter with its libraries (readable_paths), not the caller's files, its
# datasets or other users' folders.
SYSTEM_READABLE = ("/usr", "/lib", "/lib32", "/lib64", "/bin", "/sbin", "/etc", "/proc", "/sys",
                   "/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")


def _import_sandbox_modules(package_root: str):
    """Import the harness without running prmfast/__init__.py (which may pull in heavy
    libraries that would make every fork slower)."""
    for name, path in (("prmfast", "prmfast"), ("prmfast.sandbox", "prmfast/sandbox")):
        pkg = types.ModuleType(name)
        pkg.__path__ = [os.path.join(package_root, path)]
        sys.modules[name] = pkg
    from prmfast import _sandbox
    from prmfast.sandbox import child, judge  # noqa: F401 - warm for every fork
    return _sandbox, child


def readable_paths(package_root: str) -> list[str]:
    """SYSTEM_READABLE, the interpreter's prefixes and import path, and the sandbox's own
    package (what exists of them)."""
    paths = {*SYSTEM_READABLE, sys.prefix, sys.base_prefix, sys.exec_prefix, *sys.path,
             os.path.dirname(os.path.realpath(sys.executable)),
             os.path.join(package_root, "prmfast")}
    return sorted(p for p in paths if p and os.path.exists(p))


def judge_entry(slot: int, server_sock: int, zygote_sock: int) -> None:
    """Body of a slot's judge (called by the C++ loop in the forked judge); never returns."""
    try:
        from prmfast.sandbox import judge
        judge.serve(sock=server_sock, zygote=zygote_sock, slot=slot, server_cfg=CONFIG)
        os._exit(0)
    except BaseException as exc:
        os.write(2, f"sandbox judge failed: {exc!r}\n".encode())
        os._exit(1)


def main() -> None:
    cfg = json.loads(sys.argv[1])
    CONFIG.update(cfg)
    sys.set_int_max_str_digits(0)  # trusted code here and in judges: no int<->str size limit
    # SIGINT keeps Python's default handler, which the children inherit as `python` would
    # give it them; the C++ loop never runs Python, so a SIGINT here only interrupts poll.
    _sandbox, child = _import_sandbox_modules(cfg["package_root"])
    os.makedirs(cfg["base"], mode=0o711, exist_ok=True)
    if "userns" in cfg["layers"]:
        # Root of a user namespace of our own (the caller's ids inside): the privileges the
        # mount, network, PID and IPC namespaces need, over what this namespace owns only.
        _sandbox.enter_user_namespace(os.getuid(), os.getgid())
        if "pidns" in cfg["layers"]:
            # PID 1 of a PID namespace this user namespace owns: the C++ loop may then go
            # back to it (setns) before it makes each judge's namespace.
            _sandbox.become_pid1()
    if os.geteuid() == 0:
        from prmfast.sandbox import mounts
        mounts.private_namespace()
        if "setuid" in cfg["layers"]:
            mounts.expose(sys.path + [sys.prefix, sys.base_prefix, sys.executable])
        mounts.job_tmpfs(cfg["base"], cfg["disk_mb"])
    if "netns" in cfg["layers"]:
        # One empty network namespace for all jobs: only a loopback that is down.
        _sandbox.unshare(_sandbox.CLONE_NEWNET)
    for name in PRELOAD:
        __import__(name)
    child.make_stdio()
    child.warm_up()
    # Forked children would otherwise copy most of the heap on their first collection
    # (the collector writes to every object it visits); freezing keeps pages shared.
    gc.freeze()
    # Free heap pages back to the kernel: every fork copies fewer page-table entries, and a
    # child allocating there gets fresh zero pages instead of copying the server's.
    _sandbox.malloc_trim()
    layers = set(cfg["layers"])
    _sandbox.serve_jobs(3, userns="userns" in layers, pidns="pidns" in layers, ipcns="ipcns" in layers,
                        setuid="setuid" in layers,
                        landlock="landlock" in layers, rlimits="rlimits" in layers,
                        seccomp="seccomp" in layers,
                        uid_base=cfg["uid_base"], base=cfg["base"],
                        readable=readable_paths(cfg["package_root"]) if "landlock" in layers else [],
                        cgroup=cfg["cgroup"],
                        judge_entry=judge_entry,
                        child_entry=child.start)  # never returns; forks call the entries


if __name__ == "__main__":
    main()
