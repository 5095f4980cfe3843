"""The fork server: a warm interpreter that forks one judge per job.

Started by the dispatcher as `python -I server.py CONFIG_JSON` with its socket on fd 3.
After setting up (mount and network namespaces, preloaded modules) it hands control to the
C++ loop `_sandbox.serve_jobs`, which forks each job's judge as PID 1 of a fresh PID
namespace; Python runs again only in the judge. Killing the judge (the dispatcher's kill,
or the server's death through the parent-death signal) makes the kernel kill everything
left in its namespace.
"""
from __future__ import annotations

import gc
import json
import os
import signal
import sys
import types

# Warm in the server so programs importing them pay nothing (shared by every fork). Kept
# short on purpose: every preloaded page makes each fork (page tables) and each copy-on-write
# fault after it more expensive; rarer, heavier modules (decimal, random...) load on demand.
PRELOAD = ("typing", "math", "re", "collections", "itertools", "functools", "heapq", "bisect",
           "string", "operator", "copy")


def _import_sandbox_modules(package_root: str):
    """Import the harness without running prmfast/__init__.py (which may pull in heavy
    libraries that would make every fork slower)."""
    for name, path in (("prmfast", "prmfast"), ("prmfast.sandbox", "prmfast/sandbox")):
        pkg = types.ModuleType(name)
        pkg.__path__ = [os.path.join(package_root, path)]
        sys.modules[name] = pkg
    from prmfast import _sandbox
    from prmfast.sandbox import judge
    return _sandbox, judge


def run_judge(cfg: dict, judge, job: int, slot: int, payload_fd: int, result_fd: int) -> None:
    """Body of a job's judge process (root, PID 1 of the job's namespace); never returns."""
    try:
        workdir = os.path.join(cfg["base"], str(job))
        os.mkdir(workdir, 0o700)
        if "setuid" in cfg["layers"]:
            os.chown(workdir, cfg["uid_base"] + slot, cfg["uid_base"] + slot)
        judge.main(payload_fd, result_fd, cfg, workdir, slot)
        os._exit(0)
    except BaseException as exc:
        os.write(2, f"sandbox judge failed: {exc!r}\n".encode())
        os._exit(1)


def main() -> None:
    cfg = json.loads(sys.argv[1])
    sys.set_int_max_str_digits(0)  # trusted code here and in judges: no int<->str size limit
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _sandbox, judge = _import_sandbox_modules(cfg["package_root"])
    if "setuid" in cfg["layers"]:
        from prmfast.sandbox import mounts
        mounts.expose(sys.path + [sys.prefix, sys.base_prefix, sys.executable])
    if "netns" in cfg["layers"]:
        # One empty network namespace for all jobs: only a loopback that is down.
        _sandbox.unshare(_sandbox.CLONE_NEWNET)
    os.makedirs(cfg["base"], mode=0o711, exist_ok=True)
    for name in PRELOAD:
        __import__(name)
    # Forked children would otherwise copy most of the heap on their first collection
    # (the collector writes to every object it visits); freezing keeps pages shared.
    gc.freeze()
    job, slot, payload_fd, result_fd = _sandbox.serve_jobs(3, "pidns" in cfg["layers"], cfg["base"])
    run_judge(cfg, judge, job, slot, payload_fd, result_fd)


if __name__ == "__main__":
    main()
