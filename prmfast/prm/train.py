"""Training the fine-tuned PRM (prmfast.prm.model.ValuePRM) by MSE on line labels.

The backbone is initialised from the SFT policy by default with a zero head (prm.init); the
loss touches only line-end tokens. The PRM trains on its device (prmfast.device); batches are
padded (prmfast.prm.data): on CPU with sdpa attention a padded forward is what HF supports.
"""
from __future__ import annotations

import math
import random
from collections.abc import Sequence

import torch
from tqdm import tqdm

from prmfast.config import PRMConfig
from prmfast.device import module_device
from prmfast.prm.data import PRMBatch, PRMExample, collate, length_batches, with_weights
from prmfast.prm.metrics import EARLY_STOPS, selection_key, validation_metrics
from prmfast.prm.model import ValuePRM


def mse_loss(scores: torch.Tensor, batch: PRMBatch) -> torch.Tensor:
    """Mean squared error over line-end tokens; weighted mean when the batch has weights."""
    w = batch.line_end.to(scores.dtype)
    if batch.weights is not None:
        w = w * batch.weights.to(scores.dtype)
    return ((scores - batch.targets) ** 2 * w).sum() / w.sum().clamp(min=1e-8)


def train_prm(prm: ValuePRM, train: Sequence[PRMExample], val: Sequence[PRMExample],
              cfg: PRMConfig, seed: int = 0, progress: bool = True) -> dict:
    """AdamW on the (weighted, see loss_weights) MSE; the head may have its own learning rate
    (cfg.head_lr). After each epoch the validation set is scored (validation_metrics); early
    stopping (patience in epochs) ranks epochs by selection_key on cfg.early_stop. The best
    epoch's weights are loaded back into prm. Returns the history (per-step and per-epoch)."""
    if cfg.early_stop not in EARLY_STOPS:
        raise ValueError(f"prm.early_stop must be one of {EARLY_STOPS}, got {cfg.early_stop!r}")
    if cfg.batch_size < 1:
        raise ValueError(f"prm.batch_size must be >= 1, got {cfg.batch_size}")
    if not train:
        raise ValueError("there are no training examples to train the PRM on")
    rng = random.Random(seed)
    train, val = with_weights(train, cfg), with_weights(val, cfg)
    head = list(prm.head.parameters())
    head_ids = {id(q) for q in head}
    groups = [{"params": [q for q in prm.parameters() if id(q) not in head_ids], "lr": cfg.lr},
              {"params": head, "lr": cfg.head_lr if cfg.head_lr is not None else cfg.lr}]
    opt = torch.optim.AdamW(groups, weight_decay=0.0)
    device = module_device(prm)
    history = {"step_loss": [], "train_loss": [], "val_loss": [], "val_auc": [],
               "val_within_task": []}
    best, best_state, bad_epochs = None, None, 0
    for epoch in range(cfg.epochs):
        prm.train()
        batches = length_batches(train, cfg.batch_size, rng)
        losses = []
        for group in tqdm(batches, desc=f"prm epoch {epoch + 1}", disable=not progress):
            batch = collate(group, prm.pad_id, device)
            loss = mse_loss(prm.line_scores(batch.input_ids, batch.line_end,
                                            batch.attention_mask), batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(prm.parameters(), 1.0)
            opt.step()
            losses.append(loss.item())
        history["step_loss"] += losses
        history["train_loss"].append(sum(losses) / max(1, len(losses)))
        if val:
            metrics = validation_metrics(val, prm.predict(val, cfg.batch_size))
        else:
            metrics = {"loss": history["train_loss"][-1], "auc": math.nan,
                       "within_task": math.nan}
        for name, value in metrics.items():
            history[f"val_{name}"].append(value)
        key = selection_key(metrics, cfg.early_stop)
        if best is None or key > best:               # the best weights, kept on the CPU
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in prm.state_dict().items()}
            best, bad_epochs = key, 0
            history["best_epoch"] = epoch + 1
        else:
            bad_epochs += 1
            if bad_epochs > cfg.patience:
                break
    if best_state is not None:
        prm.load_state_dict(best_state)
    history["epochs_run"] = len(history["train_loss"])
    if "best_epoch" in history:
        for name in ("loss", "auc", "within_task"):
            history[f"best_val_{name}"] = history[f"val_{name}"][history["best_epoch"] - 1]
    return history

