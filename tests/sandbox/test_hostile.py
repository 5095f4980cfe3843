"""Hostile programs: each gets the right status, nothing it starts survives, and the
sandbox keeps working. Runs inside pids/memory cgroups where the machine allows."""
import os
import signal
import socket
import threading
import time

import pytest

from prmfast.sandbox import AssertTests, Job, Sandbox, StdioTests, available_layers
from tests.sandbox.conftest import sandbox_processes as processes_of

UID_BASE = 1_300_000
OK = Job("def f():\n    return 1\n", AssertTests("assert f() == 1"))


@pytest.fixture(scope="module")
def sb(contained):
    with Sandbox(workers=2, timeout_s=2.0, memory_mb=256, uid_base=UID_BASE) as s:
        yield s


def sandbox_processes():
    return processes_of(UID_BASE)


def run_hostile(sb, program, tests=None, **kw):
    """Run one hostile job next to a good one; check the aftermath."""
    hostile = Job(program, tests or AssertTests("assert f() == 1"), **kw)
    results = sb.run([hostile, OK])
    assert results[1].passed, results[1]
    assert not sandbox_processes()
    assert sb.run([OK])[0].passed
    return results[0]


CASES = {
    "infinite_loop": ("def f():\n    return 1\nwhile True:\n    pass\n", "timeout"),
    "sleep": ("import time\ntime.sleep(60)\n", "timeout"),
    "ignore_signals": ("import signal\nfor s in (signal.SIGTERM, signal.SIGXCPU, signal.SIGINT, signal.SIGHUP):\n"
                       "    signal.signal(s, signal.SIG_IGN)\nwhile True:\n    pass\n", "timeout"),
    "memory_bomb": ("x = []\nwhile True:\n    x.append(bytearray(50 << 20))\n", "memory"),
    "big_alloc": ("x = bytearray(10 ** 11)\n", "memory"),
    "recursion": ("def g(n):\n    return g(n + 1)\ng(0)\n", "error"),
    "deep_recursion_crash": ("import sys\nsys.setrecursionlimit(10 ** 8)\ndef g(n):\n    return g(n + 1)\ng(0)\n",
                             ("crashed", "memory", "timeout")),
    "segfault": ("import ctypes\nctypes.string_at(0)\n", "crashed"),
    "abort": ("import os\nos.abort()\n", "crashed"),
    "huge_file": ("with open('big', 'wb') as fh:\n    for _ in range(1000):\n        fh.write(b'x' * (1 << 20))\n",
                  "error"),
    "fd_exhaustion": ("fhs = [open('/dev/null') for _ in range(100000)]\n", "error"),
    "stdin_no_input": ("x = input()\n", "error"),
    "output_flood": ("while True:\n    print('x' * 10000)\n", "output_limit"),
    "stderr_flood": ("import sys\nwhile True:\n    sys.stderr.write('y' * 10000)\n", "output_limit"),
    "fork_bomb": ("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
                  ("timeout", "error", "memory", "crashed")),
    "thread_bomb": ("import threading, time\nwhile True:\n    threading.Thread(target=time.sleep, args=(100,)).start()\n",
                    ("error", "memory")),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_program(sb, name):
    program, want = CASES[name]
    r = run_hostile(sb, program)
    assert r.status in ((want,) if isinstance(want, str) else want), (name, r)
    assert not r.passed and r.wall_s < 15


def test_output_flood_stops_quickly(sb):
    r = run_hostile(sb, "while True:\n    print('x' * 100000)\n", timeout_s=30)
    assert r.status == "output_limit" and r.wall_s < 5


def test_stdio_flood_and_stdin_eof(sb):
    assert run_hostile(sb, "while True: print('z' * 1000)", StdioTests([("", "")])).status == "output_limit"
    assert run_hostile(sb, "import sys\nprint(len(sys.stdin.read()))", StdioTests([("", "0")])).passed


def test_writes_outside_workdir_fail(sb):
    marker = f"/tmp/prmfast-escape-{os.getpid()}"
    # /dev/shm may be written where the slot has its own (pidns): it must not be the machine's
    prog = (f"import os\nfor path in [{marker!r}, '/work/escape', os.path.expanduser('~/../escape')]:\n"
            "    try:\n        open(path, 'w').write('x')\n        print('wrote', path)\n    except OSError:\n        pass\n"
            "try:\n    open('/dev/shm/escape', 'w').write('x')\nexcept OSError:\n    pass\n"
            "open('inside.txt', 'w').write('ok')\nprint(open('inside.txt').read())\n")
    r = run_hostile(sb, prog, StdioTests([("", "ok")]))
    assert r.passed, r
    assert not os.path.exists(marker) and not os.path.exists("/dev/shm/escape")


def test_no_network_to_local_listener(sb):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.5)
    port = server.getsockname()[1]
    prog = (f"import socket\ntry:\n    socket.create_connection(('127.0.0.1', {port}), timeout=1)\n    print('connected')\n"
            "except OSError as e:\n    print('blocked')\n")
    r = run_hostile(sb, prog, StdioTests([("", "blocked")]))
    assert r.passed, r
    with pytest.raises(socket.timeout):
        server.accept()
    server.close()


def test_unprivileged_and_scrubbed(sb):
    os.environ["PRMFAST_SECRET_TEST"] = "leak"
    prog = "import os\nprint(os.getuid() != 0, os.getgid() != 0, 'PRMFAST_SECRET_TEST' in os.environ)\n"
    assert run_hostile(sb, prog, StdioTests([("", "True True False")])).passed


def test_orphans_and_double_forks_do_not_survive(sb, tmp_path):
    prog = ("import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
            "        signal = __import__('signal')\n        signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "        time.sleep(30)\n    os._exit(0)\n"
            "import threading\nthreading.Thread(target=time.sleep, args=(30,), daemon=True).start()\n"
            "print('done')\n")
    r = run_hostile(sb, prog, StdioTests([("", "done"), ("", "done")]))
    assert r.passed, r
    assert not sandbox_processes()


@pytest.fixture(scope="module")
def sb_no_pidns(contained):
    """What a caller without root gets for process ownership: no PID namespace (the zygote is
    a child subreaper instead). The setuid layer stays on so RLIMIT_NPROC binds the bombs."""
    layers = tuple(layer for layer in available_layers() if layer != "pidns")
    with Sandbox(workers=2, timeout_s=2.0, memory_mb=256, uid_base=UID_BASE + 64,
                 isolation=layers) as s:
        yield s


@pytest.mark.parametrize("program, expected", [
    ("import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
     "        time.sleep(30)\n    os._exit(0)\nprint('done')\n", "passed"),
    (CASES["fork_bomb"][0], ("timeout", "error", "memory", "crashed"))])
def test_without_a_pid_namespace_nothing_survives(sb_no_pidns, program, expected):
    # the double-forked sleeper holds the job's stdout: the job still ends when the program does
    results = sb_no_pidns.run([Job(program, StdioTests([("", "done")])), OK])
    assert results[0].status in expected and results[1].passed, results
    assert results[0].wall_s < 5.0 if expected == "passed" else True
    assert not processes_of(UID_BASE + 64)
    assert sb_no_pidns.run([OK])[0].passed


def test_cannot_signal_dispatcher_or_others(sb):
    prog = ("import os, signal\nfor pid in (os.getppid(), 1, -1, %d):\n    try:\n        os.kill(pid, signal.SIGKILL)\n"
            "    except OSError:\n        pass\nprint('alive')\n" % os.getpid())
    r = run_hostile(sb, prog, StdioTests([("", "alive")]))
    assert r.status in ("passed", "crashed")  # it may only kill itself


def test_fork_server_restarts_after_kill(sb):
    assert sb.run([OK])[0].passed
    os.kill(sb.server_pid, signal.SIGKILL)
    time.sleep(0.1)
    assert all(r.passed for r in sb.run([OK] * 4))


def test_fork_server_killed_mid_batch(sb):
    slow = Job("import time\ntime.sleep(0.5)\ndef f():\n    return 1\n", AssertTests("assert f() == 1"))
    pid = sb.server_pid
    killer = threading.Timer(0.2, lambda: os.kill(pid, signal.SIGKILL))
    killer.start()
    results = sb.run([slow] * 4)
    killer.join()
    assert all(r.passed for r in results), results
    assert not sandbox_processes()
