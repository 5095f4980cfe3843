"""Evaluation: estimators, one policy on a task list, the pipeline's eval stage, the benchmark CLI.

    estimators  pass_at_k, mean_pass_at_k, best_of_k_curve, bucket_rates, length_bucket,
                paired_bootstrap (pure numpy)
    policy      evaluate_policy(backend, tokenizer, tasks, sandbox, ...) -> summary
    stage       run_eval(cfg, DIR): the pipeline's eval stage (DIR/eval.json)
    benchmarks  `python -m prmfast.eval --model PATH --tasks ...`: a model on the real benchmarks
"""
from prmfast.eval.estimators import (best_of_k_curve, bucket_rates, length_bucket,
                                     mean_pass_at_k, paired_bootstrap, pass_at_k)
from prmfast.eval.policy import evaluate_policy

__all__ = ["best_of_k_curve", "bucket_rates", "evaluate_policy", "length_bucket",
           "mean_pass_at_k", "paired_bootstrap", "pass_at_k"]
