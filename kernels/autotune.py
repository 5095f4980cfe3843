"""Autotune configurations: several on a GPU, exactly one under TRITON_INTERPRET=1 (the
interpreter cannot benchmark several configs)."""
import os

import triton

INTERPRETING = os.environ.get("TRITON_INTERPRET") == "1"


def configs(gpu_options, interpreter_option):
    """gpu_options / interpreter_option: dicts of meta-parameters (num_warps optional)."""
    chosen = [interpreter_option] if INTERPRETING else gpu_options
    out = []
    for option in chosen:
        meta = {k: v for k, v in option.items() if k != "num_warps"}
        out.append(triton.Config(meta, num_warps=option.get("num_warps", 4)))
    return out
