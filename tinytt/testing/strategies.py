"""Hypothesis strategies for testing tensor code against tinytt (needs ``hypothesis``).

Importable by other projects: ``from tinytt.testing.strategies import float_arrays``.
All arrays are NumPy arrays on the host; move them to a device yourself.

- ``shapes``: array shapes with bounded sides;
- ``broadcastable_shapes``: a tuple of mutually broadcastable shapes;
- ``float_arrays``: finite float arrays with |value| <= bound;
- ``tt_shapes`` / ``tt_ranks``: mode sizes and a valid TT rank chain (boundary ranks 1);
- ``tt_matrix_shapes``: (row_shape, col_shape) pairs of equal length.
"""

from __future__ import annotations

import numpy
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

__all__ = ["shapes", "broadcastable_shapes", "float_arrays", "tt_shapes", "tt_ranks", "tt_matrix_shapes"]


def shapes(min_dims: int = 0, max_dims: int = 4, min_side: int = 1, max_side: int = 5):
    """Strategy for shape tuples with ``min_dims..max_dims`` axes of size ``min_side..max_side``."""
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side)


def broadcastable_shapes(num_shapes: int = 2, min_dims: int = 0, max_dims: int = 4,
                         min_side: int = 1, max_side: int = 5):
    """Strategy for a tuple of ``num_shapes`` shapes that broadcast together (size-1 dims included)."""
    return hnp.mutually_broadcastable_shapes(
        num_shapes=num_shapes, min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side
    ).map(lambda r: r.input_shapes)


def float_arrays(shape, dtype=numpy.float64, bound: float = 5.0):
    """Strategy for arrays of ``shape`` (a tuple or a strategy) with finite values in [-bound, bound].

    For float32 the bound is rounded down to a float32 value (hypothesis needs bounds that
    the element width represents exactly).
    """
    if not bound > 0 or not numpy.isfinite(bound):
        raise ValueError(f"float_arrays: bound must be a positive finite number, got {bound!r}")
    width = 32 if numpy.dtype(dtype) == numpy.float32 else 64
    if width == 32:
        b32 = numpy.float32(bound)
        bound = float(b32 if b32 <= bound else numpy.nextafter(b32, numpy.float32(0)))
    elements = st.floats(-bound, bound, allow_nan=False, allow_infinity=False, width=width)
    return hnp.arrays(dtype=dtype, shape=shape, elements=elements)


def _check_at_least_one(**values) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1 (a TT has at least one mode of size >= 1), got {value!r}")


def tt_shapes(min_order: int = 1, max_order: int = 6, min_mode: int = 1, max_mode: int = 6):
    """Strategy for TT mode sizes ``(n_1, ..., n_N)``: N in min_order..max_order, each mode
    in min_mode..max_mode (all at least 1)."""
    _check_at_least_one(min_order=min_order, min_mode=min_mode)
    return st.lists(st.integers(min_mode, max_mode), min_size=min_order, max_size=max_order).map(tuple)


@st.composite
def tt_ranks(draw, order: int, max_rank: int = 5):
    """Strategy for a rank chain ``(1, r_1, ..., r_{N-1}, 1)`` with internal ranks in 1..max_rank."""
    inner = draw(st.lists(st.integers(1, max_rank), min_size=order - 1, max_size=order - 1))
    return (1, *inner, 1)


@st.composite
def tt_matrix_shapes(draw, min_order: int = 1, max_order: int = 4, max_mode: int = 5):
    """Strategy for ``(row_shape, col_shape)`` of one length N in min_order..max_order, modes
    in 1..max_mode."""
    _check_at_least_one(min_order=min_order, max_mode=max_mode)
    n = draw(st.integers(min_order, max_order))
    rows = tuple(draw(st.lists(st.integers(1, max_mode), min_size=n, max_size=n)))
    cols = tuple(draw(st.lists(st.integers(1, max_mode), min_size=n, max_size=n)))
    return rows, cols
