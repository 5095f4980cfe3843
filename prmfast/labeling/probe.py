"""Batched best-of-K probing of prefixes: one rollout call and one sandbox batch per wave.

A probe asks "is this prefix recoverable?": sample completions of prompt + prefix from the
policy, run each program against the task's tests, recoverable iff one passes. Probes from many
responses are answered together. Early stop: the K completions of a probe are generated and
executed in waves (`wave_sizes`, e.g. 4, 8, 8 for K = 20); every wave is one batched
`backend.generate` call over all still-open probes and one `Sandbox.run` batch over all their new
completions; a probe that has a passing completion leaves and gets no further completions. Inside
a wave all completions of a probe run (concurrently), so a probe executes at most one wave past its
first pass. With first_wave >= K there is one wave: all K completions of every probe are generated
and executed (no early stop).

Identical prefixes (same task, same prefix token ids) are never probed twice: answers live in a
cache keyed by (task_id, prefix ids), optionally journalled to a JSONL file so an interrupted
collection resumes without re-probing. Each generate call's seed is derived from the probes it
asks for, so a resumed run draws the same completions as an uninterrupted one. One Prober serves
one policy (cache keys do not name it).
"""
from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from prmfast.runio import append_jsonl, read_jsonl

ProbeKey = tuple[str, tuple[int, ...]]


@dataclass(frozen=True)
class ProbeOutcome:
    first_pass: int | None   # index (generation order) of the first passing completion
    completions: int         # completions generated for this probe
    executions: int          # completions executed for this probe

    @property
    def recoverable(self) -> bool:
        return self.first_pass is not None


@dataclass(frozen=True)
class ProbeRequest:
    task: object             # prmfast.data.Task
    prompt_ids: list[int]
    prefix_ids: list[int]

    @property
    def key(self) -> ProbeKey:
        return self.task.task_id, tuple(self.prefix_ids)


def wave_sizes(k: int, first_wave: int) -> list[int]:
    """Completions per wave: first_wave, doubling, the last one cut so they sum to k."""
    if k < 1 or first_wave < 1:
        raise ValueError(f"k and first_wave must be >= 1, got k={k}, first_wave={first_wave}")
    sizes, size = [], first_wave
    while sum(sizes) < k:
        sizes.append(min(size, k - sum(sizes)))
        size *= 2
    return sizes


def executions_for(first_pass: int | None, k: int, first_wave: int) -> int:
    """Executions a best-of-k probe costs under the wave schedule, given its first pass index
    among a longer sequence of completions (None or >= k: no pass within k)."""
    done = 0
    for size in wave_sizes(k, first_wave):
        done += size
        if first_pass is not None and first_pass < done:
            return done
    return done


class Prober:
    """Answers probe requests for one policy, batched in waves.

    backend: prmfast.rollout RolloutBackend; sandbox: object with run(list[Job]) -> list[Result];
    make_job(task, prompt_ids, prefix_ids, completion_ids) -> Job builds the program to execute.
    """

    def __init__(self, backend, sandbox, make_job: Callable, *, k: int, first_wave: int,
                 temperature: float, top_p: float, max_new_tokens: int, seed: int,
                 journal: Path | None = None, progress: bool = False) -> None:
        self.backend, self.sandbox, self.make_job = backend, sandbox, make_job
        self.k, self.waves = k, wave_sizes(k, first_wave)
        self.sampling = dict(temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens)
        self.seed, self.progress = seed, progress
        self.cache: dict[ProbeKey, ProbeOutcome] = {}
        self.journal = journal
        if journal is not None and journal.exists():
            for row in read_jsonl(journal, repair=True):   # a torn last row is cut
                self.cache[(row["task_id"], tuple(row["prefix"]))] = ProbeOutcome(
                    row["first_pass"], row["completions"], row["executions"])
        self.replay: set[ProbeKey] = set()    # journalled, reported as probed when next asked

    def settle(self, asked: set[ProbeKey]) -> None:
        """`asked`: the probes the already labelled responses asked for. The other journalled
        probes (those of a chunk cut short) are reported as probed now when next asked, as they
        were when first asked, so a resumed collection charges the same costs."""
        self.replay = set(self.cache) - asked

    def resolve(self, requests: list[ProbeRequest]) -> tuple[dict[ProbeKey, ProbeOutcome],
                                                             set[ProbeKey]]:
        """Outcomes for all requests, and the keys that were probed now (not cached)."""
        todo: dict[ProbeKey, ProbeRequest] = {}
        for req in requests:
            if req.key not in self.cache:
                todo.setdefault(req.key, req)
        fresh = self._probe(list(todo.values()))
        self.cache.update(fresh)
        self._write_journal(fresh)
        replayed = {req.key for req in requests} & self.replay
        self.replay -= replayed
        return {req.key: self.cache[req.key] for req in requests}, set(fresh) | replayed

    def _probe(self, reqs: list[ProbeRequest]) -> dict[ProbeKey, ProbeOutcome]:
        first_pass: dict[ProbeKey, int | None] = {r.key: None for r in reqs}
        done = {r.key: 0 for r in reqs}
        open_reqs = reqs
        for wave, size in enumerate(self.waves):
            if not open_reqs:
                break
            samples = self.backend.generate(
                [r.prompt_ids + r.prefix_ids for r in open_reqs], n=size,
                seed=self._call_seed(open_reqs, wave), progress=self.progress, **self.sampling)
            jobs = [self.make_job(r.task, r.prompt_ids, r.prefix_ids, s.response_ids)
                    for r, group in zip(open_reqs, samples) for s in group]
            results = iter(self.sandbox.run(jobs))
            still_open = []
            for r in open_reqs:
                passed = [next(results).passed for _ in range(size)]
                if any(passed):
                    first_pass[r.key] = done[r.key] + passed.index(True)
                done[r.key] += size
                if first_pass[r.key] is None:
                    still_open.append(r)
            open_reqs = still_open
        return {key: ProbeOutcome(first_pass[key], done[key], done[key]) for key in first_pass}

    def _call_seed(self, reqs: list[ProbeRequest], wave: int) -> int:
        """A seed fixed by what is asked, so a resumed collection samples what it would have."""
        digest = zlib.crc32(repr([r.key for r in reqs]).encode())
        return (self.seed * 1_000_003 + digest + wave) % 2**31

    def _write_journal(self, fresh: dict[ProbeKey, ProbeOutcome]) -> None:
        if self.journal is None or not fresh:
            return
        append_jsonl(self.journal, [{"task_id": task_id, "prefix": list(prefix), **asdict(out)}
                                    for (task_id, prefix), out in fresh.items()])
