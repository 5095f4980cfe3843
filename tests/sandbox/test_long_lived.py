"""The long-lived judges and their zygotes: no untrusted child can find test code or expected
outputs (of earlier jobs in the same slot, or its own job's hidden ones) anywhere it can
read, judges are replaced without leaving anything behind, and a dead judge takes its job
with it without harming the next one."""
import os
import secrets
import time

import pytest

from prmfast.sandbox import AssertTests, CallTests, Job, Sandbox, StdioTests
from tests.sandbox.conftest import job_folders
from tests.sandbox.conftest import sandbox_processes as processes_of

UID_BASE = 1_400_000

# Scans everything the program can read for canaries: its own memory (through ctypes: after
# setuid a process is not dumpable, so even its own /proc/self/mem is closed to it), every
# /proc entry it may open (memory, environment, command line, fds of other processes) and
# its own fds. The pattern is assembled so that neither this source nor the compiled
# pattern matches itself.
SCANNER = r'''
import ctypes, os, re, stat, sys
pattern = re.compile(rb"LEAK" + rb"CANARY-[0-9a-f]{32}-END")
found = set()

def scan(data):
    found.update(m.group().decode() for m in pattern.finditer(data))

def scan_own_memory():
    for line in open("/proc/self/maps").read().splitlines():
        parts = line.split()
        lo, hi = (int(x, 16) for x in parts[0].split("-"))
        name = parts[5] if len(parts) > 5 else ""
        # anonymous memory, heap and stack: where any data would be (file mappings may
        # fault past their end, [vvar] on read)
        if "r" in parts[1] and name in ("", "[heap]", "[stack]") and hi - lo < 1 << 28:
            scan(ctypes.string_at(lo, hi - lo))

def scan_memory(pid):
    try:
        maps = open(f"/proc/{pid}/maps").read().splitlines()
        mem = open(f"/proc/{pid}/mem", "rb", 0)
    except OSError:
        return
    with mem:
        for line in maps:
            span, perms = line.split()[:2]
            lo, hi = (int(x, 16) for x in span.split("-"))
            if "r" in perms and hi - lo < 1 << 28:
                try:
                    mem.seek(lo)
                    scan(mem.read(hi - lo))
                except (OSError, ValueError, OverflowError):
                    pass

scan_own_memory()
for pid in [p for p in os.listdir("/proc") if p.isdigit()] + ["self"]:
    scan_memory(pid)
    for name in ("environ", "cmdline"):
        try:
            scan(open(f"/proc/{pid}/{name}", "rb").read())
        except OSError:
            pass
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        continue
    for fd in fds:
        path = f"/proc/{pid}/fd/{fd}"
        try:
            if stat.S_ISREG(os.stat(path).st_mode):  # memfds and files, not pipes
                scan(open(path, "rb").read(1 << 24))
        except OSError:
            pass
sys.stderr.write("FOUND[" + " ".join(sorted(found)) + "]\n")
'''


def canary() -> str:
    return "LEAK" + "CANARY-" + secrets.token_hex(16) + "-END"


def found(result) -> list[str]:
    line = result.stderr.split("FOUND[", 1)[1].split("]", 1)[0]
    return line.split()


def sandbox_processes():
    return processes_of(UID_BASE)


def forked_by(server_pid: int) -> dict[int, str]:
    """pid -> name of every process under the fork server."""
    table = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            raw = open(f"/proc/{pid}/stat").read()
        except OSError:
            continue
        table[int(pid)] = (int(raw.rpartition(")")[2].split()[1]), raw[raw.index("(") + 1:raw.rindex(")")])
    out = {}
    for pid, (_, name) in table.items():
        up = pid
        while up in table and up != server_pid:
            up = table[up][0]
        if up == server_pid and pid != server_pid:
            out[pid] = name
    return out


def test_child_finds_no_secret_of_earlier_jobs_or_its_own(contained):
    earlier = [canary() for _ in range(3)]
    own = canary()
    with Sandbox(workers=1, timeout_s=20.0, memory_mb=1024, uid_base=UID_BASE) as sb:
        # One slot: the same judge reads every payload below, in this order.
        results = sb.run([
            Job("def f():\n    return 1\n", AssertTests(f"SECRET = {earlier[0]!r}\nassert f() == 1")),
            Job("def f():\n    return 'no'\n", CallTests("f", [([], earlier[1])])),
            Job("print('no')", StdioTests([("", earlier[2])])),
            Job(SCANNER + "def f():\n    return 'no'\n", CallTests("f", [([], own)])),
            # Positive control: a canary the program does hold is found by the same scan.
            Job("held = 'LEAK' + 'CANARY-' + 'ab' * 16 + '-END'\n" + SCANNER,
                StdioTests([("", "")])),
        ])
    assert results[0].passed and not results[1].passed and not results[2].passed
    scanner, control = results[3], results[4]
    assert scanner.status == "failed", scanner
    assert found(scanner) == [], found(scanner)
    assert found(control) == ["LEAKCANARY-" + "ab" * 16 + "-END"], control.stderr


def settled(server_pid: int) -> dict[int, str]:
    """The processes under the server once a retired judge (if any) has finished exiting."""
    for _ in range(200):
        procs = forked_by(server_pid)
        if sorted(procs.values()) in ([], ["sandbox-judge", "sandbox-zygote"]):
            return procs
        time.sleep(0.01)
    return procs


def test_judges_are_replaced_without_leftovers(contained):
    leave_orphan = ("import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
                    "        time.sleep(30)\n    os._exit(0)\nprint('done')\n")
    jobs = ([Job("def f(x):\n    return x\n", AssertTests("assert f(1) == 1")),
             Job(leave_orphan, StdioTests([("", "done")])),
             Job("def f(x):\n    return x * 2\n", CallTests("f", [([2], 4)]))] * 4)[:10]
    with Sandbox(workers=1, timeout_s=5.0, uid_base=UID_BASE, judge_jobs=3) as sb:
        judges = set()
        for _ in range(3):
            assert all(r.passed for r in sb.run(jobs))
            assert not sandbox_processes()  # the orphans are gone before a job is reported
            assert job_folders(sb) == []
            procs = settled(sb.server_pid)
            assert sorted(procs.values()) in ([], ["sandbox-judge", "sandbox-zygote"]), procs
            judges |= {pid for pid, name in procs.items() if name == "sandbox-judge"}
        assert len(judges) >= 2  # judges retire after 3 jobs; a fresh one takes the slot
        server = sb.server_pid
    assert not forked_by(server) and not sandbox_processes()


def test_judge_killed_at_backstop_deadline_then_slot_recovers(contained):
    """Test code that never returns hangs the judge itself: the dispatcher's backstop kills
    the judge with everything of its job, and the slot's next job gets a fresh judge."""
    hang = Job("import time\ndef f():\n    return 1\n",
               AssertTests("while True:\n    pass\n"), timeout_s=0.4)
    sleeper = Job("import time, os\nif os.fork() == 0:\n    time.sleep(30)\ndef f():\n    return 1\n",
                  AssertTests("while True:\n    pass\n"), timeout_s=0.4)
    with Sandbox(workers=1, timeout_s=5.0, uid_base=UID_BASE) as sb:
        start = time.monotonic()
        results = sb.run([hang, sleeper, Job("def f():\n    return 1\n", AssertTests("assert f() == 1"))])
        assert [r.status for r in results] == ["timeout", "timeout", "passed"], results
        assert time.monotonic() - start < 15
        assert not sandbox_processes()
        assert job_folders(sb) == []


@pytest.mark.parametrize("program, status", [
    ("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n", "crashed"),
    ("import os, signal\ntry:\n    os.kill(os.getppid(), signal.SIGKILL)\nexcept PermissionError:\n    print('alive')\n", "passed"),
])
def test_kills_from_the_program(sandbox, program, status):
    """A SIGKILL the program sends itself is a crash, not a CPU timeout; its parent (the
    zygote, PID 1 of its namespace, another uid) cannot be killed."""
    r = sandbox.run([Job(program, StdioTests([("", "alive")]))])[0]
    assert r.status == status, r


def test_program_sees_only_its_own_fds(sandbox):
    prog = "import os\nprint(sorted(int(fd) for fd in os.listdir('/proc/self/fd')))\n"
    # fds 0-3 (stdio, the judge's channel) and the one listdir opened
    assert sandbox.run([Job(prog, StdioTests([("", "[0, 1, 2, 3, 4]")]))])[0].passed


def test_job_folders_share_one_quota():
    """As root the job folders are on a tmpfs of disk_mb: writing past it fails (ENOSPC),
    and a finished job's files no longer count."""
    if os.geteuid() != 0:
        pytest.skip("the tmpfs needs root")
    fill = ("import os\ntry:\n    with open('f', 'wb') as fh:\n        for _ in range(12):\n"
            "            fh.write(b'x' * (1 << 20))\n            fh.flush()\n    print('wrote')\n"
            "except OSError as exc:\n    print('full' if exc.errno == 28 else exc)\n")
    small = "open('f', 'wb').write(b'x' * (6 << 20))\nprint('ok')\n"
    with Sandbox(workers=1, timeout_s=5.0, disk_mb=8) as sb:
        assert [r.passed for r in sb.run([Job(fill, StdioTests([("", "full")])),
                                          Job(small, StdioTests([("", "ok")]))])] == [True, True]
        assert job_folders(sb) == []
