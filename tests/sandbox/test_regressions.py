"""Regressions: huge ints, MBPP task shapes whose verdicts were reported flaky under load,
timeouts that test code swallows, and streamed CallTests."""
import subprocess
import sys
from contextlib import contextmanager

import pytest

from prmfast.sandbox import AssertTests, CallTests, Job, Sandbox

BIG = 7 ** 12000  # 10,142 digits: past Python's default 4,300-digit int<->str limit


def decimal(n: int) -> str:
    """A decimal literal of any size (as HumanEval+ expected outputs are written)."""
    limit = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        return str(n)
    finally:
        sys.set_int_max_str_digits(limit)


def test_huge_int_expected_and_returned(sandbox):
    prog = "def f(n):\n    return 7 ** n\n"
    tests = f"assert f(12000) == {decimal(BIG)}\nassert f(12000) != {decimal(BIG - 1)}"
    jobs = [Job(prog, CallTests("f", [([12000], BIG), ([12000], BIG + 1), ([3], 343)])),
            Job(prog, AssertTests(tests)),
            Job(prog, AssertTests("def check(c):\n    assert c(12000) == 7 ** 12000\n", "f")),
            Job("def f(x):\n    return -x\n", CallTests("f", [([BIG], -BIG)]))]
    r = sandbox.run(jobs)
    assert r[0].tests == [True, False, True]
    assert all(x.passed for x in r[1:]), [(x.status, x.stderr) for x in r[1:]]


def test_program_keeps_stock_int_str_limit(sandbox):
    """Only the trusted side lifts the limit; the program sees stock Python."""
    r = sandbox.run([Job("def f():\n    return str(7 ** 12000)\n",
                         AssertTests("assert len(f()) > 10000"))])[0]
    assert r.status == "error" and "ValueError" in r.stderr


@contextmanager
def cpu_hogs(n=4):
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


# The shapes of MBPP 88, 737, 787, 794, 40, 533, 653, 902: dict subclasses returned,
# re.Match objects tested for truth, builtin types passed as arguments.
MBPP_SHAPES = {
    "counter": ("import collections\ndef freq_count(xs):\n    return collections.Counter(xs)\n",
                "assert freq_count([10,10,20,40])==({10: 2, 20: 1, 40: 1})\n"
                "assert freq_count([1,2,1])==({1:2, 2:1})\n"),
    "counter_chain": ("from collections import Counter\nfrom itertools import chain\n"
                      "def freq_element(nums):\n    return Counter(chain.from_iterable(nums))\n",
                      "assert freq_element([[1, 2], [2, 3]])==({2: 2, 1: 1, 3: 1})\n"),
    "counter_add": ("from collections import Counter\ndef add_dict(d1,d2):\n"
                    "   return Counter(d1) + Counter(d2)\n",
                    "assert add_dict({'a': 1, 'b': 2},{'a': 3, 'd':4})==({'b': 2, 'd': 4, 'a': 4}) \n"),
    "defaultdict": ("from collections import defaultdict\ndef group(l):\n    d = defaultdict(list)\n"
                    "    for k, v in l:\n        d[k].append(v)\n    return d\n",
                    "assert group([('y', 1), ('b', 2), ('y', 3)])== ({'y': [1, 3], 'b': [2]})\n"),
    "re_match": ("import re \nregex = '^[aeiouAEIOU][A-Za-z0-9_]*'\ndef check_str(string): \n"
                 "\treturn re.search(regex, string)\n",
                 'assert check_str("annie")\nassert not check_str("dawood")\nassert check_str("Else")\n'),
    "re_match_lazy": ("import re\ndef text_match(text):\n        return re.search('ab{3}?', text)\n",
                      'assert not text_match("ac")\nassert text_match("abbbba")\n'),
    "type_argument": ("def remove_datatype(t, data_type):\n  return [e for e in t if not isinstance(e, data_type)]\n",
                      'assert remove_datatype((4, 5, 7.7, 1.2), int) == [7.7, 1.2]\n'
                      'assert remove_datatype((7, 8, "SR"), str) == [7, 8]\n'
                      'assert remove_datatype((7, 1.1, 2), float) == [7, 2]\n'),
}


def test_mbpp_shapes_pass_under_load(contained):
    jobs = [Job(prog, AssertTests(tests)) for prog, tests in MBPP_SHAPES.values()] * 8
    with cpu_hogs(), Sandbox(workers=2, timeout_s=20.0) as sb:
        results = sb.run(jobs)
    bad = [(name, r.status, r.stderr) for name, r in zip(list(MBPP_SHAPES) * 8, results) if not r.passed]
    assert not bad


def test_returned_builtin_type_compares_to_builtin(sandbox):
    r = sandbox.run([Job("def f():\n    return int\n", AssertTests("assert f() is int")),
                     Job("def f():\n    return float\n", CallTests("f", [([], float), ([], int)]))])
    assert r[0].passed and r[1].tests == [True, False]


def test_failed_case_says_why(sandbox):
    r = sandbox.run([Job("def f(x):\n    return x\n", AssertTests("assert f(1) == 1\nassert f(2) == 3, 'two'"))])[0]
    assert r.status == "failed" and "AssertionError: two" in r.stderr


def test_swallowed_timeout_is_timeout(sandbox):
    prog = "def spin():\n    while True:\n        pass\n"
    tests = AssertTests("def check(c):\n    try:\n        c()\n    except BaseException:\n        pass\n", "spin")
    r = sandbox.run([Job(prog, tests, timeout_s=1.0)])[0]
    assert r.status == "timeout" and not r.passed


def test_streamed_call_cases_keep_their_own_deadline():
    prog = "import time\ndef f(x):\n    if x == 1:\n        time.sleep(30)\n    return x\n"
    with Sandbox(workers=1, timeout_s=5.0, case_timeout_s=0.5) as sb:
        r = sb.run([Job(prog, CallTests("f", [([0], 0), ([1], 1), ([2], 2)]))])[0]
    assert r.status == "timeout" and r.tests == [True, False, False] and r.first_failure == 1


@pytest.mark.parametrize("program", ["f = 3\n", "def g(x):\n    return x\n"])
def test_call_entry_point_not_callable_or_missing_is_error(sandbox, program):
    r = sandbox.run([Job(program, CallTests("f", [([1], 1), ([2], 2)]))])[0]
    assert r.status == "error" and r.tests == [False, False]



def test_huge_integer_literal_in_reply_is_rejected_fast(sandbox):
    """A reply with a 5-million-digit JSON integer must not make the judge parse it."""
    prog = ("import os, struct, time\nbody = b'{\"ok\":' + b'7' * 5_000_000 + b'}'\n"
            "def f():\n    os.write(3, struct.pack('<I', len(body)) + body)\n    time.sleep(60)\n")
    r = sandbox.run([Job(prog, AssertTests("assert f() == 1"), timeout_s=20.0)])[0]
    assert r.status == "error" and r.wall_s < 10 and "oversized integer" in r.stderr


NODE = ("class Node:\n    def __init__(self, d):\n        self.d = d\n        self.left = None\n"
        "def depth(n):\n    return 0 if n is None else 1 + depth(n.left)\n")


def test_setup_code_mutates_remote_objects(sandbox):
    """MBPP 367/927: test setup builds a tree by setting attributes on the program's objects;
    item assignment and deletion on remote containers work the same way."""
    box = "class Box:\n    def __init__(self):\n        self.items = {}\n    def __getitem__(self, k):\n" \
          "        return self.items[k]\n    def __setitem__(self, k, v):\n        self.items[k] = v\n" \
          "    def __delitem__(self, k):\n        del self.items[k]\n"
    jobs = [Job(NODE, AssertTests("r = Node(1)\nr.left = Node(2)\nr.left.left = Node(3)\n"
                                  "assert depth(r) == 3\nassert r.left.d == 2\n")),
            Job(NODE, AssertTests("r = Node(1)\ndel r.left\nassert depth(r) == 1\n")),
            Job(NODE, AssertTests("r = Node(1)\nr.left = Node(2)\nassert depth(r) == 5\n")),
            Job(box, AssertTests("b = Box()\nb['k'] = [1, 2]\nassert b['k'] == [1, 2]\n"
                                 "del b['k']\nassert b.items == {}\n"))]
    r = sandbox.run(jobs)
    assert [x.status for x in r] == ["passed", "error", "failed", "passed"], [x.stderr for x in r]
    assert "AttributeError" in r[1].stderr  # the program's exception, raised in the judge


def test_remote_setattr_cannot_forge_a_pass(sandbox):
    """A __setattr__ that exits, or lies by returning a value, changes nothing in the verdict."""
    prog = NODE + "import os\nclass Evil(Node):\n    def __setattr__(self, k, v):\n        os._exit(0)\n"
    lying = NODE + "class Liar(Node):\n    def __setattr__(self, k, v):\n        return True\n"
    r = sandbox.run([Job(prog, AssertTests("e = Evil(1)\ne.left = Node(2)\nassert depth(e) == 2\n")),
                     Job(lying, AssertTests("e = Liar(1)\ne.left = Node(2)\nassert depth(e) == 2\n"))])
    assert r[0].status == "error" and not r[1].passed
