"""Tools for testing tinytt and code built on it: gradient checks, tolerances, backends.

``check_grads`` compares reverse-mode gradients with central finite differences;
``assert_close`` applies the project's dtype-aware tolerances;
``available_backends`` lists the backends usable on this machine. Hypothesis
strategies live in ``tinytt.testing.strategies`` (imported separately, so that
hypothesis stays a test-only dependency).
"""

from __future__ import annotations

import math
import numbers

import numpy

from ..backend import cupy_available, get_xp, to_numpy
from ..tensor import Tensor, no_grad
from .reference import reference_cases

__all__ = ["check_grads", "assert_close", "tolerances", "available_backends", "TOLERANCES", "reference_cases"]

#: (rtol, atol) by dtype: float64 for exact algebra, float32 for single-precision results.
TOLERANCES = {"float64": (1e-10, 1e-12), "float32": (1e-4, 1e-5)}


def tolerances(dtype) -> tuple:
    """The project's (rtol, atol) for results of ``dtype`` (float32 or float64)."""
    name = numpy.dtype(dtype).name
    if name not in TOLERANCES:
        raise ValueError(f"tolerances: no tolerance defined for dtype {name}; expected float32 or float64")
    return TOLERANCES[name]


def assert_close(actual, expected, dtype=None, rtol=None, atol=None, err_msg: str = "",
                 equal_nan: bool = False) -> None:
    """Assert ``|actual - expected| <= atol + rtol |expected|`` elementwise (shapes must match).

    ``actual``/``expected`` may be Tensors, NumPy or CuPy arrays, or scalars; their shapes
    must be equal (no broadcasting: a scalar matches only a 0-d array). The tolerances
    default to ``tolerances(dtype)`` where dtype defaults to the coarser of the two inputs'
    float dtypes (float16 has none: pass ``rtol``/``atol``); two integer or bool inputs
    must be equal exactly. NaN equals NaN only with ``equal_nan=True``.
    """
    a = to_numpy(actual)
    e = to_numpy(expected)
    if a.shape != e.shape:
        raise AssertionError(f"assert_close: shapes differ: actual {a.shape}, expected {e.shape}. {err_msg}")
    if dtype is None:
        kinds = [numpy.dtype(numpy.finfo(x.dtype).dtype) for x in (a, e) if x.dtype.kind in "fc"]
        if not kinds and rtol is None and atol is None:
            # integers and bools: exact, compared as integers (through float64, 2**53 + 1
            # would equal 2**53)
            if not numpy.array_equal(a, e):
                bad = numpy.flatnonzero(a.reshape(-1) != e.reshape(-1))
                raise AssertionError(f"assert_close: integer arrays differ at {bad.size} of {a.size} positions "
                                     f"(first at flat index {int(bad[0])}: {a.reshape(-1)[bad[0]]!r} != "
                                     f"{e.reshape(-1)[bad[0]]!r}). {err_msg}")
            return
        if not kinds:
            dtype, default_rtol, default_atol = None, 0.0, 0.0
        else:
            dtype = min(kinds, key=lambda k: k.itemsize)          # complex64 counts as float32
    if dtype is not None and (rtol is None or atol is None):
        default_rtol, default_atol = tolerances(dtype)
    numpy.testing.assert_allclose(
        a, e,
        rtol=default_rtol if rtol is None else rtol,
        atol=default_atol if atol is None else atol,
        err_msg=err_msg, equal_nan=equal_nan,
    )


def available_backends() -> list:
    """Backends usable here: always ``"numpy"``, plus ``"cupy"`` when CuPy and a GPU are present."""
    return ["numpy"] + (["cupy"] if cupy_available() else [])


_EPS64 = float(numpy.finfo(numpy.float64).eps)


def _inner(a, b) -> float:
    return float(numpy.vdot(to_numpy(a).ravel(), to_numpy(b).ravel()))


def check_grads(f, *inputs, step: float = 1e-6, rtol: float = 1e-6, atol: float = 1e-9,
                n_directions: int = 2, seed: int = 0, names=None) -> None:
    """Check reverse-mode gradients of ``f`` against central finite differences.

    For a random output cotangent ``v`` and random directions ``u_i`` (one per
    float input), compares the directional derivative
    ``(<v, f(x_i + h u_i)> - <v, f(x_i - h u_i)>) / 2h`` with ``<J_i^T v, u_i>``
    from ``backward`` (HIPS autograd's test). Works for outputs of any shape with
    two forward calls per direction.

    Args:
        f: function of the inputs returning a Tensor.
        *inputs: Tensors or arrays; real floating ones must be float64 and are checked,
            others (integer ids, complex arrays, ...) are passed through unchanged. Python
            floats and lists of floats are refused (they would be passed through unchecked):
            give them as float64 arrays.
        step: finite-difference step h.
        rtol, atol: allowed |numeric - analytic| <= atol + noise + rtol * max(|numeric|,
            |analytic|), where noise = 8 eps (<|v|, |f(x+hu)|> + <|v|, |f(x-hu)|>) / 2h is
            the rounding floor of the central difference (eps = float64 machine epsilon).
            That floor grows with the size of f's values: when they are large next to their
            change over the step (``f = 1e-3 x + 1e6``), it exceeds the derivative and the
            check cannot see errors below it; subtract such offsets from f's output first.
        n_directions: random directions per input.
        seed: seed of the random directions.
        names: optional names of the inputs, used in the error message.

    Raises:
        TypeError: a float input is not float64, or is a Python float or list of floats.
        AssertionError: naming the first input whose gradient disagrees.
    """
    if isinstance(n_directions, bool) or not isinstance(n_directions, int) or n_directions < 1:
        raise ValueError(f"check_grads: n_directions must be an int >= 1, got {n_directions!r}")
    for name, value, positive in (("step", step, True), ("rtol", rtol, False), ("atol", atol, False)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
                or value < 0 or (positive and value == 0):
            raise ValueError(f"check_grads: {name} must be a finite number {'> 0' if positive else '>= 0'}, "
                             f"got {value!r}")
    rng = numpy.random.default_rng(seed)
    arrays = [x.data if isinstance(x, Tensor) else x for x in inputs]
    for i, a in enumerate(arrays):
        if isinstance(a, (float, list, tuple)) and not isinstance(a, numpy.generic):
            try:
                kind = numpy.asarray(a).dtype.kind
            except (TypeError, ValueError):   # ragged or non-numeric: f gets it unchanged
                continue
            if kind == "f":
                raise TypeError(f"check_grads: input {i} is a Python {type(a).__name__} of floats, which would "
                                f"go unchecked; pass it as a float64 array (numpy.asarray(x, 'float64'))")
    checked = [i for i, a in enumerate(arrays) if hasattr(a, "dtype") and a.dtype.kind == "f"]
    for i in checked:
        if arrays[i].dtype != numpy.float64:
            raise TypeError(f"check_grads: input {i} has dtype {arrays[i].dtype}; finite differences "
                            "need float64 inputs")
    if not checked:
        raise ValueError("check_grads: no floating-point input to check")

    def label(i):
        return f"input {i}" + (f" ({names[i]})" if names and i < len(names) else "")

    def call(values):
        return f(*values)

    leaves = [Tensor(a.copy(), requires_grad=True) if i in checked else inputs[i]
              for i, a in enumerate(arrays)]
    out = call(leaves)
    if not isinstance(out, Tensor):
        raise TypeError(f"check_grads: f must return a Tensor, got {type(out).__name__}")
    xp = get_xp(out.data)
    v = xp.asarray(rng.standard_normal(out.shape), dtype=out.dtype)
    if out.requires_grad:
        # a copy: a VJP that (wrongly) writes into its output gradient must not change the
        # cotangent the finite differences use below (that hid the bug)
        out.backward(v.copy())
    analytic_grads = {i: leaves[i].grad for i in checked}

    for _ in range(n_directions):
        for i in checked:
            u = xp.asarray(rng.standard_normal(arrays[i].shape), dtype=arrays[i].dtype)
            g = analytic_grads[i]
            analytic = 0.0 if g is None else _inner(g, u)
            with no_grad():
                values = list(leaves)
                values[i] = Tensor(arrays[i] + step * u)
                out_plus = call(values).data
                values[i] = Tensor(arrays[i] - step * u)
                out_minus = call(values).data
            plus, minus = _inner(v, out_plus), _inner(v, out_minus)
            numeric = (plus - minus) / (2 * step)
            # the two sums round at eps * <|v|, |f|> each, and their difference is divided by
            # 2h: for large outputs with a small derivative that floor exceeds atol
            noise = 8 * _EPS64 * (_inner(abs(v), abs(out_plus)) + _inner(abs(v), abs(out_minus))) / (2 * step)
            if not abs(numeric - analytic) <= atol + noise + rtol * max(abs(numeric), abs(analytic)):
                raise AssertionError(
                    f"check_grads: the gradient of {label(i)} (shape {tuple(arrays[i].shape)}) "
                    f"disagrees with finite differences: analytic <J^T v, u> = {analytic:.12g}, "
                    f"numeric = {numeric:.12g} (step {step}, rtol {rtol}, atol {atol})"
                )
