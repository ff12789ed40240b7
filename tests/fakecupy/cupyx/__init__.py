"""FAKE cupyx: scatter_add / scatter_max / scatter_min (unbuffered, like CuPy) and pinned helpers."""
import numpy as _np

import cupy as _cp


def scatter_add(a, slices, value):
    """``a[slices] += value`` with repeated indices accumulating (cupyx.scatter_add)."""
    _cp._scatter(a, slices, value, _np.add)


def scatter_max(a, slices, value):
    _cp._scatter(a, slices, value, _np.maximum)


def scatter_min(a, slices, value):
    _cp._scatter(a, slices, value, _np.minimum)


def empty_pinned(shape, dtype=float, order="C"):
    return _np.empty(shape, dtype=dtype, order=order)


def zeros_pinned(shape, dtype=float, order="C"):
    return _np.zeros(shape, dtype=dtype, order=order)


def empty_like_pinned(a, dtype=None, order="K", subok=None, shape=None):
    return _np.empty_like(a, dtype=dtype, order=order, shape=shape)


def zeros_like_pinned(a, dtype=None, order="K", subok=None, shape=None):
    return _np.zeros_like(a, dtype=dtype, order=order, shape=shape)


def get_array_module(*args):
    return _cp.get_array_module(*args)
