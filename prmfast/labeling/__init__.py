"""Binary-search PRM labelling (paper Algorithm 1), batched across responses.

search   the model-free search, labels and m* (pure)
probe    best-of-K probing of prefixes in waves, with a cache (one policy)
driver   many searches in lockstep, one probe batch per round
select   data selection modes for PRM training
store    labels.jsonl records, chunked labelling with resume, summary
quality  binary search vs exhaustive scan vs oracle
policy   checkpoints and the per-checkpoint prober (needs models, rollout, sandbox)
collect  the "collect" stage
"""
from prmfast.labeling.driver import Labelled, Response, label_responses
from prmfast.labeling.probe import Prober, ProbeOutcome, ProbeRequest
from prmfast.labeling.search import BinarySearch, binary_search, line_labels, m_star
from prmfast.labeling.select import SELECTIONS, keeps_passing, select

__all__ = ["BinarySearch", "Labelled", "ProbeOutcome", "ProbeRequest", "Prober", "Response",
           "SELECTIONS", "binary_search", "keeps_passing", "label_responses", "line_labels", "m_star",
           "select"]
