"""What every generation backend returns, and the interface it implements."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass
class Sample:
    prompt_ids: list[int]
    response_ids: list[int]        # excludes the EOS token
    logprobs: list[float]          # per response token, under the sampling distribution
    finish_reason: str             # "stop" (EOS) | "length"
    text: str                      # decoded response


class RolloutBackend(Protocol):
    def generate(self, prompt_ids: list[list[int]], *, n: int, max_new_tokens: int,
                 temperature: float, top_p: float = 1.0, seed: int | None = None,
                 progress: bool = False) -> list[list[Sample]]:
        """n samples per prompt: result[p][j] is sample j of prompt p."""
        ...
