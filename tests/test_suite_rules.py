"""The suite's stated rule for GPU-only tests (docs/layers.md, "Tests"): a test that skips
without CUDA (`skipif(not torch.cuda.is_available(), ...)`, on itself or through the module's
pytestmark) carries the `gpu` marker, so `-m gpu` selects every one of them and `-m "not gpu"`
none. Checked on the test files' syntax, nothing imported."""
import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def _marks(decorators) -> list[ast.expr]:
    """The marks as written (`pytest.mark.gpu`) and, for called ones, the call and its name."""
    return [d.func if isinstance(d, ast.Call) else d for d in decorators] + \
        [d for d in decorators if isinstance(d, ast.Call)]


def _is_gpu_mark(node: ast.expr) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "gpu"


def _skips_without_cuda(node: ast.expr) -> bool:
    """skipif(not torch.cuda.is_available(), ...)"""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr == "skipif" and node.args):
        return False
    cond = node.args[0]
    return (isinstance(cond, ast.UnaryOp) and isinstance(cond.op, ast.Not)
            and "cuda.is_available" in ast.unparse(cond.operand))


def _module_marks(tree: ast.Module) -> list[ast.expr]:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "pytestmark"
                                                for t in node.targets):
            value = node.value
            items = value.elts if isinstance(value, (ast.List, ast.Tuple)) else [value]
            return _marks(items)
    return []


def gpu_rule_violations(source: str) -> list[str]:
    """Names of the test functions in `source` that skip without CUDA but lack the gpu mark."""
    tree = ast.parse(source)
    module = _module_marks(tree)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and \
                node.name.startswith("test_"):
            marks = module + _marks(node.decorator_list)
            if any(map(_skips_without_cuda, marks)) and not any(map(_is_gpu_mark, marks)):
                out.append(node.name)
    return out


def test_every_test_that_needs_cuda_is_marked_gpu():
    bad = {str(path.relative_to(TESTS)): names for path in sorted(TESTS.rglob("test_*.py"))
           if (names := gpu_rule_violations(path.read_text()))}
    assert not bad, f"add @pytest.mark.gpu to: {bad}"


def test_the_rule_check_finds_an_unmarked_cuda_test():
    unmarked = ("import pytest, torch\n"
                "@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')\n"
                "def test_a():\n    pass\n")
    assert gpu_rule_violations(unmarked) == ["test_a"]
    assert gpu_rule_violations("import pytest\n@pytest.mark.gpu\n" + unmarked.split("\n", 1)[1]) \
        == []
    module_mark = ("import pytest, torch\npytestmark = [pytest.mark.gpu, pytest.mark.skipif("
                   "not torch.cuda.is_available(), reason='x')]\ndef test_b():\n    pass\n")
    assert gpu_rule_violations(module_mark) == []
    cpu_only = ("import pytest, torch\n@pytest.mark.skipif(torch.cuda.is_available(), "
                "reason='the CPU machine')\ndef test_c():\n    pass\n")
    assert gpu_rule_violations(cpu_only) == []
