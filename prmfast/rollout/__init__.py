"""Generation backends: the RolloutBackend interface and its HF implementation."""
from prmfast.rollout.base import RolloutBackend, Sample
from prmfast.rollout.hf import HFGenerateBackend

__all__ = ["HFGenerateBackend", "RolloutBackend", "Sample"]
