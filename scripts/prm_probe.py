"""Experiment: how well does a frozen pretrained backbone separate right from wrong lines?

Fits a ridge-regression head on the backbone's last hidden state at each line end, using the
binary-search labels of a run's collection (training split of prmfast.prm.split_by_task), and
reranks the run's cached best-of-N test samples with it, next to the score-free baselines.
The backbone keeps its own tokenizer: each line end is the backbone token that holds the line's
newline (texts are decoded with the run's tokenizer). Not part of the pipeline; docs/prm.md
("A pretrained backbone") has the figures.

    python scripts/prm_probe.py RUN_DIR BACKBONE [--labels LABELS.jsonl] [--seeds 0 1 2]
        [--ridge 1 10 100 1000]

RUN_DIR needs tokenizer/, prm_data/labels.jsonl (or --labels) and prm/rerank_samples.jsonl
(written by `python -m prmfast.train prm`); BACKBONE is an HF folder or a .gguf file.
"""
import argparse
import collections
import json
import sys
from pathlib import Path

import torch
from tqdm import tqdm
from transformers import AutoTokenizer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from prmfast import prm as P  # noqa: E402
from prmfast.config import PRMConfig  # noqa: E402
from prmfast.lines import segment  # noqa: E402
from prmfast.models.policy import load_policy  # noqa: E402


def line_end_tokens(tokenizer, run_tokenizer, prompt_ids, response_ids, spans):
    """-> (input_ids [1, T] in the backbone's tokenization of prompt + response, the index of the
    token holding each response line's newline, or its last character when it has none).
    spans are the lines' token spans in the run's tokenization."""
    prompt = run_tokenizer.decode(prompt_ids)
    lines = [run_tokenizer.decode(response_ids[a:b]) for a, b in spans]
    enc = tokenizer(prompt + "".join(lines), return_offsets_mapping=True, return_tensors="pt")
    starts = [s for s, _ in enc["offset_mapping"][0].tolist()]
    ends, offset = [], len(prompt)
    for text in lines:
        char = offset + len(text.rstrip(" ")) - 1       # the newline, before the next indent
        ends.append(max(i for i, s in enumerate(starts) if s <= char))
        offset += len(text)
    return enc["input_ids"], ends


def line_end_states(model, input_ids, ends):
    """-> [lines, H] float64: the backbone's last hidden state at the line-end tokens."""
    with torch.no_grad():
        hidden = model(input_ids, output_hidden_states=True).hidden_states[-1][0]
    return hidden[ends].double()


def fit_ridge(features, targets, ridge):
    """features [M, H], targets [M] -> score function of standardised features (with bias)."""
    mean, std = features.mean(0), features.std(0) + 1e-6
    design = lambda f: torch.cat([(f - mean) / std, torch.ones(len(f), 1, dtype=f.dtype)], 1)
    x = design(features)
    w = torch.linalg.solve(x.T @ x + ridge * torch.eye(x.shape[1], dtype=x.dtype), x.T @ targets)
    return lambda f: (design(f) @ w).tolist()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("backbone")
    parser.add_argument("--labels", type=Path, help="default: RUN_DIR/prm_data/labels.jsonl")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="split seeds")
    parser.add_argument("--ridge", type=float, nargs="+", default=[1.0, 10.0, 100.0, 1000.0])
    args = parser.parse_args()
    run_tokenizer = AutoTokenizer.from_pretrained(args.run_dir / "tokenizer")
    model, tokenizer = load_policy(args.backbone)
    model.eval()
    read = lambda path: [json.loads(x) for x in Path(path).read_text().splitlines() if x.strip()]
    records = read(args.labels or args.run_dir / "prm_data" / "labels.jsonl")
    samples = read(args.run_dir / "prm" / "rerank_samples.jsonl")
    states = lambda r, spans: line_end_states(model, *line_end_tokens(
        tokenizer, run_tokenizer, r["prompt_ids"], r["response_ids"], spans))
    record_states = {r["key"]: states(r, r["line_spans"])
                     for r in tqdm(records, desc="collection")}
    sample_states = [states(r, segment(r["response_ids"], run_tokenizer).spans)
                     for r in tqdm(samples, desc="test samples")]
    keys = collections.defaultdict(list)
    for r in samples:
        keys[r["task_id"]].append(tuple(r["response_ids"]))
    for seed in args.seeds:
        train, _ = P.split_by_task(records, PRMConfig().val_fraction, seed)
        features = torch.cat([record_states[r["key"]] for r in train])
        targets = torch.tensor([t for r in train
                                for t in P.comment_targets(r["labels"], r["is_comment"])],
                               dtype=torch.float64)
        for ridge in args.ridge:
            score = fit_ridge(features, targets, ridge)
            groups = collections.defaultdict(list)
            for r, s in zip(samples, sample_states):
                groups[r["task_id"]].append((r["passed"], score(s)))
            out = P.rerank(list(groups.values()), [keys[t] for t in groups])
            print(json.dumps({"seed": seed, "ridge": ridge, "train_responses": len(train),
                              "lines": len(targets)}
                             | {k: round(v, 3) for k, v in out.items() if isinstance(v, float)}),
                  flush=True)


if __name__ == "__main__":
    main()
