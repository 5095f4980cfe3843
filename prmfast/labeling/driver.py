"""Batched labelling: many binary searches advanced in lockstep, one probe batch per round.

Each round takes the next probe of every unfinished search, answers them all with one
`Prober.resolve` call (which batches generation and execution across responses and skips
prefixes already probed), and advances every search. A response's cost counts its probes, the
probes answered from the cache, and the completions and executions of the probes it was first to
ask for (a probe shared by several responses is charged once, to the first), so per-response
costs sum to the collection's total.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from prmfast.labeling.probe import Prober, ProbeRequest
from prmfast.labeling.search import BinarySearch, code_lines, line_labels, m_star, prefix_lines


@dataclass
class Response:
    """A sampled response to label. spans/is_comment come from prmfast.lines.segment."""
    key: str
    task: object                      # prmfast.data.Task
    prompt_ids: list[int]
    response_ids: list[int]
    spans: list[tuple[int, int]]      # per line: response token range [start, end)
    is_comment: list[bool]            # per line
    passed: bool

    def prefix_ids(self, point: int) -> list[int]:
        """Token ids of the prefix ending at code line `point` (0 = empty)."""
        n_lines = prefix_lines(self.is_comment, point)
        return self.response_ids[:self.spans[n_lines - 1][1]] if n_lines else []


@dataclass
class Cost:
    probes: int = 0
    cached: int = 0
    completions: int = 0
    executions: int = 0
    rounds: int = 0


@dataclass
class Labelled:
    first_bad: int | None     # search point (code lines in the first unrecoverable prefix)
    m_star: int | None        # 1-based line; 0 = unrecoverable from the start; None = passed
    labels: list[int]         # per line: +1 / -1 / 0
    probed: list[tuple[int, bool]] = field(default_factory=list)   # (point, recoverable)
    cost: Cost = field(default_factory=Cost)


def label_responses(responses: list[Response], prober: Prober,
                    on_round: Callable[[int, int], None] | None = None) -> list[Labelled]:
    """Label every response; same order. on_round(round, open searches) after each round.
    Response keys must be unique (ValueError naming the repeated key)."""
    seen: set[str] = set()
    for r in responses:
        if r.key in seen:
            raise ValueError(f"responses: key {r.key!r} appears more than once")
        seen.add(r.key)
    searches = {r.key: BinarySearch(len(code_lines(r.is_comment)))
                for r in responses if not r.passed}
    out = {r.key: Labelled(None, None, []) for r in responses}
    by_key = {r.key: r for r in responses}
    round_no = 0
    while open_keys := [key for key, s in searches.items() if not s.done]:
        asks = []
        for key in open_keys:
            resp, point = by_key[key], searches[key].next_probe()
            asks.append((key, point, ProbeRequest(resp.task, resp.prompt_ids,
                                                  resp.prefix_ids(point))))
        outcomes, fresh = prober.resolve([req for _, _, req in asks])
        for key, point, req in asks:
            outcome, cost = outcomes[req.key], out[key].cost
            searches[key].update(point, outcome.recoverable)
            out[key].probed.append((point, outcome.recoverable))
            cost.probes += 1
            cost.rounds = round_no + 1
            if req.key in fresh:
                fresh.discard(req.key)
                cost.completions += outcome.completions
                cost.executions += outcome.executions
            else:
                cost.cached += 1
        round_no += 1
        if on_round is not None:
            on_round(round_no, len(open_keys))
    for r in responses:
        first_bad = searches[r.key].first_bad if r.key in searches else None
        out[r.key].first_bad = first_bad
        out[r.key].m_star = m_star(r.is_comment, first_bad)
        out[r.key].labels = line_labels(r.is_comment, first_bad)
    return [out[r.key] for r in responses]
