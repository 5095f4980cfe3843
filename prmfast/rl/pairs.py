"""Two models' independent work of an RL iteration on two CPU threads at once.

The PPO update's policy and critic passes (forward, then backward) do not depend on each other,
nor do the experience's policy and reference forwards, or its critic and PRM forwards. Inside one
operation a model this small splits poorly over threads (a fork / join per operation, matmuls 96
or 256 wide; on a busy machine the threads spin against other jobs: BENCHMARKS.md), so on a CPU
with torch set to two or more threads `PairRunner` runs the two jobs each on one thread, side by
side (torch releases the GIL inside its operations); anywhere else, one after the other. Each
job computes exactly what it computes alone on one thread. Grad mode is per thread in torch:
the helper thread takes the caller's.
"""
from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch


class PairRunner:
    """run(first, second) -> (first(), second()): side by side (first on the calling thread,
    second on one helper thread, torch at one thread each meanwhile) when `device` is a CPU,
    `allowed` and torch is set to >= 2 threads at the call; else one after the other."""

    def __init__(self, device: torch.device | str, allowed: bool = True):
        self.allowed = allowed and torch.device(device).type == "cpu"
        self._pool: ThreadPoolExecutor | None = None

    @property
    def parallel(self) -> bool:
        return self.allowed and torch.get_num_threads() >= 2

    def run(self, first: Callable[[], Any], second: Callable[[], Any]) -> tuple[Any, Any]:
        if not self.parallel:
            return first(), second()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="prmfast-pair")
        threads = torch.get_num_threads()
        grad = torch.is_grad_enabled()

        def helper():
            torch.set_num_threads(1)     # this thread's OpenMP team: itself
            with torch.set_grad_enabled(grad):
                return second()
        torch.set_num_threads(1)
        try:
            future = self._pool.submit(helper)
            try:
                out = first()
            except BaseException:
                future.exception()          # the helper done before its threads are reset
                raise
            other = future.result()
        finally:
            torch.set_num_threads(threads)
        return out, other

    def run_all(self, jobs: list[Callable[[], Any]]) -> list[Any]:
        """The jobs' results in order: two side by side (as run), more or fewer in order."""
        if len(jobs) == 2:
            return list(self.run(*jobs))
        return [job() for job in jobs]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
