"""The sandbox as a caller without root gets it. The test (root) starts a process that drops
to an unprivileged uid, in a private mount namespace where the interpreter and this checkout
are reachable (as mounts.expose makes them for the setuid layer), and that process runs
hostile jobs with the default layers: userns and the namespace layers through it where the
kernel lets unprivileged users make namespaces, else landlock and rlimits only."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UID = 1_250_000  # no passwd entry needed; nothing else runs as it

DROP_AND_RUN = """
import os, sys
from prmfast.sandbox import mounts
uid, script = int(sys.argv[1]), sys.argv[2]
mounts.private_namespace()
mounts.expose(sys.path + [sys.prefix, sys.base_prefix, sys.executable, {repo!r}])
os.setgroups([])
os.setresgid(uid, uid, uid)
os.setresuid(uid, uid, uid)
os.execv(sys.executable, [sys.executable, script])
"""

SCRIPT = r'''
import json, os, subprocess, time
from prmfast.sandbox import AssertTests, Job, Sandbox, StdioTests, available_layers

THREADS = ("import threading\nts = [threading.Thread(target=print) for _ in range(8)]\n"
           "for t in ts:\n    t.start()\nfor t in ts:\n    t.join()\ndef f():\n    return 1\n")
ORPHAN = ("import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
          "        time.sleep(60)\n    os._exit(0)\nprint('done')\n")
BOMB = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
PROBE = ("import errno, os, socket\ndef caps():\n"
         "    return [l.split()[1] for l in open('/proc/self/status') if l.startswith('CapEff')][0]\n"
         "def pids():\n    seen = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())\n"
         "    return seen == [1, os.getpid()]\n"
         "def udp():\n    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n    try:\n"
         "        s.sendto(b'x', ('192.0.2.1', 53))\n        return 'sent'\n"
         "    except OSError as e:\n        return errno.errorcode[e.errno]\n")
PROBE_TESTS = AssertTests("assert caps() == '0000000000000000'\nassert pids() is True\n"
                          "assert udp() == 'ENETUNREACH'\n")
OK = Job("def f():\n    return 1\n", AssertTests("assert f() == 1"))

out = {"layers": list(available_layers())}
# the caller's own processes: without root they count toward its uid's process limit
sleepers = [subprocess.Popen(["sleep", "60"]) for _ in range(80)]
try:
    with Sandbox(workers=2, timeout_s=2.0, memory_mb=256) as sb:
        jobs = {"threads": Job(THREADS, AssertTests("assert f() == 1")),
                "orphan": Job(ORPHAN, StdioTests([("", "done")])),
                "bomb": Job(BOMB, AssertTests("assert True")), "probe": Job(PROBE, PROBE_TESTS)}
        for name, job in jobs.items():
            r = sb.run([job, OK])
            out[name] = {"status": r[0].status, "tests": r[0].tests, "wall_s": r[0].wall_s,
                         "stderr": r[0].stderr[-300:], "ok_after": r[1].passed}
        out["server_pid"] = sb.server_pid
    time.sleep(0.2)
    mine = {int(p) for p in os.listdir("/proc") if p.isdigit() and os.stat(f"/proc/{p}").st_uid == os.getuid()}
    out["left"] = sorted(mine - {s.pid for s in sleepers} - {os.getpid()})
finally:
    for s in sleepers:
        s.kill()
        s.wait()
print(json.dumps(out))
'''


def run_unprivileged(caller: str) -> dict:
    """Run the Python source `caller` as uid UID (this test process must be root), with this
    checkout importable; returns the JSON object its last line of stdout prints."""
    work = tempfile.mkdtemp(prefix="prmfast-noroot-")
    try:
        os.chmod(work, 0o777)
        script = Path(work) / "caller.py"
        script.write_text(caller)
        script.chmod(0o644)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": work, "TMPDIR": work,
               "PYTHONPATH": str(REPO), "LANG": "C.UTF-8"}
        done = subprocess.run([sys.executable, "-c", DROP_AND_RUN.format(repo=str(REPO)), str(UID),
                               str(script)], capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def report():
    if os.geteuid() != 0:
        pytest.skip("needs root to start the unprivileged caller")
    return run_unprivileged(SCRIPT)


def test_without_root_jobs_get_their_verdicts_and_nothing_survives(report):
    assert {"rlimits"} <= set(report["layers"])
    # 80 processes of the caller's uid do not starve the program's threads (with userns the
    # process limit counts the slot's processes only; without it, the caller's too: see docs)
    if "userns" in report["layers"]:
        assert report["threads"]["status"] == "passed", report["threads"]
    # a double-forked, setsid'd sleeper holding stdout: the job ends with its program
    assert report["orphan"]["status"] == "passed" and report["orphan"]["wall_s"] < 2.0, report
    assert report["bomb"]["status"] in ("timeout", "error", "memory", "crashed"), report["bomb"]
    assert report["bomb"]["wall_s"] < 5.0, report["bomb"]          # the job's own budget
    assert all(report[name]["ok_after"] for name in ("threads", "orphan", "bomb", "probe"))
    assert report["left"] == [], report["left"]                   # sandbox and jobs all gone


def test_without_root_user_namespaces_bring_the_namespace_layers(report):
    if "userns" not in report["layers"]:
        pytest.skip("unprivileged user namespaces are not available on this machine")
    assert {"userns", "pidns", "ipcns", "netns"} <= set(report["layers"])
    # no capability, its own PID namespace (the zygote is 1), no network at all
    assert report["probe"]["tests"] == [True, True, True], report["probe"]
