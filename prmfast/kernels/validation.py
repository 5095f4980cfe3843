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


def check_cu_seqlens(cu_seqlens, n):
    """cu_seqlens: [S+1] int, starts at 0, non-decreasing, ends at n. Returns S."""
    check_int("cu_seqlens", cu_seqlens)
    if cu_seqlens.dim() != 1 or cu_seqlens.numel() < 1:
        raise ValueError(f"cu_seqlens must be 1-D with S+1 >= 1 entries, got shape {tuple(cu_seqlens.shape)}")
    first, last = cu_seqlens[0].item(), cu_seqlens[-1].item()
    if first != 0:
        raise ValueError(f"cu_seqlens must start at 0, got {first}")
    if cu_seqlens.numel() > 1 and bool((cu_seqlens[1:] < cu_seqlens[:-1]).any()):
        raise ValueError("cu_seqlens must be non-decreasing")
    if last != n:
        raise ValueError(f"cu_seqlens must end at N = {n} (the number of tokens), got {last}")
    return cu_seqlens.numel() - 1


def check_packed(cu_seqlens, floats=(), bools=(), per_seq_floats=(), per_seq_bools=()):
    """Validate a packed batch. Each group is a sequence of (name, tensor); token tensors are [N],
    per-sequence tensors [S]. N is taken from the first token tensor. Returns (N, S)."""
    token_tensors = list(floats) + list(bools)
    n = token_tensors[0][1].shape[0] if token_tensors and token_tensors[0][1].dim() == 1 else None
    for name, t in floats:
        check_float(name, t)
    for name, t in bools:
        check_bool(name, t)
    first_name, first = token_tensors[0]
    if first.dim() != 1:
        raise ValueError(f"{first_name} must be 1-D [N], got shape {tuple(first.shape)}")
    for name, t in token_tensors:
        check_shape(name, t, (n,))
    s = check_cu_seqlens(cu_seqlens, n)
    for name, t in per_seq_floats:
        check_float(name, t)
    for name, t in per_seq_bools:
        check_bool(name, t)
    for name, t in list(per_seq_floats) + list(per_seq_bools):
        check_shape(name, t, (s,))
    others = dict(token_tensors[1:] + list(per_seq_floats) + list(per_seq_bools) + [("cu_seqlens", cu_seqlens)])
    check_same_device(first_name, first, **others)
    return n, s


def check_coefficient(name, value, low=None, high=None):
    value = float(value)
    if value != value or (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be in [{low}, {high}], got {value}")
    return value
