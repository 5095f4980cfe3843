"""The PRM on a frozen pretrained backbone with its own tokenizer (config prm.pretrained).

The paper's PRM fine-tunes a backbone initialised from the policy. On the embedded default that
backbone is a 3-layer model trained on a few hundred tasks, and it cannot tell a right line from
a wrong one of the same task (docs/prm.md). This PRM reads a pretrained causal LM instead (an HF
folder or a .gguf file, e.g. SmolLM2-135M in ../shared) and keeps it frozen. The score of line m
is a linear head on the backbone's last hidden state at the line's end, fitted in closed form to
the line labels by ridge-regularised weighted MSE (the paper's regression, on fixed features);
the ridge strength is chosen on the validation split (prm.ridge, by prm.early_stop).

Token ids cross tokenizers through text. An example's ids (prompt + response, in the policy's
tokenizer) are decoded; the backbone's tokenizer re-encodes the text with character offsets; line
m maps to the backbone token that holds the line's last non-blank character (its newline), so the
score reads the same prefix y(<=m) as the policy-side line-end token.

    FrozenBackbonePRM.from_backbone(path, source_tokenizer, device=None, layer=None)
    prm.fit(train, val, cfg: PRMConfig) -> history   # examples: prmfast.prm.data.PRMExample
    prm.predict(examples, batch_size) / prm.packed_line_scores(batch, line_end)   (the PRM
        interface, prmfast.prm.model)
    prm.save(folder); FrozenBackbonePRM.load(folder, device); is_frozen_prm(folder)
"""
from __future__ import annotations

import bisect
import json
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm import tqdm

from prmfast.config import PRMConfig
from prmfast.models import ValueModel, is_token_classifier, load_policy
from prmfast.models.policy import load_tokenizer
from prmfast.models.value import HEAD_FILE
from prmfast.prm.data import PRMExample, with_weights
from prmfast.prm.metrics import selection_key, validation_metrics

INFO_FILE = "frozen_prm.json"
SOURCE_TOKENIZER = "source_tokenizer"


def map_line_ends(source_tokenizer, target_tokenizer, input_ids: Sequence[int],
                  line_ends: Sequence[int]) -> tuple[list[int], list[int]]:
    """Re-tokenize a sequence and carry its line ends across.

    input_ids: token ids in source_tokenizer; line_ends: positions in input_ids of each line's
    last token. Returns (the target tokenizer's ids of the decoded text, per line the position of
    the target token holding the line's last non-blank character: its newline, or its last
    character when it has none)."""
    text = source_tokenizer.decode(list(input_ids), skip_special_tokens=True)
    # special-token text left in it (code can hold "<|endoftext|>") is text, as the run encoded it
    enc = target_tokenizer(text, return_offsets_mapping=True, split_special_tokens=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    real = [i for i, (start, stop) in enumerate(offsets) if stop > start]  # not special tokens
    if not real:
        raise ValueError("the decoded sequence is empty: nothing to score")
    starts = [offsets[i][0] for i in real]
    mapped = []
    for end in line_ends:
        prefix = source_tokenizer.decode(list(input_ids[:end + 1]), skip_special_tokens=True)
        char = len(text[:len(prefix)].rstrip(" \t")) - 1
        mapped.append(real[max(0, bisect.bisect_right(starts, char) - 1)])
    return ids, mapped


def fit_ridge(features: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor,
              ridges: Sequence[float]) -> list[tuple[torch.Tensor, float]]:
    """Weighted ridge regression on standardised features, per ridge strength.

    features [M, H], targets [M], weights [M] (float64). The bias is not penalised. Returns per
    ridge (weight [H], bias) on the raw features: score = features @ weight + bias."""
    mean, std = features.mean(0), features.std(0) + 1e-6
    x = torch.cat([(features - mean) / std, torch.ones(len(features), 1, dtype=features.dtype)], 1)
    weighted = x * weights[:, None]
    gram, rhs = x.T @ weighted, weighted.T @ targets
    penalty = torch.eye(x.shape[1], dtype=x.dtype)
    penalty[-1, -1] = 0.0
    out = []
    for ridge in ridges:
        coef = torch.linalg.solve(gram + ridge * penalty, rhs)
        weight = coef[:-1] / std
        out.append((weight, float(coef[-1] - (mean * weight).sum())))
    return out


class FrozenBackbonePRM(nn.Module):
    """backbone (frozen, own tokenizer) -> hidden at mapped line ends [L, H] -> head -> [L]."""

    def __init__(self, model: ValueModel, tokenizer, source_tokenizer, backbone_path: str,
                 layer: int | None = None):
        super().__init__()
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError(f"the backbone at {backbone_path!r} needs a fast tokenizer "
                             "(character offsets map the line ends)")
        self.model = model.requires_grad_(False).eval()
        self.tokenizer, self.source_tokenizer = tokenizer, source_tokenizer
        self.backbone_path, self.layer = backbone_path, layer
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else tokenizer.eos_token_id or 0
        self.max_length = getattr(model.backbone.config, "max_position_embeddings", None)

    @classmethod
    def from_backbone(cls, path: str | Path, source_tokenizer,
                      device: torch.device | str | None = None,
                      layer: int | None = None) -> "FrozenBackbonePRM":
        """The pretrained causal LM at `path` (HF folder or .gguf), or the backbone of a PRM in
        the standard format (a one-label token-classification folder, e.g. DIR/prm/hf), with a
        zero head. layer: keep only the first `layer` decoder layers (the final norm stays), so
        the head reads that layer's states and the forward runs layer of the n decoder layers;
        None: all."""
        if is_token_classifier(path):
            backbone = ValueModel.from_pretrained(path, device=device).backbone
            tokenizer = load_tokenizer(path)
        else:
            causal_lm, tokenizer = load_policy(path, device=device)
            backbone = causal_lm.base_model
        if layer is not None:
            n = len(backbone.layers)
            if not 1 <= layer <= n:
                raise ValueError(f"prm.layer={layer}: the backbone at {str(path)!r} has layers "
                                 f"1..{n}")
            backbone.layers = backbone.layers[:layer]
            backbone.config.num_hidden_layers = layer
        return cls(ValueModel(backbone), tokenizer, source_tokenizer, str(Path(path).resolve()),
                   layer)

    def save(self, folder: str | Path) -> None:
        """INFO_FILE (the backbone's path: it is not copied), the head, the policy tokenizer."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().cpu().contiguous() for k, v in self.model.head.state_dict().items()},
                  str(folder / HEAD_FILE))
        self.source_tokenizer.save_pretrained(str(folder / SOURCE_TOKENIZER))
        (folder / INFO_FILE).write_text(json.dumps({"backbone": self.backbone_path,
                                                    "layer": self.layer}) + "\n")

    @classmethod
    def load(cls, folder: str | Path, device: torch.device | str | None = None
             ) -> "FrozenBackbonePRM":
        from transformers import AutoTokenizer
        folder = Path(folder)
        info = json.loads((folder / INFO_FILE).read_text())
        if not Path(info["backbone"]).exists():
            raise FileNotFoundError(f"{folder / INFO_FILE} names the backbone {info['backbone']!r}"
                                    ", which does not exist (the PRM does not copy it)")
        prm = cls.from_backbone(info["backbone"],
                                AutoTokenizer.from_pretrained(folder / SOURCE_TOKENIZER), device,
                                info.get("layer"))
        state = load_file(str(folder / HEAD_FILE))
        head = prm.model.head
        head.load_state_dict({k: v.to(head.weight.device, head.weight.dtype)
                              for k, v in state.items()})
        return prm

    @torch.no_grad()
    def line_end_states(self, examples: Sequence[PRMExample], batch_size: int = 16,
                        progress: bool = False) -> list[torch.Tensor]:
        """Per example the backbone's last hidden state at its line ends, [L_i, H] float32 on
        the CPU. Identical examples (the policy often samples a response twice) are run once;
        forwards run on length-sorted right-padded batches."""
        keys = [(tuple(e.input_ids), tuple(e.line_ends)) for e in examples]
        index: dict[tuple, int] = {}
        for key in keys:
            index.setdefault(key, len(index))
        if len(index) < len(examples):
            unique = dict(zip(keys, examples))
            states = self.line_end_states([unique[k] for k in index], batch_size, progress)
            return [states[index[k]] for k in keys]
        mapped = [map_line_ends(self.source_tokenizer, self.tokenizer, e.input_ids, e.line_ends)
                  for e in examples]
        too_long = [len(ids) for ids, _ in mapped if self.max_length and len(ids) > self.max_length]
        if too_long:
            raise ValueError(f"a sequence of {max(too_long)} backbone tokens is longer than the "
                             f"backbone's {self.max_length} positions")
        order = sorted(range(len(examples)), key=lambda i: len(mapped[i][0]))
        chunks = [order[s:s + batch_size] for s in range(0, len(order), batch_size)]
        device = self.model.head.weight.device
        out: list[torch.Tensor | None] = [None] * len(examples)
        for chunk in tqdm(chunks, desc="PRM backbone", disable=not progress):
            width = max(len(mapped[i][0]) for i in chunk)
            ids = torch.full((len(chunk), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, i in enumerate(chunk):
                ids[row, :len(mapped[i][0])] = torch.tensor(mapped[i][0])
                mask[row, :len(mapped[i][0])] = 1
            hidden = self.model.hidden(ids.to(device), mask.to(device))
            for row, i in enumerate(chunk):
                out[i] = hidden[row, mapped[i][1]].float().cpu()
        return out

    def _scores(self, states: torch.Tensor) -> list[float]:
        head = self.model.head
        return head(states.to(head.weight.device, head.weight.dtype)).squeeze(-1).tolist()

    def predict(self, examples: Sequence[PRMExample], batch_size: int = 16,
                progress: bool = False) -> list[list[float]]:
        """Per example, per line: the PRM score."""
        return [self._scores(s) for s in self.line_end_states(examples, batch_size, progress)]

    def fit(self, train: Sequence[PRMExample], val: Sequence[PRMExample], cfg: PRMConfig,
            progress: bool = True) -> dict:
        """Fit the head on the training lines for every cfg.ridge and keep the best on the
        validation examples (prmfast.prm.metrics.selection_key on cfg.early_stop). Loss weights as
        prmfast.prm.data.with_weights. Without validation lines the middle ridge strength is kept.
        Returns the history."""
        start = time.perf_counter()
        train, val = with_weights(train, cfg), with_weights(val, cfg)
        train_states = [s.double() for s in self.line_end_states(train, cfg.batch_size, progress)]
        features = torch.cat(train_states or [torch.zeros(0, 1, dtype=torch.float64)])
        if not len(features):
            raise ValueError("the training examples have no lines to fit the PRM head on")
        fits = fit_ridge(features, _flat(train, "targets"), _flat(train, "weights"), cfg.ridge)
        val_states = [s.double() for s in self.line_end_states(val, cfg.batch_size, progress)]
        history = {"ridge": list(cfg.ridge), "train_loss": [], "val_loss": [], "val_auc": [],
                   "val_within_task": [], "train_lines": len(features),
                   "val_lines": sum(len(s) for s in val_states)}
        for weight, bias in fits:
            history["train_loss"].append(validation_metrics(
                train, [(s @ weight + bias).tolist() for s in train_states])["loss"])
            if history["val_lines"]:
                metrics = validation_metrics(val, [(s @ weight + bias).tolist()
                                                   for s in val_states])
                for name, value in metrics.items():
                    history[f"val_{name}"].append(value)
        if history["val_lines"]:
            keys = [selection_key({"loss": loss, "auc": auc, "within_task": within},
                                  cfg.early_stop)
                    for loss, auc, within in zip(history["val_loss"], history["val_auc"],
                                                 history["val_within_task"])]
            best = max(range(len(fits)), key=keys.__getitem__)
        else:
            best = len(fits) // 2
        weight, bias = fits[best]
        head = self.model.head
        with torch.no_grad():
            head.weight.copy_(weight[None].to(head.weight))
            head.bias.fill_(bias)
        history |= {"best_ridge": cfg.ridge[best], "fit_s": time.perf_counter() - start}
        for name in ("loss", "auc", "within_task") if history["val_lines"] else ():
            history[f"best_val_{name}"] = history[f"val_{name}"][best]
        return history

    def packed_line_scores(self, batch, line_end: torch.Tensor) -> torch.Tensor:
        """PRM scores on a prmfast.rl.experience.PackedBatch: at every response token flagged in
        line_end [N] bool the score of its line, 0 elsewhere. -> [N] float32 on line_end's
        device."""
        cu = batch.cu_seqlens.tolist()
        ends = line_end.cpu()
        examples, local = [], []
        for s, (seq, prompt_len) in enumerate(zip(batch.sequences, batch.prompt_lens)):
            idx = ends[cu[s]:cu[s + 1]].nonzero().flatten().tolist()
            local.append(idx)
            examples.append(PRMExample(seq, [prompt_len + j for j in idx], [0.0] * len(idx)))
        out = torch.zeros(len(ends), dtype=torch.float32)
        scored = iter(self.predict([e for e in examples if e.line_ends]))
        for s, idx in enumerate(local):
            if idx:
                out[torch.tensor(idx) + cu[s]] = torch.tensor(next(scored), dtype=torch.float32)
        return out.to(line_end.device)


def _flat(examples: Sequence[PRMExample], field: str) -> torch.Tensor:
    """The examples' per-line targets or weights (None: 1) concatenated, [M] float64."""
    values = [v for e in examples
              for v in (getattr(e, field) or [1.0] * len(e.line_ends))]
    return torch.tensor(values, dtype=torch.float64)


def is_frozen_prm(folder: str | Path) -> bool:
    """Whether the PRM saved in `folder` is this kind (it cannot initialise a critic)."""
    return (Path(folder) / INFO_FILE).is_file()
