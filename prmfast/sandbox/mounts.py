"""A private mount namespace for the fork server (root only): the job folders live on a
tmpfs of its own, and an unprivileged uid can run Python.

The interpreter may live under a directory other users cannot traverse (here pyenv under
/root, mode 0700). In the server's own mount namespace each such directory is covered by
an empty read-only tmpfs into which only the needed entries are bind-mounted read-only:
the untrusted uid reaches the interpreter and nothing else of that directory.
"""
from __future__ import annotations

import os
import stat

from prmfast import _sandbox


def _blocked_ancestor(path: str) -> str | None:
    """The first ancestor of `path` that others may not traverse, if any."""
    parts = os.path.realpath(path).split(os.sep)[1:]
    current = "/"
    for part in parts[:-1] if os.path.isfile(path) else parts:
        current = os.path.join(current, part)
        try:
            if not os.stat(current).st_mode & stat.S_IXOTH:
                return current
        except OSError:
            return None
    return None


def private_namespace() -> None:
    """Enter a mount namespace of our own: mounts made here are seen by this process and
    its children only, and vanish with the last of them."""
    _sandbox.unshare(_sandbox.CLONE_NEWNS)
    _sandbox.mount("", "/", "", _sandbox.MS_REC | _sandbox.MS_PRIVATE)


def job_tmpfs(base: str, size_mb: int) -> None:
    """Cover `base` with a tmpfs of `size_mb`: job folders in memory (creating and removing
    one costs microseconds, not the ~0.3 ms of CPU of ext4 here), and one quota on the disk
    use of every job in flight."""
    _sandbox.mount("tmpfs", base, "tmpfs", _sandbox.MS_NOSUID | _sandbox.MS_NODEV,
                   f"mode=0711,size={int(size_mb)}m")


def expose(paths) -> list[str]:
    """Make `paths` reachable for any uid (in the private namespace); returns the
    directories that were covered."""
    needed: dict[str, set[str]] = {}
    for path in paths:
        if not os.path.exists(path):
            continue
        blocked = _blocked_ancestor(path)
        if blocked:
            rest = os.path.relpath(os.path.realpath(path), blocked)
            needed.setdefault(blocked, set()).add(rest.split(os.sep)[0])
    for blocked, entries in needed.items():
        fds = {e: os.open(os.path.join(blocked, e), os.O_PATH) for e in entries}
        _sandbox.mount("tmpfs", blocked, "tmpfs", _sandbox.MS_NOSUID | _sandbox.MS_NODEV,
                       "mode=0755,size=64k")
        for entry, fd in fds.items():
            target = os.path.join(blocked, entry)
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                os.mkdir(target)
            else:
                open(target, "w").close()
            _sandbox.mount(f"/proc/self/fd/{fd}", target, "", _sandbox.MS_BIND | _sandbox.MS_REC)
            _sandbox.mount("", target, "", _sandbox.MS_REMOUNT | _sandbox.MS_BIND | _sandbox.MS_RDONLY)
            os.close(fd)
        _sandbox.mount("", blocked, "", _sandbox.MS_REMOUNT | _sandbox.MS_RDONLY)
    return sorted(needed)
