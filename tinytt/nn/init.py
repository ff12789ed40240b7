"""Parameter initialisers. Values are drawn on the host with ``numpy.random.default_rng(seed)``
(so a seed gives the same numbers on every backend), cast to ``dtype`` and moved to the
default backend.
"""

from __future__ import annotations

import math

import numpy

from .._validate import check_seed
from ..backend import to_device

__all__ = ["glorot_uniform", "he_normal", "uniform", "normal", "zeros", "ones", "make_rng"]


def make_rng(seed):
    """A host ``numpy.random.Generator``: ``seed`` may be None, an int >= 0 or a Generator
    (ValueError naming ``seed`` otherwise)."""
    if isinstance(seed, numpy.random.Generator):
        return seed
    return numpy.random.default_rng(check_seed("", seed))


def _finish(values, dtype):
    return to_device(numpy.asarray(values).astype(numpy.dtype(dtype), copy=False))


def uniform(shape, low, high, dtype="float32", rng=None):
    """U(low, high) entries."""
    return _finish(make_rng(rng).uniform(low, high, size=shape), dtype)


def normal(shape, std=1.0, dtype="float32", rng=None):
    """N(0, std^2) entries."""
    return _finish(make_rng(rng).standard_normal(size=shape) * std, dtype)


def glorot_uniform(fan_in: int, fan_out: int, shape=None, dtype="float32", rng=None):
    """Glorot/Xavier uniform: U(-a, a) with a = sqrt(6 / (fan_in + fan_out)); Var = 2 / (fan_in + fan_out)."""
    a = math.sqrt(6.0 / (fan_in + fan_out))
    return uniform(shape or (fan_in, fan_out), -a, a, dtype, rng)


def he_normal(fan_in: int, fan_out: int, shape=None, dtype="float32", rng=None):
    """He/Kaiming normal: N(0, 2 / fan_in)."""
    return normal(shape or (fan_in, fan_out), math.sqrt(2.0 / fan_in), dtype, rng)


def zeros(shape, dtype="float32"):
    """Zeros of ``shape`` and ``dtype`` on the current backend (biases)."""
    return _finish(numpy.zeros(shape), dtype)


def ones(shape, dtype="float32"):
    """Ones of ``shape`` and ``dtype`` on the current backend."""
    return _finish(numpy.ones(shape), dtype)
