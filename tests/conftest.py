"""Test-wide setup. TRITON_INTERPRET must be set before any Triton kernel module is imported."""
import importlib.util
import os
import sys

os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# verl's wheel (and evalplus's dependency stop-sequencer) install a top-level `tests` package,
# which would win over this folder (a namespace package) in `from tests.x import y`: bind the
# name to this folder first.
_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in list(getattr(sys.modules.get("tests"), "__path__", [])):
    _spec = importlib.util.spec_from_loader("tests", None, is_package=True)
    _spec.submodule_search_locations = [_HERE]
    sys.modules["tests"] = importlib.util.module_from_spec(_spec)


def needs_shared_data(relative: str):
    """Skip marker for tests that read a dataset from ../shared/data (or $PRMFAST_SHARED/data),
    naming the missing path: a clone without it runs the rest of the suite."""
    import pytest
    from prmfast.data.paths import data_dir
    path = data_dir() / relative
    return pytest.mark.skipif(not path.exists(), reason=f"{path} not found (set PRMFAST_SHARED)")


def save_tiny_model(tmp_path_factory, max_position: int):
    """A tiny random policy and its tokenizer saved as an HF folder; returns the folder."""
    import torch
    from prmfast.config import ModelConfig
    from prmfast.models import build_tiny_model, save_policy, train_tokenizer
    tokenizer = train_tokenizer(["def f(x):\n    return x + 1\n"] * 20, 300,
                                tmp_path_factory.mktemp("tok"))
    torch.manual_seed(0)
    model = build_tiny_model(tokenizer, ModelConfig(hidden_size=32, num_layers=1, num_heads=2,
                                                    intermediate_size=64, max_position=max_position))
    folder = tmp_path_factory.mktemp("model")
    save_policy(model, tokenizer, folder)
    return folder
