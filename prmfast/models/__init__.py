"""Policy, critic and PRM models; tokenizer training; local checkpoint and GGUF loading."""
from prmfast.models.policy import build_tiny_model, load_policy, save_policy
from prmfast.models.tokenizer import encode, train_tokenizer
from prmfast.models.value import ValueModel, is_token_classifier

__all__ = ["ValueModel", "build_tiny_model", "encode", "is_token_classifier", "load_policy",
           "save_policy", "train_tokenizer"]
