"""MBPP+ arguments decoded as the evalplus package (0.3.1) decodes them, for every task: what
the expected outputs are computed from, and so what `==` accepts."""
from __future__ import annotations

import copy

import pytest

from prmfast.data.evalplus import _inputs
from prmfast.data.evalplus_inputs import DECODERS
from prmfast.data.jsonl import read_jsonl
from prmfast.data.paths import resolve
from tests.conftest import needs_shared_data

pytestmark = needs_shared_data("evalplus/MbppPlus.jsonl.gz")


def typed(value):
    """`value` with the type of every container, at every depth (so a tuple is not a list)."""
    if isinstance(value, (list, tuple)):
        return type(value).__name__, [typed(v) for v in value]
    if isinstance(value, dict):
        return "dict", {k: typed(v) for k, v in value.items()}
    return type(value).__name__, value


def test_every_task_decodes_as_evalplus_does():
    mbpp = pytest.importorskip("evalplus.data.mbpp")
    rows = read_jsonl(resolve(None, "evalplus/MbppPlus.jsonl.gz"))
    assert set(DECODERS) <= {r["task_id"] for r in rows}
    for row in rows:
        stored = row["base_input"] + (row["plus_input"] or [])
        theirs = mbpp.mbpp_deserialize_inputs(row["task_id"], copy.deepcopy(stored))
        ours = _inputs(row, plus=True)
        assert [typed(list(a)) for a in ours] == [typed(list(a)) for a in theirs], row["task_id"]
