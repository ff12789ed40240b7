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
