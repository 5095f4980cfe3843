"""The PRM interface and the fine-tuned kind.

Every PRM kind offers the same two ways to score lines, so no caller asks which kind it holds:

    prm.predict(examples: list[PRMExample], batch_size, progress=False)
        -> per example, per line: the score R_phi(x, y(<=m)) at the line's last token
    prm.packed_line_scores(batch: prmfast.rl.experience.PackedBatch, line_end [N] bool)
        -> [N] float: each line's score on its line-end token, 0 elsewhere (RL dense reward)

Kinds: ValuePRM (here: a ValueModel whose backbone is fine-tuned, prmfast.prm.train) and
prmfast.prm.frozen.FrozenBackbonePRM (a frozen pretrained backbone with its own tokenizer and a
ridge-fitted head). prmfast.prm.load_prm(folder) loads either from a prm stage's folder.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import torch
from tqdm import tqdm

from prmfast.device import module_device
from prmfast.models import ValueModel
from prmfast.models.packed import packed_line_scores
from prmfast.prm.data import PRMExample, collate, length_groups, line_values


# how to read a PRM saved by ValuePRM.save_token_classifier (its config.json's "prm" entry)
HF_FORMAT = {
    "format": "prmfast line-level PRM, version 1",
    "input": "the prompt's token ids as the policy saw them, then the response's token ids "
             "(tokenized apart, no special tokens added)",
    "score": "logits[..., 0] at each line's line-end token: the response token holding the "
             "line's newline (the response's last token ends the last line); other positions "
             "carry no meaning",
    "training_target": "+1 for lines before the first wrong one, -1 from it on (binary search "
                       "with best-of-K completions against unit tests), 0 for comment lines; "
                       "mean squared error",
}
MODEL_CARD = """---
library_name: transformers
pipeline_tag: token-classification
tags: [process-reward-model, code]
---

# Line-level process reward model (prmfast)

A process reward model (PRM) for generated Python code, trained with prmfast after "Process
Supervision-Guided Policy Optimization for Code Generation" (arXiv 2410.17621): it scores each
line of a response. Architecture: a {arch} backbone with a one-label token-classification
head (`AutoModelForTokenClassification`, `num_labels=1`), loaded with no prmfast code.

How to read it (also in `config.json` under `"prm"`):
- Input: the prompt's token ids as the policy saw them, then the response's token ids,
  tokenized apart with no special tokens added.
- Score of a line: `logits[..., 0]` at the line's last token, the token holding its newline
  (the response's last token ends the last line). Other positions carry no meaning.
- Training target: +1 for lines before the first wrong line, -1 from it on (labels from binary
  search with best-of-K completions run against unit tests), 0 for comment lines; MSE loss.
  A high score means "the program is still on a path to passing its tests here".

```python
import torch
from transformers import AutoModelForTokenClassification, AutoTokenizer

prm = AutoModelForTokenClassification.from_pretrained("PATH").eval()
tok = AutoTokenizer.from_pretrained("PATH")
prompt, response = "def add(a, b):\n", "    s = a + b\n    return s\n"
p = tok(prompt, add_special_tokens=False)["input_ids"]
r = tok(response, add_special_tokens=False)["input_ids"]
with torch.no_grad():
    logits = prm(torch.tensor([p + r])).logits[0, :, 0]
ends = [len(p) + i for i, t in enumerate(r) if "\n" in tok.decode([t]) or i == len(r) - 1]
print([round(logits[i].item(), 3) for i in ends])   # one score per line
```

(Decoding token by token finds the newline tokens of byte-level BPE vocabularies; prmfast's
`prmfast.lines` segmentation also handles multi-byte characters and comment lines.)
"""


class PRM(Protocol):
    """What the prm stage, the reports and RL use of a PRM (both kinds implement it)."""

    def predict(self, examples: Sequence[PRMExample], batch_size: int = ...,
                progress: bool = False) -> list[list[float]]: ...

    def packed_line_scores(self, batch, line_end: torch.Tensor) -> torch.Tensor: ...


class ValuePRM(ValueModel):
    """The paper's PRM: a ValueModel (backbone -> hidden [B, T, H] -> head -> [B, T]) read at
    line-end tokens; pad_id pads the batches predict builds (the policy tokenizer's pad; by
    default the backbone config's pad, else its EOS, else 0)."""

    def __init__(self, backbone, head: torch.nn.Linear | None = None, pad_id: int | None = None):
        super().__init__(backbone, head)
        if pad_id is None:
            config = backbone.config
            pad_id = next((t for t in (config.pad_token_id, config.eos_token_id)
                           if isinstance(t, int)), 0)
        self.pad_id = pad_id

    @classmethod
    def of(cls, model: ValueModel, pad_id: int | None = None) -> "ValuePRM":
        """The PRM over a ValueModel's own modules (parameters shared, not copied)."""
        return cls(model.backbone, model.head, pad_id)

    @classmethod
    def load(cls, folder: str | Path, device: torch.device | str | None = None,
             pad_id: int | None = None) -> "ValuePRM":
        """ValueModel.from_pretrained (a PRM folder, or a policy folder: zero head) as a PRM."""
        return cls.of(ValueModel.from_pretrained(folder, device=device), pad_id)

    def save_token_classifier(self, folder: str | Path, tokenizer) -> None:
        """The PRM in the standard format (DIR/prm/hf): a one-label token-classification model
        that AutoModelForTokenClassification loads with no prmfast code, its tokenizer, how to
        read the scores (config.json "prm") and a model card (README.md). prmfast loads it back
        with load_prm / ValueModel.from_pretrained; prm.init and prm.pretrained accept it."""
        folder = Path(folder)
        self.to_token_classifier(prm=HF_FORMAT).save_pretrained(str(folder))
        tokenizer.save_pretrained(str(folder))
        (folder / "README.md").write_text(MODEL_CARD.format(arch=self.backbone.config.model_type))

    @torch.no_grad()
    def predict(self, examples: Sequence[PRMExample], batch_size: int = 64,
                progress: bool = False) -> list[list[float]]:
        """Per-line scores for each example (same order), on length-grouped padded batches."""
        was = self.training
        self.eval()
        device = module_device(self)
        out: list[list[float] | None] = [None] * len(examples)
        for group in tqdm(length_groups(examples, batch_size), desc="PRM scoring",
                          disable=not progress):
            batch = collate([examples[i] for i in group], self.pad_id, device)
            scores = self.line_scores(batch.input_ids, batch.line_end, batch.attention_mask)
            for i, vals in zip(group, line_values(scores, batch)):
                out[i] = vals                          # by position: repeated objects are fine
        self.train(was)
        return out

    def packed_line_scores(self, batch, line_end: torch.Tensor) -> torch.Tensor:
        """Scores on a prmfast.rl.experience.PackedBatch: the fused head at every response token
        flagged in line_end [N] bool, 0 elsewhere -> [N] (differentiable)."""
        x = batch.packed()
        return packed_line_scores(self, x.input_ids, x.cu_seqlens, line_end, at=x.response,
                                  parents=x.parents)
