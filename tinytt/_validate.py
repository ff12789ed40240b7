"""Argument checks shared by public functions: each returns the value in a plain Python type or
raises ValueError naming ``where: name`` and the expected form, so bad input fails at the call
rather than later, deep inside NumPy."""

from __future__ import annotations

import math
import numbers
import operator

import numpy

__all__ = ["as_int", "int_arg", "number_arg"]


def as_int(value):
    """``value`` as a Python int when it is an int, NumPy integer or 0-d integer array (not a
    bool: True is no index), else None."""
    if isinstance(value, (bool, numpy.bool_)):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def int_arg(where: str, name: str, value, low: int = 1) -> int:
    """``value`` (an int, NumPy integer or 0-d integer array; not a bool) as an int >= ``low``."""
    out = as_int(value)
    if out is None or out < low:
        raise ValueError(f"{where}: {name} must be an int >= {low}, got {value!r}")
    return out


def number_arg(where: str, name: str, value, low: float = 0.0, positive: bool = False) -> float:
    """``value`` (a real number, not a bool) as a finite float >= ``low`` (> ``low`` with
    ``positive``)."""
    if isinstance(value, (bool, numpy.bool_)) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
            or value < low or (positive and value == low):
        raise ValueError(f"{where}: {name} must be a finite number {'>' if positive else '>='} {low}, got {value!r}")
    return float(value)


def check_seed(where: str, seed):
    """``seed`` unchanged when ``numpy.random.default_rng`` may take it as a seed: None, an int
    >= 0, a Generator, a SeedSequence ...; ValueError naming ``where`` for bools, strings,
    bytes, negative ints and non-integral numbers (NumPy's own errors there do not say which
    argument was wrong, and True would silently be seed 1). An empty ``where`` adds no prefix."""
    if isinstance(seed, (bool, numpy.bool_, str, bytes)) or (
            isinstance(seed, numbers.Real) and (not isinstance(seed, numbers.Integral) or seed < 0)):
        raise ValueError(f"{where + ': ' if where else ''}seed must be None, an int >= 0, a numpy.random.Generator or anything "
                         f"numpy.random.default_rng takes, got {seed!r}")
    return seed


def bool_arg(where: str, name: str, value) -> bool:
    """``value`` (a bool or NumPy bool) as a bool; TypeError naming it otherwise (a string such
    as "False" is truthy, so it would silently mean True)."""
    if not isinstance(value, (bool, numpy.bool_)):
        raise TypeError(f"{where}: {name} must be a bool, got {value!r}")
    return bool(value)
