"""Policy, critic and PRM models; tokenizer training; local checkpoint and GGUF loading."""
from prmfast.models.policy import build_tiny_model, load_policy, save_policy
from prmfast.models.tokenizer import encode, train_tokenizer
from prmfast.models.value import ValueModel

__all__ = ["ValueModel", "build_tiny_model", "encode", "load_policy", "save_policy",
           "train_tokenizer"]
