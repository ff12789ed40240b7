"""Array-level helpers on lists of TT cores (no autodiff): checks, dense reconstruction, sums.

A TT-tensor of shape (n_1..n_N) is a list of N 3-D arrays ``G_k`` of shape
``(r_{k-1}, n_k, r_k)`` with ``r_0 = r_N = 1``; a TT-matrix core has shape
``(r_{k-1}, m_k, n_k, r_k)``. These functions work on raw NumPy/CuPy arrays (through
``tinytt.backend.get_xp``) and are what the containers, tests and benchmarks build on.
"""

from __future__ import annotations

from .. import backend

__all__ = [
    "check_cores",
    "full_cores",
    "add_cores",
    "scale_cores",
    "random_cores",
    "tt_matrix_full_cores",
    "as_float_array",
]


def as_float_array(a, name: str = "a"):
    """``a`` as a floating backend array: float32/float64 keep their dtype, ints/bools -> float64.

    Raises TypeError for complex or non-numeric input.
    """
    if backend.is_tensor(a):
        a = a.data
    xp = backend.get_xp(a)
    if not hasattr(a, "dtype"):
        a = xp.asarray(a)
    kind = a.dtype.kind
    if kind == "f":
        if a.dtype.itemsize < 4:
            return a.astype(xp.float32)
        return a
    if kind in "iub":
        return a.astype(xp.float64)
    raise TypeError(f"{name} must be a real floating (or integer) array, got dtype {a.dtype}")


def check_cores(cores, ndim_core: int = 3, name: str = "cores") -> list:
    """Validate a TT core list and return it as a list of backend arrays.

    Checks: non-empty; each core has ``ndim_core`` axes (3 for TT-tensors, 4 for TT-matrices);
    ``cores[0].shape[0] == cores[-1].shape[-1] == 1``; ``cores[k].shape[-1] == cores[k+1].shape[0]``;
    one dtype (floating) and one backend. Raises ValueError/TypeError naming the offending core.
    """
    if isinstance(cores, (str, bytes)) or not hasattr(cores, "__len__"):
        raise TypeError(f"{name} must be a list of {ndim_core}-D arrays, got {type(cores).__name__}")
    cores = [c.data if backend.is_tensor(c) else c for c in cores]
    if len(cores) == 0:
        raise ValueError(f"{name} must contain at least one core")
    for k, c in enumerate(cores):
        if not hasattr(c, "shape") or not hasattr(c, "dtype"):
            raise TypeError(f"{name}[{k}] must be an array or Tensor, got {type(c).__name__}")
        if c.ndim != ndim_core:
            raise ValueError(
                f"{name}[{k}] must be {ndim_core}-D (r_prev, {'m, n' if ndim_core == 4 else 'n'}, "
                f"r_next), got shape {tuple(c.shape)}"
            )
        if c.dtype.kind != "f":
            raise TypeError(f"{name}[{k}] must have a floating dtype, got {c.dtype}")
        if c.dtype != cores[0].dtype:
            raise TypeError(
                f"all cores must share one dtype: {name}[0] is {cores[0].dtype}, "
                f"{name}[{k}] is {c.dtype}"
            )
        if any(s < 1 for s in c.shape):
            raise ValueError(f"{name}[{k}] has an empty axis: shape {tuple(c.shape)}")
    backend.get_xp(*cores)  # raises TypeError when NumPy and CuPy cores are mixed
    if cores[0].shape[0] != 1 or cores[-1].shape[-1] != 1:
        raise ValueError(
            f"boundary ranks must be 1: {name}[0].shape[0] = {cores[0].shape[0]}, "
            f"{name}[-1].shape[-1] = {cores[-1].shape[-1]}"
        )
    for k in range(len(cores) - 1):
        if cores[k].shape[-1] != cores[k + 1].shape[0]:
            raise ValueError(
                f"rank mismatch between {name}[{k}] (shape {tuple(cores[k].shape)}) and "
                f"{name}[{k + 1}] (shape {tuple(cores[k + 1].shape)}): "
                f"{cores[k].shape[-1]} != {cores[k + 1].shape[0]}"
            )
    return cores


def full_cores(cores):
    """Dense tensor of shape (n_1..n_N) from TT cores (r_{k-1}, n_k, r_k); C order.

    Contracts left to right; cost ``sum_{k>=2} (n_1..n_k) r_{k-1} r_k`` multiply-adds.
    """
    res = cores[0].reshape(-1, cores[0].shape[-1])
    for c in cores[1:]:
        res = res @ c.reshape(c.shape[0], -1)
        res = res.reshape(-1, c.shape[-1])
    return res.reshape(tuple(c.shape[1] for c in cores))


def tt_matrix_full_cores(cores):
    """Dense matrix (prod m, prod n) from TT-matrix cores (r_{k-1}, m_k, n_k, r_k); C order.

    Row ``i`` <-> digits ``unravel_index(i, (m_1..m_N))``, column likewise with (n_1..n_N).
    """
    n = len(cores)
    merged = [c.reshape(c.shape[0], c.shape[1] * c.shape[2], c.shape[3]) for c in cores]
    dense = full_cores(merged)
    inter = []
    for c in cores:
        inter += [c.shape[1], c.shape[2]]
    dense = dense.reshape(inter)
    perm = list(range(0, 2 * n, 2)) + list(range(1, 2 * n, 2))
    rows = 1
    for c in cores:
        rows *= c.shape[1]
    return dense.transpose(perm).reshape(rows, -1)


def add_cores(a, b):
    """Cores of the sum of two TT-tensors of equal shape; ranks add (``r_k^A + r_k^B``).

    First core: concatenation along the right rank; last: along the left rank; middle cores
    block-diagonal. Exact; cost O(sum_k (r^A + r^B)^2 n_k) memory and time.
    """
    xp = backend.get_xp(*a, *b)
    if len(a) == 1:
        return [a[0] + b[0]]
    out = []
    last = len(a) - 1
    for k, (x, y) in enumerate(zip(a, b)):
        if k == 0:
            out.append(xp.concatenate([x, y], axis=2))
        elif k == last:
            out.append(xp.concatenate([x, y], axis=0))
        else:
            z = xp.zeros((x.shape[0] + y.shape[0], x.shape[1], x.shape[2] + y.shape[2]), dtype=x.dtype)
            z[: x.shape[0], :, : x.shape[2]] = x
            z[x.shape[0] :, :, x.shape[2] :] = y
            out.append(z)
    return out


def scale_cores(cores, c):
    """Cores of ``c * A``: the first core is scaled, the others are shared (not copied)."""
    return [cores[0] * c] + list(cores[1:])


def random_cores(shape, ranks, seed=None, dtype="float64"):
    """Random TT cores with i.i.d. Gaussian entries scaled so the full tensor has unit variance.

    ``ranks`` is an int (every internal bond) or a list of N+1 ranks with boundary 1s. Core k
    has entries ~ N(0, 1 / sqrt(r_{k-1} r_k)), so every entry of the full tensor has variance
    exactly 1 in expectation. Created on the default backend with ``backend.default_rng(seed)``.
    """
    from .shapes import int_tuple, normalize_ranks

    if not hasattr(shape, "__iter__"):
        raise TypeError(f"shape must be a non-empty tuple of positive ints, got {shape!r}")
    shape = int_tuple(shape, "shape must be a non-empty tuple of positive ints")
    if not shape or min(shape) < 1:
        raise ValueError(f"shape must be a non-empty tuple of positive ints, got {shape!r}")
    ranks = normalize_ranks(ranks, len(shape), "ranks")
    rng = backend.default_rng(seed)
    xp = backend.get_xp()
    dtype = xp.dtype(dtype)
    if dtype not in (xp.float32, xp.float64):
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    cores = []
    for k, n in enumerate(shape):
        scale = (ranks[k] * ranks[k + 1]) ** -0.25
        g = rng.standard_normal((ranks[k], n, ranks[k + 1]), dtype=dtype)
        cores.append(g * dtype.type(scale))
    return cores
