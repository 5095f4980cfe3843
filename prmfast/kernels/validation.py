"""Input checks shared by every impl: a clear ValueError naming the offending argument.

Checks are on metadata (shapes, dtypes, devices) plus one small reduction over cu_seqlens; values
are never scanned for NaN (see docs/kernels.md, "NaN policy")."""
import torch

_INT_DTYPES = (torch.int32, torch.int64)


def check_float(name, t):
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if not t.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")


def check_bool(name, t):
    if not isinstance(t, torch.Tensor) or t.dtype != torch.bool:
        got = t.dtype if isinstance(t, torch.Tensor) else type(t).__name__
        raise ValueError(f"{name} must be a bool tensor, got {got}")


def check_int(name, t):
    if not isinstance(t, torch.Tensor) or t.dtype not in _INT_DTYPES:
        got = t.dtype if isinstance(t, torch.Tensor) else type(t).__name__
        raise ValueError(f"{name} must be an int32/int64 tensor, got {got}")


def check_shape(name, t, shape):
    if tuple(t.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(t.shape)}")


def check_same_device(ref_name, ref, **tensors):
    for name, t in tensors.items():
        if t.device != ref.device:
            raise ValueError(f"{name} is on {t.device} but {ref_name} is on {ref.device}")


def check_cu_seqlens(cu_seqlens):
    """cu_seqlens: [S+1] int, starts at 0, non-decreasing. Returns (N, S), N = cu_seqlens[-1]."""
    check_int("cu_seqlens", cu_seqlens)
    if cu_seqlens.dim() != 1 or cu_seqlens.numel() < 1:
        raise ValueError(f"cu_seqlens must be 1-D with S+1 >= 1 entries, got shape {tuple(cu_seqlens.shape)}")
    first = cu_seqlens[0].item()
    if first != 0:
        raise ValueError(f"cu_seqlens must start at 0, got {first}")
    if cu_seqlens.numel() > 1 and bool((cu_seqlens[1:] < cu_seqlens[:-1]).any()):
        raise ValueError("cu_seqlens must be non-decreasing")
    return int(cu_seqlens[-1].item()), cu_seqlens.numel() - 1


def check_packed(cu_seqlens, floats=(), bools=(), per_seq_floats=(), per_seq_bools=()):
    """Validate a packed batch. Each group is a sequence of (name, tensor); token tensors are [N],
    per-sequence tensors [S]. A token tensor whose length is not cu_seqlens[-1] is named, unless
    they all agree and cu_seqlens does not. Returns (N, S)."""
    for name, t in floats:
        check_float(name, t)
    for name, t in bools:
        check_bool(name, t)
    for name, t in per_seq_floats:
        check_float(name, t)
    for name, t in per_seq_bools:
        check_bool(name, t)
    token_tensors = list(floats) + list(bools)
    for name, t in token_tensors:
        if t.dim() != 1:
            raise ValueError(f"{name} must be 1-D [N], got shape {tuple(t.shape)}")
    n, s = check_cu_seqlens(cu_seqlens)
    lengths = {t.shape[0] for _, t in token_tensors}
    if len(lengths) == 1 and n not in lengths:
        raise ValueError(f"cu_seqlens must end at N = {lengths.pop()} (the number of tokens), "
                         f"got {n}")
    for name, t in token_tensors:
        check_shape(name, t, (n,))
    for name, t in list(per_seq_floats) + list(per_seq_bools):
        check_shape(name, t, (s,))
    first_name, first = token_tensors[0]
    others = dict(token_tensors[1:] + list(per_seq_floats) + list(per_seq_bools) + [("cu_seqlens", cu_seqlens)])
    check_same_device(first_name, first, **others)
    return n, s


def check_coefficient(name, value, low=None, high=None):
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if value != value:
        raise ValueError(f"{name} must be a number, got nan")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be in [{low}, {high}], got {value}")
    return value


def check_count(name, value):
    """A positive whole number (an int, or a float or numpy scalar that is one) -> int."""
    try:
        whole = int(value) == value and value >= 1
    except (TypeError, ValueError, OverflowError):
        whole = False
    if not whole:
        raise ValueError(f"{name} must be a positive int or None, got {value!r}")
    return int(value)
