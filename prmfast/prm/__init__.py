"""The Process Reward Model: examples, training, metrics, the frozen-backbone kind, the stage.

    data     PRMExample, PRMBatch, line targets and loss weights, padded batches
    model    the PRM interface (predict, packed_line_scores) and ValuePRM, the fine-tuned kind
    frozen   FrozenBackbonePRM: a frozen pretrained backbone with a ridge-fitted head
    train    train_prm: MSE on line labels for a ValuePRM
    metrics  line AUC, localisation, reranking, within-task AUC, validation ranking
    stage    the "prm" stage (DIR/prm/model, DIR/prm/eval.json) and its config checks

    load_prm(folder, device) -> the PRM the prm stage saved in `folder`, whichever its kind
"""
from __future__ import annotations

from pathlib import Path

import torch

from prmfast.prm.frozen import FrozenBackbonePRM, is_frozen_prm
from prmfast.prm.model import PRM, ValuePRM

__all__ = ["PRM", "FrozenBackbonePRM", "ValuePRM", "is_frozen_prm", "load_prm"]


def load_prm(folder: str | Path, device: torch.device | str | None = None) -> PRM:
    """The PRM saved in `folder` by the prm stage: a FrozenBackbonePRM or a ValuePRM."""
    if is_frozen_prm(folder):
        return FrozenBackbonePRM.load(folder, device)
    return ValuePRM.load(folder, device)
