"""Holes found by a red-team pass (2026-11-26), each closed: what one job leaves behind for the
next, what a program can make the root judge do, and how it could forge a pass."""
import os
import tempfile
import threading
from pathlib import Path
import time

import pytest

from prmfast.sandbox import AssertTests, CallTests, Job, Sandbox, StdioTests, available_layers
from prmfast.sandbox import codec

SHM = ("import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
       "libc.shmat.restype = ctypes.c_void_p\n")


@pytest.mark.skipif("ipcns" not in available_layers(), reason="needs root (IPC namespaces)")
def test_system_v_ipc_objects_neither_cross_jobs_nor_outlive_them():
    writer = SHM + ("sid = libc.shmget(0x5EC7, 1 << 20, 0o1666)\naddr = libc.shmat(sid, None, 0)\n"
                    "ctypes.memset(addr, 65, 1 << 20)\nqid = libc.msgget(0x5EC7, 0o1666)\n"
                    "msg = ctypes.create_string_buffer(b'\\x01\\0\\0\\0\\0\\0\\0\\0secret', 14)\n"
                    "sent = libc.msgsnd(qid, msg, 6, 0)\nsem = libc.semget(0x5EC7, 1, 0o1666)\n"
                    "print(sid >= 0, qid >= 0, sent == 0, sem >= 0)\n")
    reader = SHM + ("print(libc.shmget(0x5EC7, 0, 0), libc.msgget(0x5EC7, 0), "
                    "libc.semget(0x5EC7, 0, 0))\n")
    with Sandbox(workers=1, timeout_s=5.0, memory_mb=256) as sb:   # one slot: same zygote
        wrote, read = sb.run([Job(writer, StdioTests([("", "True True True True")])),
                              Job(reader, StdioTests([("", "-1 -1 -1")]))])
    assert wrote.passed and read.passed, (wrote, read)
    with open("/proc/sysvipc/shm") as f:
        assert not any(line.split()[0] == str(0x5EC7) for line in f.readlines()[1:])


@pytest.mark.parametrize("module", ["unittest.__main__", "venv.__main__", "test.autotest", "this"])
def test_a_program_cannot_make_the_judge_import_a_module_that_runs_code(sandbox, capfd, module):
    prog = f"import types\nx = types.ModuleType({module!r})\ndef f():\n    return 1\n"
    r = sandbox.run([Job(prog, AssertTests("assert f() == 1"))])[0]
    assert r.status == "passed", r
    assert "Beautiful is better" not in capfd.readouterr().out


def test_modules_the_program_imported_are_still_there_for_the_tests(sandbox):
    prog = "import math\nimport collections.abc\ndef f(x):\n    return math.sqrt(x)\n"
    tests = "assert f(16) == math.sqrt(16) == 4.0\nassert collections.abc.Sized\n"
    assert sandbox.run([Job(prog, AssertTests(tests))])[0].passed


def test_globals_named_like_builtins_cannot_forge_a_pass(sandbox):
    wrong = "def truncate(x):\n    return 999.0\n"
    humaneval = "def check(candidate):\n    assert abs(candidate(3.5) - 0.5) < 1e-6\n"
    mbpp = "assert set(common([1, 2], [2, 3])) == set([2])\nassert len(common([], [])) == 0\n"
    jobs = [Job(wrong + "def abs(x):\n    return 0\n", AssertTests(humaneval, "truncate")),
            Job("def common(a, b):\n    return [7]\ndef set(x):\n    return 1\n"
                "def len(x):\n    return 0\n", AssertTests(mbpp)),
            # the function under test may itself be named like a builtin (MBPP task 126)
            Job("def sum(a, b):\n    return sum_of(a, b)\ndef sum_of(a, b):\n    return 6\n",
                AssertTests("assert sum(10, 15) == 6\n")),
            Job("def truncate(x):\n    return x % 1.0\ndef abs(x):\n    return 0\n",
                AssertTests(humaneval, "truncate"))]
    assert [r.status for r in sandbox.run(jobs)] == ["failed", "failed", "passed", "passed"]


def test_a_script_talks_to_nobody_on_fd_3(sandbox):
    prog = ("import os, struct\nframe = struct.pack('<I', 1 << 20) + b'1' * (1 << 20)\n"
            "for _ in range(64):\n    os.write(3, frame)\nprint(os.readlink('/proc/self/fd/3'))\n")
    r = sandbox.run([Job(prog, StdioTests([("", "/dev/null")]))])[0]
    assert r.passed, r


def test_an_oversized_reply_ends_the_job_and_a_big_global_crosses_as_a_reference(sandbox):
    amplify = ("import os, struct\nbody = b'{\"ok\":[\"list\"' + b',[\"list\"]' * (1 << 20) + b']}'\n"
               "def f():\n    os.write(3, struct.pack('<I', len(body)) + body)\n")
    big = "table = list(range(400_000))\ndef f(i):\n    return table[i]\n"
    r_amp, r_big = sandbox.run([Job(amplify, AssertTests("assert f() == 1")),
                                Job(big, AssertTests("assert f(7) == 7\nassert len(table) == 400_000"))])
    assert r_amp.status == "error" and "oversized reply" in r_amp.stderr, r_amp
    assert r_big.passed, r_big


@pytest.mark.parametrize("tree", [["complex", ["list"], 1], ["complex", "1", "2"],
                                  ["set", ["list"]], ["dict", [["list"], 1]],
                                  ["complex", ["bigint", "f" * 400], 0]])
def test_malformed_values_from_a_program_are_protocol_errors(tree):
    with pytest.raises(codec.ProtocolError):
        codec.decode(tree)


def test_missing_entry_point_is_an_error_and_a_script_says_why_it_failed(sandbox):
    missing, exits = sandbox.run([
        Job("def other(x):\n    return x\n",
            AssertTests("def check(candidate):\n    assert candidate(1) == 1\n", "f")),
        Job("raise SystemExit(3)\n", StdioTests([("", "")]))])
    assert missing.status == "error" and "'f'" in missing.stderr, missing
    assert exits.status == "error" and "code 3" in exits.stderr, exits


@pytest.mark.skipif("pidns" not in available_layers(), reason="needs root (PID namespaces)")
def test_proc_shows_the_jobs_own_processes_only(sandbox):
    prog = ("import os\npids = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())\n"
            "print(pids == [1, os.getpid()], os.path.exists('/proc/self/status'))\n")
    r = sandbox.run([Job(prog, StdioTests([("", "True True")]))])[0]
    assert r.passed, r


def test_uid_ranges_skip_lock_files_this_process_cannot_open(tmp_path, monkeypatch):
    from prmfast.sandbox.sandbox import UID_RANGE, claim_uid_range

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    first = 1_900_000
    # another user's lock file, or a planted link: that range counts as held
    (tmp_path / f"prmfast-sandbox-uids-{first}.lock").symlink_to(tmp_path / "elsewhere")
    base, fd = claim_uid_range(first)
    try:
        assert base == first + UID_RANGE and not (tmp_path / "elsewhere").exists()
    finally:
        os.close(fd)
    # without the setuid layer the children run as the caller: no range is claimed
    with Sandbox(workers=1, isolation=("rlimits",)) as sb:
        assert sb._uid_lock is None
        assert sb.run([Job("def f():\n    return 1\n", AssertTests("assert f() == 1"))])[0].passed


@pytest.mark.skipif("pidns" not in available_layers(), reason="needs PID namespaces")
def test_dev_shm_is_the_slots_own_and_emptied_after_each_job(tmp_path):
    host_file = Path("/dev/shm") / f"prmfast-host-{os.getpid()}"
    host_file.write_text("the machine's")
    leave = ("from multiprocessing import shared_memory\n"
             "s = shared_memory.SharedMemory(name='left_behind', create=True, size=4096)\n"
             "open('/dev/shm/plain_file', 'w').write('x')\n")
    look = "import os\nprint(sorted(os.listdir('/dev/shm')))\n"
    try:
        with Sandbox(workers=1) as sb:     # one slot: the second job runs where the first did
            first, second = sb.run([Job(leave, StdioTests([("", "")])),
                                    Job(look, StdioTests([("", "[]")]))])
        assert first.passed and second.passed, (first, second)
        assert host_file.read_text() == "the machine's"           # not the slot's
        assert not (Path("/dev/shm") / "left_behind").exists()
    finally:
        host_file.unlink()


def test_the_program_is_the_main_module_not_the_server():
    prog = "import sys\nmain = sys.modules['__main__']\nprint(sorted(vars(main)) == sorted(globals()), hasattr(main, 'CONFIG'))\n"
    with Sandbox(workers=1) as sb:
        r = sb.run([Job(prog, StdioTests([("", "True False")]))])[0]
    assert r.passed, r


@pytest.mark.skipif("setuid" not in available_layers(), reason="needs root (setuid)")
def test_two_sandboxes_never_share_uids_or_their_process_limit():
    hog = ("import threading, time\nthreading.stack_size(65536)\n"
           "ts = [threading.Thread(target=time.sleep, args=(3,)) for _ in range(60)]\n"
           "for t in ts:\n    t.start()\ndef f():\n    time.sleep(2)\n    return 1\n")
    victim = ("import os, threading, time\ndef f():\n    ts = [threading.Thread(target=time.sleep, "
              "args=(0.2,)) for _ in range(4)]\n    for t in ts:\n        t.start()\n"
              "    for t in ts:\n        t.join()\n    return os.getuid()\n")
    with Sandbox(workers=1, processes=64) as a, Sandbox(workers=1, processes=64) as b:
        assert a.uid_base != b.uid_base
        hogging = threading.Thread(target=a.run, args=([Job(hog, AssertTests("assert f() == 1"))],))
        hogging.start()
        time.sleep(0.5)   # the hog's 61 threads are running under a's uid
        r = b.run([Job(victim, CallTests("f", [([], b.uid_base)]))])[0]
        hogging.join()
    assert r.passed, r


@pytest.mark.skipif("landlock" not in available_layers(), reason="needs Landlock")
def test_a_program_reads_only_the_system_and_the_interpreter(sandbox):
    # like a dataset on disk that any uid may read: only Landlock stops the program
    with tempfile.TemporaryDirectory() as folder:
        os.chmod(folder, 0o755)
        secret = os.path.join(folder, "expected_outputs.txt")
        with open(secret, "w") as f:
            f.write("42\n")
        os.chmod(secret, 0o644)
        r = sandbox.run([Job(_reader_of(secret), StdioTests([("", "denied\nTrue 2 ok")]))])[0]
    assert r.passed, r


def _reader_of(secret: str) -> str:
    return (f"import os, json, zoneinfo, subprocess\ntry:\n    open({str(secret)!r}).read()\n"
            "    print('leaked')\nexcept PermissionError:\n    print('denied')\n"
            "print(len(open('/etc/passwd').read()) > 0, len(os.urandom(2)),\n"
            "      subprocess.run(['/bin/echo', 'ok'], capture_output=True, text=True).stdout.strip())\n")


@pytest.mark.skipif("cgroup" not in available_layers(), reason="needs root and a memory cgroup")
def test_the_processes_of_a_job_share_one_memory_limit():
    # six children of 150 MiB each: every one fits memory_mb alone, together they do not
    prog = ("import os, time\nkids = []\nfor _ in range(6):\n    pid = os.fork()\n"
            "    if pid == 0:\n        block = bytearray(150 << 20)\n"
            "        for i in range(0, len(block), 4096):\n            block[i] = 1\n"
            "        time.sleep(1.5)\n        os._exit(0)\n    kids.append(pid)\n"
            "killed = sum(os.WIFSIGNALED(os.waitpid(p, 0)[1]) for p in kids)\n"
            "print('killed' if killed else 'all ran')\n")
    with Sandbox(workers=1, memory_mb=400, timeout_s=20) as sb:
        bomb, after = sb.run([Job(prog, StdioTests([("", "killed")])),
                              Job("print(sum(range(10)))", StdioTests([("", "45")]))])
        folder = sb._cgroup
    assert bomb.passed and after.passed, (bomb, after)
    assert not os.path.exists(folder)   # the sandbox's cgroups are gone with it


@pytest.mark.skipif("cgroup" not in available_layers(), reason="needs root and a memory cgroup")
def test_a_program_the_memory_cgroup_kills_ends_as_memory(sandbox):
    # a child holds 120 MiB, then the program takes 330 MiB: past 400 MiB together, and the
    # OOM killer takes the largest process, the program
    grow = ("import os, time\npid = os.fork()\nif pid == 0:\n    b = bytearray(120 << 20)\n"
            "    for i in range(0, len(b), 4096):\n        b[i] = 1\n    time.sleep(5)\n"
            "    os._exit(0)\ntime.sleep(0.5)\nb = bytearray(330 << 20)\n"
            "for i in range(0, len(b), 4096):\n    b[i] = 1\n")
    jobs = [Job(grow + "print('survived')\n", StdioTests([("", "survived")]), memory_mb=400),
            Job(grow + "def f():\n    return 1\n", AssertTests("assert f() == 1"), memory_mb=400)]
    assert [r.status for r in sandbox.run(jobs)] == ["memory", "memory"]
