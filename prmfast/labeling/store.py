"""Label records on disk: chunked labelling with resume, the summary (files: prmfast.runio).

labels.jsonl holds one record per labelled response, appended a chunk at a time; responses
whose key is already there are skipped, so an interrupted run continues where it stopped.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path

from tqdm import tqdm

from prmfast.labeling.driver import Labelled, Response, label_responses
from prmfast.labeling.probe import Prober
from prmfast.labeling.select import SELECTIONS
from prmfast.runio import append_jsonl, read_jsonl


def chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def label_into(path: Path, responses: list[Response], prober: Prober, chunk_size: int,
               extra: Callable[[Response], dict], bar: tqdm | None = None) -> None:
    """Label the responses not yet in `path` in chunks, appending one record per response.
    A record torn by a hard kill mid-append is cut from the file first (runio.read_jsonl with
    repair), so the records appended after it stay readable. The prober learns which journalled probes the
    labelled responses asked for (Prober.settle), so a resumed chunk's costs are unchanged."""
    records = read_jsonl(path, repair=True)
    done = {rec["key"] for rec in records}
    by_key = {r.key: r for r in responses}
    prober.settle({(resp.task.task_id, tuple(resp.prefix_ids(point)))
                   for rec in records if (resp := by_key.get(rec["key"])) is not None
                   for point, _ in rec["probed"]})
    todo = [r for r in responses if r.key not in done]
    for chunk in chunks(todo, chunk_size):
        start = time.perf_counter()
        on_round = None if bar is None else \
            lambda rnd, n_open: bar.set_postfix(round=rnd, searching=n_open, refresh=True)
        labelled = label_responses(chunk, prober, on_round=on_round)
        wall = (time.perf_counter() - start) / len(chunk)
        append_jsonl(path, [make_record(resp, lab, wall) | extra(resp)
                            for resp, lab in zip(chunk, labelled)])
        if bar is not None:
            bar.update(len(chunk))


def make_record(resp: Response, lab: Labelled, label_wall_s: float) -> dict:
    return {"key": resp.key, "task_id": resp.task.task_id, "prompt": resp.task.prompt,
            "prompt_ids": resp.prompt_ids, "response_ids": resp.response_ids,
            "line_spans": resp.spans, "is_comment": resp.is_comment, "labels": lab.labels,
            "m_star": lab.m_star, "first_bad": lab.first_bad,
            "n_good": sum(1 for x in lab.labels if x > 0), "passed": resp.passed,
            "unrecoverable_from_start": lab.first_bad == 0, "probed": lab.probed,
            "cost": asdict(lab.cost), "label_wall_s": label_wall_s}


def summarize(records: list[dict]) -> dict:
    """Counts, label balance, cost and throughput over labels.jsonl records."""
    n = len(records)
    failed = [r for r in records if not r["passed"]]
    labels = [x for r in records for x in r["labels"]]
    wall = sum(r["label_wall_s"] + r.get("sample_wall_s", 0.0) for r in records)
    label_wall = sum(r["label_wall_s"] for r in records)
    cost = {key: sum(r["cost"][key] for r in records)
            for key in ("probes", "cached", "completions", "executions")}
    per = lambda total, rows: total / len(rows) if rows else 0.0   # noqa: E731
    by_ckpt: dict[str, int] = {}
    for r in records:
        by_ckpt[r["checkpoint"]] = by_ckpt.get(r["checkpoint"], 0) + 1
    return {
        "responses": n, "passed": n - len(failed), "failed": len(failed),
        "unrecoverable_from_start": sum(r["unrecoverable_from_start"] for r in records),
        "per_checkpoint": by_ckpt,
        "selection_counts": {m: sum(map(f, records)) for m, f in SELECTIONS.items()},
        "labels": {"pos": labels.count(1), "neg": labels.count(-1), "neutral": labels.count(0)},
        "cost_total": cost,
        "per_response": {k: per(v, records) for k, v in cost.items()},
        "per_failed_response": {k: per(sum(r["cost"][k] for r in failed), failed) for k in cost},
        "wall_s": wall, "label_wall_s": label_wall,
        "responses_per_min": 60.0 * n / wall if wall else 0.0,
        "executions_per_s": cost["executions"] / label_wall if label_wall else 0.0,
    }
