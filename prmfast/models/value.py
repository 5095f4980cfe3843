"""ValueModel: a causal LM's backbone plus a scalar head; the critic and the PRM."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoModel, AutoModelForTokenClassification, PreTrainedModel

from prmfast import kernels
from prmfast.models.policy import check_model_folder, load_complete, one_line

HEAD_FILE = "value_head.safetensors"


class ValueModel(nn.Module):
    """backbone (an HF base model, e.g. LlamaModel) -> hidden [B, T, H] -> head -> [B, T]."""

    def __init__(self, backbone: PreTrainedModel, head: nn.Linear | None = None):
        super().__init__()
        self.backbone = backbone
        hidden_size = backbone.config.hidden_size
        self.head = head if head is not None else nn.Linear(hidden_size, 1)
        if head is None:
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)
        first = next(backbone.parameters())
        self.head.to(device=first.device, dtype=first.dtype)

    @classmethod
    def from_causal_lm(cls, model: PreTrainedModel) -> "ValueModel":
        """A copy of model's backbone (the LM head dropped) with a new zero-initialised head."""
        return cls(copy.deepcopy(model.base_model))

    @classmethod
    def from_pretrained(cls, path: str | Path,
                        device: torch.device | str | None = None) -> "ValueModel":
        """Load a folder written by save_pretrained (on the CPU, then moved to `device` when
        given). A causal-LM folder without a head file gives its backbone with a zero head (PRM
        initialised from a policy checkpoint). A one-label token-classification folder
        (is_token_classifier, e.g. to_token_classifier's) gives its base model and its `score`
        head. FileNotFoundError when `path` is no model folder, ValueError when its weights lack
        some of the backbone's tensors."""
        path = Path(path)
        check_model_folder(path)
        if is_token_classifier(path):
            classifier = load_complete(AutoModelForTokenClassification, path)
            model = cls(classifier.base_model, classifier.score)
            return model if device is None else model.to(device)
        model = cls(load_complete(AutoModel, path))
        if (path / HEAD_FILE).exists():
            try:
                state = load_file(str(path / HEAD_FILE))
            except SafetensorError as exc:
                raise ValueError(f"{path / HEAD_FILE} is damaged or truncated "
                                 f"({one_line(exc)})") from None
            model.head.load_state_dict({k: v.to(model.head.weight.dtype) for k, v in state.items()})
        return model if device is None else model.to(device)

    def save_pretrained(self, path: str | Path, tokenizer=None) -> None:
        """HF folder of the backbone + value_head.safetensors (+ the tokenizer when given)."""
        path = Path(path)
        self.backbone.save_pretrained(str(path))
        save_file({k: v.detach().cpu().contiguous() for k, v in self.head.state_dict().items()},
                  str(path / HEAD_FILE))
        if tokenizer is not None:
            tokenizer.save_pretrained(str(path))

    def to_token_classifier(self, **config_fields) -> PreTrainedModel:
        """The same network as a standard Transformers model with one label, which
        AutoModelForTokenClassification loads: the backbone under its base-model prefix, the
        head as `score` (classifier dropout 0); its logits [B, T, 1] are values() [B, T].
        config_fields are set on its config (saved in config.json). ValueError when transformers
        has no token-classification class for the backbone's model type."""
        config = copy.deepcopy(self.backbone.config)
        config.num_labels = 1
        config.id2label, config.label2id = {0: "score"}, {"score": 0}
        config.classifier_dropout = 0.0
        for key, value in config_fields.items():
            setattr(config, key, value)
        classifier = AutoModelForTokenClassification.from_config(config)
        classifier.base_model.load_state_dict(self.backbone.state_dict())
        classifier.score.load_state_dict(self.head.state_dict())
        first = next(self.backbone.parameters())
        return classifier.to(device=first.device, dtype=first.dtype).eval()

    def hidden(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
               position_ids: torch.Tensor | None = None) -> torch.Tensor:
        """input_ids [B, T] -> last hidden states [B, T, H]; ValueError for another shape, an
        empty batch, non-integer ids, or an attention_mask / position_ids of another shape."""
        check_ids(input_ids)
        for name, t in (("attention_mask", attention_mask), ("position_ids", position_ids)):
            if t is not None and t.shape != input_ids.shape:
                raise ValueError(f"{name}: expected the shape of input_ids "
                                 f"{list(input_ids.shape)}, got {list(t.shape)}")
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask,
                            position_ids=position_ids, use_cache=False)
        return out.last_hidden_state

    def values(self, input_ids: torch.Tensor,
               attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Per-token scalar [B, T] (the critic's V_t)."""
        return self.head(self.hidden(input_ids, attention_mask)).squeeze(-1)

    def line_scores(self, input_ids: torch.Tensor, line_end: torch.Tensor,
                    attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """PRM scores [B, T]: head output at line-end tokens (line_end [B, T] bool), zero elsewhere,
        computed by the fused kernels.line_scores."""
        if line_end.shape != input_ids.shape:
            raise ValueError(f"line_end: expected the shape of input_ids {list(input_ids.shape)}, "
                             f"got {list(line_end.shape)}")
        h = self.hidden(input_ids, attention_mask)
        b, t, d = h.shape
        scores = kernels.line_scores(h.reshape(b * t, d), self.head.weight[0], self.head.bias,
                                     line_end.reshape(b * t))
        return scores.reshape(b, t)


def is_token_classifier(path: str | Path) -> bool:
    """Whether the HF folder `path` holds a token-classification model with one label (the
    standard format of a PRM or critic: ValueModel.to_token_classifier)."""
    try:
        config = json.loads((Path(path) / "config.json").read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(config, dict):
        return False
    architectures = config.get("architectures") or []
    return (any(str(a).endswith("ForTokenClassification") for a in architectures)
            and len(config.get("id2label") or {}) == 1)


def check_ids(input_ids: torch.Tensor) -> None:
    """ValueError unless input_ids is an int64/int32 [B, T] tensor with B, T >= 1."""
    if input_ids.dim() != 2 or 0 in input_ids.shape:
        raise ValueError(f"input_ids: expected shape [B, T] with B >= 1 and T >= 1, got "
                         f"{list(input_ids.shape)}")
    if input_ids.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"input_ids: expected int64 or int32 token ids, got {input_ids.dtype}")
