"""Array backends: NumPy (CPU, the default) and CuPy (GPU).

This is the only module that knows CuPy exists. Everything else asks it for the
array namespace ``xp`` (``numpy`` or ``cupy``) and calls ``xp.*`` on its data, so
one code path runs on both.

The default backend is NumPy, or the one named by the environment variable
``TINYTT_BACKEND`` ("numpy" or "cupy") when tinytt is imported; ``set_backend``
changes it at run time. New arrays (parameters, random tensors) are created on
the default backend; operations on existing arrays follow the arrays
(``get_xp``), and mixing NumPy and CuPy arrays in one operation is an error.
"""

from __future__ import annotations

import math
import os
import sys

import numpy

__all__ = [
    "set_backend",
    "get_backend",
    "get_xp",
    "is_cupy_array",
    "is_tensor",
    "to_numpy",
    "to_device",
    "asarray",
    "scatter_add",
    "index_add",
    "svd",
    "qr",
    "default_rng",
    "synchronize",
    "cupy_available",
]

_BACKENDS = ("numpy", "cupy")
_state = {"name": "numpy", "xp": numpy}
_NDARRAY = numpy.ndarray
_SCALARS = (int, float, bool, complex)


def _import_cupy():
    """Import CuPy and check that a GPU is usable; raise RuntimeError with the reason otherwise."""
    try:
        import cupy  # noqa: PLC0415 - optional dependency, imported only on request
    except Exception as exc:  # ImportError, or a CUDA library failing to load
        raise RuntimeError(
            "backend 'cupy' requested but CuPy cannot be imported "
            f"({type(exc).__name__}: {exc}); install it with pip install 'tinytt[gpu]' "
            "on a machine with an NVIDIA GPU, or use the 'numpy' backend"
        ) from exc
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        raise RuntimeError(
            f"backend 'cupy' requested but no usable GPU was found ({type(exc).__name__}: {exc})"
        ) from exc
    if count < 1:
        raise RuntimeError("backend 'cupy' requested but no GPU is present")
    return cupy


def cupy_available() -> bool:
    """True when CuPy imports and at least one GPU is visible."""
    try:
        _import_cupy()
    except RuntimeError:
        return False
    return True


def set_backend(name: str) -> None:
    """Select the default backend for newly created arrays: ``"numpy"`` or ``"cupy"``.

    Raises ValueError for an unknown name and RuntimeError when CuPy or a GPU is missing.
    """
    if not isinstance(name, str) or name.lower() not in _BACKENDS:
        raise ValueError(f"backend name must be one of {_BACKENDS}, got {name!r}")
    name = name.lower()
    _state["xp"] = _import_cupy() if name == "cupy" else numpy
    _state["name"] = name


def get_backend() -> str:
    """Name of the default backend: ``"numpy"`` or ``"cupy"``."""
    return _state["name"]


def is_tensor(x) -> bool:
    """True for a ``tinytt.Tensor`` or a subclass (``Parameter``), without importing tensor.py."""
    return any(cls.__name__ == "Tensor" and cls.__module__ == "tinytt.tensor" for cls in type(x).__mro__)


def is_cupy_array(x) -> bool:
    """True for a ``cupy.ndarray``; never imports CuPy to find out."""
    cupy = sys.modules.get("cupy")
    return cupy is not None and isinstance(x, cupy.ndarray)


def get_xp(*arrays):
    """The array namespace (``numpy`` or ``cupy``) of the given arrays (or Tensors).

    Python scalars and None are ignored; with no arrays the default backend's
    namespace is returned. Raises TypeError when NumPy and CuPy arrays are mixed.
    """
    found = None
    for a in arrays:
        if isinstance(a, (_NDARRAY, numpy.generic)):  # numpy.float64 is also a Python float
            module = numpy
        elif a is None or isinstance(a, _SCALARS):
            continue
        else:
            if is_tensor(a):
                a = a.data
            if is_cupy_array(a):
                module = sys.modules["cupy"]
            elif isinstance(a, (_NDARRAY, numpy.generic)):
                module = numpy
            else:
                continue
        if found is None:
            found = module
        elif found is not module:
            raise TypeError(
                "arrays from different backends (NumPy and CuPy) were mixed in one operation; "
                "move them to one backend first with tinytt.to_device or tinytt.to_numpy"
            )
    return _state["xp"] if found is None else found


def to_numpy(x) -> numpy.ndarray:
    """``x`` (a Tensor, a CuPy or NumPy array, or a scalar) as a NumPy array on the host: a copy from the GPU, the same array (no copy) for NumPy data."""
    if is_tensor(x):
        x = x.data
    if is_cupy_array(x):
        return x.get()
    return numpy.asarray(x)


def to_device(x, dtype=None):
    """Move ``x`` to the default backend (a copy only when it lives elsewhere)."""
    if is_tensor(x):
        x = x.data
    xp = _state["xp"]
    if xp is numpy:
        return to_numpy(x) if dtype is None else to_numpy(x).astype(dtype, copy=False)
    return xp.asarray(x, dtype=dtype)


def asarray(x, dtype=None, xp=None):
    """``xp.asarray`` on the given namespace (default backend when None)."""
    return (xp or _state["xp"]).asarray(x, dtype=dtype)


def index_add(target, index, values) -> None:
    """In place ``target[index] += values`` where repeated indices all accumulate.

    NumPy: ``numpy.add.at``; CuPy: ``cupyx.scatter_add`` (atomic adds, so the
    float summation order is not fixed on the GPU). ``index`` may be any basic or
    advanced index. Used by the general ``getitem`` backward; hot paths use
    ``scatter_add``.
    """
    if is_cupy_array(target):
        import cupyx  # noqa: PLC0415

        cupyx.scatter_add(target, index, values)
    else:
        numpy.add.at(target, index, values)


#: ``scatter_add`` sums segments longer than this one at a time (when there are at most
#: ``_MAX_LONG_SEGMENTS`` of them) instead of in padded power-of-two buckets
_LONG_SEGMENT = 64
_MAX_LONG_SEGMENTS = 256


def _flat_rows(values, lead: tuple, rest: tuple):
    """``values`` (lead + rest) as rows ``(prod(lead),) + rest`` without copying, or None
    when that needs a copy (e.g. a broadcast gradient from a mean over the sequence)."""
    axes = [i for i, n in enumerate(lead) if n != 1]
    for i, j in zip(axes, axes[1:]):
        if values.strides[i] != values.strides[j] * lead[j]:
            return None
    return values.reshape((math.prod(lead),) + rest)


def scatter_add(indices, values, num_rows: int):
    """Segment sum of rows: ``out[i] = sum of values[k] over k with indices[k] == i``.

    Args:
        indices: integer array of any shape S, each in [0, num_rows).
        values: array of shape S + rest (any strides: a broadcast array is read in
            place, not copied).
        num_rows: number of output rows.
    Returns:
        array of shape (num_rows, *rest) with ``values.dtype``.

    Deterministic on NumPy, and several times faster than ``numpy.add.at``: rows
    are sorted by index (stable), segments are grouped by length into
    power-of-two buckets, and each bucket is gathered as a padded
    (segments, width, *rest) block and summed over the width axis (segments longer
    than 64 are gathered and summed one by one), so repeated
    indices are always added in the order they appear. When every output row
    occurs (the distinct rows of a lookup), one take of each row's first value
    initialises the output instead of a zero-fill. Cost O(K log K) for the
    sort (skipped when the indices are already non-decreasing) plus at most 2K
    gathered rows. CuPy uses ``cupyx.scatter_add`` (atomic
    adds: the summation order is not fixed there).
    """
    xp = get_xp(indices, values)
    lead = tuple(indices.shape)
    if tuple(values.shape[:len(lead)]) != lead:
        raise ValueError(f"scatter_add: values of shape {tuple(values.shape)} must start with the "
                         f"indices' shape {lead}")
    rest = tuple(values.shape[len(lead):])
    indices = indices.reshape(-1)
    if indices.shape[0] == 0 or xp is not numpy:
        out = xp.zeros((num_rows,) + rest, dtype=values.dtype)
        if indices.shape[0]:
            index_add(out, indices, values.reshape((-1,) + rest))
        return out
    flat = _flat_rows(values, lead, rest)

    def rows_at(positions):
        """values' rows at flat positions (an int array of any shape, or a slice)."""
        if isinstance(positions, slice):
            if flat is not None:
                return flat[positions]
            positions = numpy.arange(positions.start, positions.stop)
        if flat is not None:
            return numpy.take(flat, positions, axis=0)
        return values[numpy.unravel_index(positions, lead)]

    counts = numpy.bincount(indices, minlength=num_rows)
    starts = numpy.cumsum(counts) - counts
    # position of the j-th row of segment k is order[starts[k] + j]; no sort when already grouped
    grouped = indices.shape[0] < 2 or bool((indices[1:] >= indices[:-1]).all())
    # (16-bit keys when they fit: NumPy's stable sort is then a radix sort, ~4x faster)
    keys = indices.astype(numpy.uint16) if num_rows <= 1 << 16 else indices
    order = None if grouped else numpy.argsort(keys, kind="stable")
    width, largest = 1, int(counts.max())
    if counts.shape[0] == num_rows and int(counts.min()) > 0:
        # every row occurs: one contiguous take of each row's first value fills the output
        # (no zero-fill); rows that occur more than once are overwritten by their sums below
        out = rows_at(starts if order is None else order[starts])
        width = 2
    else:
        out = numpy.zeros((num_rows,) + rest, dtype=values.dtype)
    # long segments (frequent ids: padding, "the") are summed one by one, without padding
    heavy = numpy.flatnonzero(counts > _LONG_SEGMENT)
    if 0 < heavy.shape[0] <= _MAX_LONG_SEGMENTS:
        for k in heavy.tolist():
            span = slice(int(starts[k]), int(starts[k] + counts[k]))
            out[k] = rows_at(span if order is None else order[span]).sum(axis=0)
        largest = _LONG_SEGMENT
    while width // 2 < largest:
        members = numpy.flatnonzero((counts > width // 2) & (counts <= width))
        if members.size:
            first = starts[members]
            if width == 1:
                out[members] = rows_at(first if order is None else order[first])
            else:
                offsets = numpy.arange(width)
                valid = offsets < counts[members][:, None]
                positions = numpy.where(valid, first[:, None] + offsets, first[:, None])
                block = rows_at(positions if order is None else order[positions])
                # zero the padding slots (assignment, not a multiply: inf * 0 would be nan)
                block[~valid] = 0
                out[members] = block.sum(axis=1)
        width *= 2
    return out


def svd(a):
    """Thin SVD ``a = u @ diag(s) @ vt`` with ``full_matrices=False`` on the array's backend.

    a: (m, n) -> u (m, k), s (k,), vt (k, n) with k = min(m, n); cost O(m n k).
    """
    xp = get_xp(a)
    return xp.linalg.svd(a, full_matrices=False)


def qr(a):
    """Reduced QR ``a = q @ r`` on the array's backend: (m, n) -> q (m, k), r (k, n), k = min(m, n)."""
    xp = get_xp(a)
    return xp.linalg.qr(a, mode="reduced")


def default_rng(seed=None):
    """A random generator on the default backend (``numpy.random.default_rng`` or CuPy's).

    ``seed`` may be None, an int or a NumPy Generator; CuPy cannot take a NumPy Generator,
    so there an int seed is drawn from it first."""
    xp = _state["xp"]
    if xp is not numpy and isinstance(seed, numpy.random.Generator):
        seed = int(seed.integers(0, 2**63 - 1))
    return xp.random.default_rng(seed)


def synchronize(x=None) -> None:
    """Wait for queued GPU work (a no-op on NumPy); benchmarks call it around timings."""
    if _state["name"] == "cupy" or is_cupy_array(x):
        sys.modules["cupy"].cuda.Device().synchronize()


def _init_from_env() -> None:
    name = os.environ.get("TINYTT_BACKEND", "").strip()
    if name:
        set_backend(name)


_init_from_env()
