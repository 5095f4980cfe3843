"""2,000 small mixed jobs: right verdicts, and no processes, folders or fds left behind."""
import os

import pytest

from prmfast.sandbox import AssertTests, CallTests, Job, Sandbox, StdioTests
from tests.sandbox.conftest import job_folders

pytestmark = pytest.mark.slow

MIX = [
    (Job("def f(x):\n    return x + 1\n", AssertTests("assert f(1) == 2")), "passed"),
    (Job("def f(x):\n    return x\n", AssertTests("assert f(1) == 2")), "failed"),
    (Job("def f(x):\n    return x * 2\n", CallTests("f", [([2], 4), ([3], 6)])), "passed"),
    (Job("print(input()[::-1])", StdioTests([("abc", "cba")])), "passed"),
    (Job("raise RuntimeError", AssertTests("assert True")), "error"),
    (Job("import os\nos._exit(0)", AssertTests("assert True")), "error"),
    (Job("import os\nif os.fork() == 0:\n    import time; time.sleep(30)\nprint(1)", StdioTests([("", "1")])), "passed"),
    (Job("while True: print('x' * 4096)", StdioTests([("", "")])), "output_limit"),
    (Job("import ctypes\nctypes.string_at(0)", AssertTests("assert True")), "crashed"),
    (Job("while True: pass", AssertTests("assert True"), timeout_s=0.2), "timeout"),
]


def test_two_thousand_mixed_jobs(contained):
    fds_before = len(os.listdir("/proc/self/fd"))
    with Sandbox(workers=2, timeout_s=5.0, memory_mb=256) as sb:
        base = sb._base
        jobs = [MIX[i % len(MIX)] for i in range(2000)]
        results = sb.run([job for job, _ in jobs])
        wrong = [(i, want, r.status) for i, ((_, want), r) in enumerate(zip(jobs, results)) if r.status != want]
        assert not wrong, wrong[:10]
        assert job_folders(sb) == []
        server = sb.server_pid
    assert not os.path.exists(base)
    assert not os.path.exists(f"/proc/{server}")
    assert len(os.listdir("/proc/self/fd")) == fds_before
    assert not processes_of(base)


def processes_of(base: str) -> list[str]:
    """Processes forked from this sandbox's server (their command line names its folder):
    other sandboxes on a shared machine use the same uids, so the uid alone says nothing."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if base.encode() in f.read():
                    found.append(pid)
        except OSError:
            pass
    return found
