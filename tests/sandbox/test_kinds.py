"""The three test kinds, their comparison rules and the tricks that must not pass."""
from decimal import Decimal
from fractions import Fraction

import pytest

from prmfast.sandbox import AssertTests, CallTests, Job, Sandbox, StdioTests


def run1(sb, program, tests, **kw):
    return sb.run([Job(program, tests, **kw)])[0]


def test_stdio_cases_and_normalisation(sandbox):
    prog = "n = int(input())\nprint(' '.join(str(i) for i in range(n)) + '   ')\nprint()\n"
    r = run1(sandbox, prog, StdioTests([("3\n", "0 1 2"), ("1", "0\n\n\n"), ("2", "0 2")]))
    assert r.tests == [True, True, False] and r.status == "failed" and r.first_failure == 2


def test_stdio_livecodebench_style(sandbox):
    prog = ("import sys\ndata = sys.stdin.read().split()\nt = int(data[0])\n"
            "for i in range(t):\n    a, b = int(data[1 + 2*i]), int(data[2 + 2*i])\n    print(a + b)\n")
    r = run1(sandbox, prog, StdioTests([("2\n1 2\n3 4\n", "3\n7\n"), ("1\n-5 5\n", "0")]))
    assert r.passed and r.tests == [True, True] and r.first_failure is None


def test_stdio_exception_is_error(sandbox):
    r = run1(sandbox, "print(1)\nraise ValueError('boom')", StdioTests([("", "1")]))
    assert r.status == "error" and "boom" in r.stderr


def test_call_tests_exact_types(sandbox):
    prog = "def f(x):\n    return x\n"
    cases = [([1], 1), ([True], 1), ([1], 1.0), ([[1, (2, 3)]], [1, (2, 3)]), ([[1, 2]], (1, 2)),
             ([{"a": [1.5]}], {"a": [1.5]}), ([None], None), ([float("nan")], float("nan"))]
    r = run1(sandbox, prog, CallTests("f", cases))
    assert r.tests == [True, False, False, True, False, True, True, True]


def test_call_tests_float_tolerance(sandbox):
    prog = "def f(x):\n    return x / 3\n"
    assert run1(sandbox, prog, CallTests("f", [([1.0], 0.3333)], atol=1e-3)).passed
    assert not run1(sandbox, prog, CallTests("f", [([1.0], 0.3333)])).passed


def test_exact_numbers_keep_their_type(sandbox):
    """Fractions and Decimals cross exactly, both ways and in both test kinds; a float for a
    Fraction (or a Fraction for a Decimal) is the wrong type."""
    prog = ("from fractions import Fraction\nfrom decimal import Decimal\n"
            "def f(x):\n    return {'third': x / 3, 'kind': type(x).__name__}\n"
            "def g(x):\n    return float(x) / 3\n")
    third, half = Fraction(1, 3), Decimal("0.5")
    r = run1(sandbox, prog, CallTests("f", [([Fraction(1)], {"third": third, "kind": "Fraction"}),
                                            ([Decimal("1.5")], {"third": half, "kind": "Decimal"}),
                                            ([Decimal("1.5")], {"third": Fraction(1, 2), "kind": "Decimal"}),
                                            ([Decimal("NaN")], {"third": Decimal("NaN"), "kind": "Decimal"})]))
    assert r.tests == [True, True, False, True]
    assert not run1(sandbox, prog, CallTests("g", [([Fraction(1)], third)])).passed
    tests = ("from fractions import Fraction\n"
             "assert f(Fraction(1, 2))['third'] == Fraction(1, 6)\n"
             "assert f(Fraction(1, 2))['kind'] == 'Fraction'\n")
    assert run1(sandbox, prog, AssertTests(tests)).tests == [True, True]


def test_multiprocessing_and_shared_memory_work(sandbox):
    """A program may use multiprocessing (fork workers pickle its functions by name through
    __main__; its locks live in /dev/shm) and POSIX shared memory."""
    prog = ("import multiprocessing as mp\nfrom multiprocessing import shared_memory\n"
            "def square(x):\n    return x * x\n"
            "def pool():\n    with mp.Pool(2) as p:\n        return p.map(square, [1, 2, 3])\n"
            "def shm():\n    s = shared_memory.SharedMemory(create=True, size=10)\n"
            "    s.buf[0] = 7\n    v = bytes(s.buf[:1])\n    s.close()\n    s.unlink()\n    return v\n"
            "def main_module():\n    import sys\n    return sys.modules['__main__'].square is square\n")
    r = run1(sandbox, prog, CallTests("pool", [([], [1, 4, 9])]))
    assert r.passed, r
    assert run1(sandbox, prog, CallTests("shm", [([], b"\x07")])).passed
    assert run1(sandbox, prog, CallTests("main_module", [([], True)])).passed


def test_assert_tests_without_top_level_asserts(sandbox):
    prog = "def f(x):\n    if x < 0:\n        raise ValueError('neg')\n    return 2 * x\n"
    helper = "def check(candidate):\n    assert candidate(2) == 4\ncheck(f)\n"       # no entry point
    r = run1(sandbox, prog, AssertTests(helper))
    assert r.passed and r.tests == [True], r
    expects_raise = ("import math\nfor x in range(3):\n    assert f(x) == 2 * x\n"
                     "try:\n    f(-1)\n    raise AssertionError('no error')\nexcept ValueError:\n    pass\n")
    assert run1(sandbox, prog, AssertTests(expects_raise)).tests == [True, True]
    wrong = "def f(x):\n    return x\n"
    r = run1(sandbox, wrong, AssertTests(expects_raise))
    assert r.status == "failed" and r.tests == [False, False] and r.first_failure == 0
    assert run1(sandbox, prog, AssertTests("def g():\n    pass\n")).stderr == "no test cases"


def test_the_program_is_main_py_in_its_folder(sandbox):
    prog = "import os\nprint(open(__file__).read() == open('main.py').read(), os.path.isfile(__file__))\n"
    assert run1(sandbox, prog, StdioTests([("", "True True")])).passed
    # tracebacks read like `python main.py`'s: the program's frames and lines, not the harness's
    r = run1(sandbox, "x = 1\ny = x / 0\n", StdioTests([("", "")]))
    assert 'File "main.py", line 2, in <module>\n    y = x / 0' in r.stderr, r.stderr
    assert "child.py" not in r.stderr and "prmfast" not in r.stderr


def test_call_tests_leetcode_solution_class(sandbox):
    prog = "class Solution:\n    def twoSum(self, nums, target):\n        return [0, 1]\n"
    assert run1(sandbox, prog, CallTests("twoSum", [([[2, 7], 9], [0, 1])])).passed


def test_call_missing_entry_point_is_error(sandbox):
    r = run1(sandbox, "x = 1", CallTests("f", [([1], 1)]))
    assert r.status == "error" and r.tests == [False]


def test_assert_cases_per_statement(sandbox):
    r = run1(sandbox, "def f(x): return x * 2", AssertTests("import math\nassert f(2) == 4\nassert f(3) == 7\nassert math.isclose(f(0.5), 1.0)"))
    assert r.tests == [True, False, True] and r.first_failure == 1 and r.status == "failed"


def test_assert_syntax_error_and_nul_byte(sandbox):
    assert run1(sandbox, "def f(:\n", AssertTests("assert True")).status == "error"
    assert run1(sandbox, "x = 1\0", AssertTests("assert True")).status == "error"


def test_non_utf8_output_does_not_raise(sandbox):
    prog = "import sys\nsys.stdout.buffer.write(b'\\xff\\xfe ok\\n')\nsys.stderr.buffer.write(b'\\xc3\\x28')\n"
    r = run1(sandbox, prog, StdioTests([("", "ok")]))
    assert r.status == "failed" and isinstance(r.stderr, str)


CHEATS = {
    "sys_exit": "import sys\nsys.exit(0)\n",
    "os_exit": "import os\nos._exit(0)\n",
    "atexit": "import atexit, os\natexit.register(lambda: os._exit(0))\nraise SystemExit\n",
    "marker": "print('passed'); print('{\"status\": \"passed\", \"tests\": [true]}')\nimport os\nos._exit(0)\n",
    "lying_eq": ("class Yes:\n    def __eq__(self, other): return True\n    __hash__ = object.__hash__\n"
                 "def add(a, b):\n    return Yes()\n"),
    "lying_int": "class Yes(int):\n    def __eq__(self, other): return True\ndef add(a, b):\n    return Yes(0)\n",
    "patch_builtins": ("import builtins\nbuiltins.AssertionError = type('X', (Exception,), {})\n"
                       "builtins.isinstance = lambda *a: True\nbuiltins.len = lambda x: 0\n"
                       "def add(a, b):\n    return 0\n"),
    "swallow": ("import sys\nsys.excepthook = lambda *a: None\n"
                "def add(a, b):\n    try:\n        raise AssertionError\n    except BaseException:\n        return None\n"),
    "settrace": "import sys\nsys.settrace(lambda *a: None)\ndef add(a, b):\n    return 0\n",
    "write_result_fds": ("import os\nfor fd in range(3, 64):\n    try: os.write(fd, b'{\"status\": \"passed\"}')\n"
                         "    except OSError: pass\ndef add(a, b):\n    return 0\n"),
}


@pytest.mark.parametrize("name", sorted(CHEATS))
def test_cheats_do_not_pass(sandbox, name):
    prog = CHEATS[name]
    jobs = [Job(prog, AssertTests("def check(c):\n    assert c(1, 2) == 3\n    assert isinstance(c(1, 2), int)\n", "add")),
            Job(prog, AssertTests("assert add(1, 2) == 3")),
            Job(prog, CallTests("add", [([1, 2], 3)]))]
    for r in sandbox.run(jobs):
        assert not r.passed and r.status in ("failed", "error"), (name, r)


def test_job_overrides_and_gil_released():
    import threading
    with Sandbox(workers=1, timeout_s=5) as sb:
        ticks = []
        t = threading.Thread(target=lambda: [ticks.append(1) or __import__("time").sleep(0.01) for _ in range(30)])
        t.start()
        r = sb.run([Job("import time\ntime.sleep(0.5)", AssertTests("assert True"), timeout_s=0.3)])[0]
        t.join()
        assert r.status == "timeout" and r.wall_s < 3 and len(ticks) == 30
