"""Primitive operations: a forward on raw arrays plus one VJP per differentiable input.

Every op follows the same pattern::

    def op(x, y):
        x, y = lift(x, y)                      # Tensors on one backend, scalars typed like the other
        out = <forward on x.data, y.data>
        return record("op", out, (x, y), (vjp_x, vjp_y))

where each VJP maps the output gradient ``g`` to the input's gradient. Binary
ops broadcast like NumPy; their VJPs sum the gradient back to the input's shape
with ``unbroadcast``. The engine (``tensor.py``) checks shapes, casts dtypes and
accumulates. The operator methods of ``Tensor`` (``+``, ``@``, ``x[i]``,
``x.sum()`` ...) are bound at the end of this module.
"""

from __future__ import annotations

import numbers

import numpy

from . import parallel
from ._validate import as_int, bool_arg
from .backend import from_python, get_xp, index_add, scatter_add
from .tensor import Tensor, record

__all__ = [
    "as_tensor", "unbroadcast",
    "add", "sub", "mul", "div", "neg", "power", "matmul",
    "sum", "mean", "max", "reshape", "transpose", "getitem", "take", "check_ids",
    "concat", "stack", "split", "where", "astype",
    "exp", "log", "sqrt", "tanh", "sigmoid", "relu", "clip",
]


# --- helpers -------------------------------------------------------------------------------
def as_tensor(x, like: Tensor | None = None) -> Tensor:
    """Return ``x`` as a Tensor without copying (Tensors pass through).

    A Python scalar takes the dtype of ``like`` when ``like`` is floating point or
    complex, so ``float32_tensor * 2.0`` stays float32 (a complex scalar with a float
    ``like`` gives the complex dtype of the same precision: ``float32 * 1j`` is
    complex64). An int scalar also takes an int ``like``'s dtype when it fits there (else
    NumPy's default int, so ``int8_tensor / 300`` is float64 as in NumPy); with a bool
    ``like`` NumPy's promotion applies: ``bool_tensor + 1`` is int.
    NumPy scalars (``numpy.float64(2.0)``) are treated the same way, unlike NumPy 2's
    NEP 50 rules: a float64 constant must not silently turn a float32 model into float64.
    """
    if isinstance(x, Tensor):
        return x
    if isinstance(x, numbers.Number) and like is not None:
        xp = get_xp(like.data)
        kind = like.dtype.kind
        if kind in "fc" and not isinstance(x, bool):
            if isinstance(x, numbers.Complex) and not isinstance(x, numbers.Real) and kind == "f":
                return Tensor(xp.asarray(x, dtype=numpy.result_type(like.dtype, numpy.complex64)))
            return Tensor(xp.asarray(x, dtype=like.dtype))
        if kind in "iu" and isinstance(x, numbers.Integral) and not isinstance(x, bool):
            info = numpy.iinfo(like.dtype)
            if info.min <= int(x) <= info.max:
                return Tensor(xp.asarray(x, dtype=like.dtype))
        return Tensor(xp.asarray(x))
    return Tensor(x)


def _lift(a, b):
    """Both operands as Tensors on one backend; a scalar takes the other operand's dtype
    (``as_tensor``), whichever side it is on."""
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        if type(a.data) is not type(b.data):
            get_xp(a.data, b.data)  # raises on a NumPy/CuPy mix
        return a, b
    a_scalar = not isinstance(a, Tensor) and isinstance(a, numbers.Number)
    if isinstance(b, Tensor) or (a_scalar and not isinstance(b, numbers.Number)):
        b = as_tensor(b)
        a = as_tensor(a, like=b)
    else:
        a = as_tensor(a)
        b = as_tensor(b, like=a)
    get_xp(a.data, b.data)
    return a, b


def unbroadcast(g, shape: tuple):
    """Sum ``g`` over the axes that broadcasting added or stretched, giving an array of ``shape``."""
    shape = tuple(shape)
    if tuple(g.shape) == shape:
        return g
    extra = g.ndim - len(shape)
    if extra:
        g = g.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return g


def _broadcast_shapes(op: str, a: Tensor, b: Tensor) -> None:
    # NumPy's own message does not name the op; give one that does.
    sa, sb = a.shape, b.shape
    for x, y in zip(reversed(sa), reversed(sb)):
        if x != y and x != 1 and y != 1:
            raise ValueError(f"{op}: shapes {sa} and {sb} cannot be broadcast together")


def _normalize_axes(axis, ndim: int) -> tuple:
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, numbers.Integral):
        axes = (axis,)
    elif hasattr(axis, "__iter__") and not isinstance(axis, (str, bytes)):
        axes = tuple(axis)
    else:
        raise TypeError(f"axis must be None, an int or a tuple of ints, got {axis!r}")
    out = []
    for a in axes:
        if isinstance(a, bool):     # an int to Python, not to NumPy
            raise TypeError(f"axis must be an int or a tuple of ints, got {axis!r}")
        # a 0-d tensor has no axes (as in NumPy): any integer axis is out of range for it
        if not isinstance(a, numbers.Integral):
            raise TypeError(f"axis must be an int or a tuple of ints, got {axis!r}")
        if not -ndim <= a < ndim:
            raise ValueError(f"axis {a!r} is out of range for a tensor with {ndim} dimensions")
        out.append(int(a) % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"axis {axis!r} repeats an axis")
    return tuple(sorted(out))


def _single_axis(op: str, axis, ndim: int) -> int:
    """One axis (an int, not None or a tuple: those would silently pick the smallest axis)."""
    if isinstance(axis, (bool, numpy.bool_)) or not isinstance(axis, numbers.Integral):
        raise TypeError(f"{op}: axis must be a single int, got {axis!r}")
    return _normalize_axes(axis, ndim)[0]


# --- elementwise binary --------------------------------------------------------------------
def add(a, b) -> Tensor:
    """Elementwise ``a + b`` with broadcasting."""
    a, b = _lift(a, b)
    _broadcast_shapes("add", a, b)
    return record("add", a.data + b.data, (a, b),
                  (lambda g: unbroadcast(g, a.shape), lambda g: unbroadcast(g, b.shape)))


def sub(a, b) -> Tensor:
    """Elementwise ``a - b`` with broadcasting."""
    a, b = _lift(a, b)
    _broadcast_shapes("sub", a, b)
    return record("sub", a.data - b.data, (a, b),
                  (lambda g: unbroadcast(g, a.shape), lambda g: unbroadcast(-g, b.shape)))


def mul(a, b) -> Tensor:
    """Elementwise ``a * b`` with broadcasting."""
    a, b = _lift(a, b)
    _broadcast_shapes("mul", a, b)
    return record("mul", a.data * b.data, (a, b),
                  (lambda g: unbroadcast(g * b.data, a.shape),
                   lambda g: unbroadcast(g * a.data, b.shape)))


def div(a, b) -> Tensor:
    """Elementwise ``a / b`` with broadcasting (true division)."""
    a, b = _lift(a, b)
    _broadcast_shapes("div", a, b)
    out = a.data / b.data
    return record("div", out, (a, b),
                  (lambda g: unbroadcast(g / b.data, a.shape),
                   lambda g: unbroadcast(-g * out / b.data, b.shape)))


def neg(a) -> Tensor:
    """Elementwise ``-a``."""
    a = as_tensor(a)
    return record("neg", -a.data, (a,), (lambda g: -g,))


def power(a, exponent) -> Tensor:
    """Elementwise ``a ** exponent`` for a Python scalar exponent; d/da = p a^(p-1)."""
    a = as_tensor(a)
    if isinstance(exponent, Tensor) or not isinstance(exponent, numbers.Real):
        raise TypeError(f"pow: exponent must be a Python int or float, got {type(exponent).__name__}")
    # a NumPy scalar exponent (numpy.float64(2)) would promote float32 data to float64 (NEP 50);
    # as a Python scalar it is "weak" and the result keeps a's dtype
    exponent = int(exponent) if isinstance(exponent, numbers.Integral) else float(exponent)
    out = a.data ** exponent
    if exponent == 0:
        return record("pow", out, (a,), (lambda g: g * 0,))
    return record("pow", out, (a,), (lambda g: g * (exponent * a.data ** (exponent - 1)),))


def _rpow(a, base):
    raise TypeError("scalar ** Tensor is not supported; use tt.exp(x * log(base))")


# --- linear algebra --------------------------------------------------------------------------
def matmul(a, b) -> Tensor:
    """Matrix product with NumPy's rules: 1-D operands are promoted, leading dims broadcast.

    a: (..., n, k), b: (..., k, m) -> (..., n, m). Cost O(batch * n * k * m).
    VJPs: dA = g @ B^T and dB = A^T @ g, summed over broadcast batch dims.
    """
    a, b = _lift(a, b)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul: operands must have at least 1 dimension, got shapes {a.shape} and {b.shape}")
    k_a = a.shape[-1]
    k_b = b.shape[0] if b.ndim == 1 else b.shape[-2]
    if k_a != k_b:
        raise ValueError(
            f"matmul: shapes {a.shape} and {b.shape} are not aligned: a.shape[-1] = {k_a} must "
            f"equal b.shape[-2] = {k_b}"
        )
    xp = get_xp(a.data, b.data)
    a2 = a.data[None, :] if a.ndim == 1 else a.data
    b2 = b.data[:, None] if b.ndim == 1 else b.data
    try:
        out2 = xp.matmul(a2, b2)
    except ValueError as exc:
        raise ValueError(f"matmul: batch dimensions of {a.shape} and {b.shape} do not broadcast") from exc
    out = out2
    if b.ndim == 1:
        out = out[..., 0]
    if a.ndim == 1:
        out = out[..., 0, :] if b.ndim > 1 else out[..., 0]

    def as_2d_grad(g):
        if a.ndim == 1 and b.ndim == 1:
            return g[..., None, None]
        if b.ndim == 1:
            return g[..., None]
        if a.ndim == 1:
            return g[..., None, :]
        return g

    def vjp_a(g):
        ga = xp.matmul(as_2d_grad(g), xp.swapaxes(b2, -1, -2))
        if a.ndim == 1:
            ga = ga[..., 0, :]
        return unbroadcast(ga, a.shape)

    def vjp_b(g):
        gb = xp.matmul(xp.swapaxes(a2, -1, -2), as_2d_grad(g))
        if b.ndim == 1:
            gb = gb[..., 0]
        return unbroadcast(gb, b.shape)

    return record("matmul", out, (a, b), (vjp_a, vjp_b))


# --- reductions ------------------------------------------------------------------------------
def _expand_reduced(g, axes: tuple, keepdims: bool, xp):
    if not keepdims:
        for ax in axes:
            g = xp.expand_dims(g, ax)
    return g


#: NumPy reductions that keep axis 0 are split over the cores from this many input bytes
#: (2 cores: mean over the 200 steps of a (64, 200, 256) float32 batch, 13 MB, 1.31 -> 0.86 ms)
_PARALLEL_REDUCE_BYTES = 1 << 22
_SPLIT_REDUCE_DTYPES = (numpy.dtype(numpy.float32), numpy.dtype(numpy.float64))


def _reduce(data, method: str, axes: tuple, keepdims: bool):
    """``data.sum`` or ``data.mean`` over ``axes``. On NumPy, a large C-contiguous
    float32/float64 reduction that keeps axis 0 is split into blocks of axis 0 reduced by all
    cores at once; each output element is computed as in the whole call, so the result is
    the same bits. (Not for other layouts: there NumPy may merge axes of the whole array
    that it cannot merge in a block, and sum in another order.)"""
    if (not isinstance(data, numpy.ndarray) or data.dtype not in _SPLIT_REDUCE_DTYPES or data.ndim < 2
            or 0 in axes or data.shape[0] < 2 or data.nbytes < _PARALLEL_REDUCE_BYTES
            or not data.flags.c_contiguous or parallel.num_threads() < 2):
        return getattr(data, method)(axis=axes, keepdims=keepdims)
    shape = tuple(1 if i in axes else n for i, n in enumerate(data.shape) if keepdims or i not in axes)
    out = numpy.empty(shape, dtype=data.dtype)
    # (blocks of at least a quarter of the threshold; ``max`` is this module's op)
    rows_per_block = data.shape[0] * (_PARALLEL_REDUCE_BYTES // 4) // data.nbytes or 1
    parallel.map_blocks(lambda a, b: getattr(data[a:b], method)(axis=axes, keepdims=keepdims, out=out[a:b]),
                        data.shape[0], min_size=rows_per_block)
    return out


def _keepdims_arg(op: str, keepdims) -> bool:
    """``keepdims`` as a bool: ``bool_arg``, which also lets integer 0 and 1 through."""
    if isinstance(keepdims, numbers.Integral) and not isinstance(keepdims, bool) and keepdims in (0, 1):
        return bool(keepdims)
    return bool_arg(op, "keepdims", keepdims)


def sum(x, axis=None, keepdims: bool = False) -> Tensor:  # noqa: A001 - NumPy's name
    """Sum over ``axis`` (int, tuple or None for all). VJP: broadcast g back to x's shape."""
    x = as_tensor(x)
    xp = get_xp(x.data)
    axes = _normalize_axes(axis, x.ndim)
    keepdims = _keepdims_arg("sum", keepdims)
    out = _reduce(x.data, "sum", axes, keepdims) if x.ndim else x.data.copy()
    return record("sum", out, (x,),
                  (lambda g: xp.broadcast_to(_expand_reduced(g, axes, keepdims, xp), x.shape),))


def mean(x, axis=None, keepdims: bool = False) -> Tensor:
    """Mean over ``axis``. A reduction over zero elements gives NaN, as in NumPy."""
    x = as_tensor(x)
    xp = get_xp(x.data)
    axes = _normalize_axes(axis, x.ndim)
    keepdims = _keepdims_arg("mean", keepdims)
    count = 1
    for ax in axes:
        count *= x.shape[ax] if x.ndim else 1
    out = _reduce(x.data, "mean", axes, keepdims) if x.ndim else x.data.copy()
    scale = 1.0 / count if count else float("nan")
    return record("mean", out, (x,),
                  (lambda g: xp.broadcast_to(_expand_reduced(g * scale, axes, keepdims, xp), x.shape),))


def max(x, axis=None, keepdims: bool = False) -> Tensor:  # noqa: A001 - NumPy's name
    """Maximum over ``axis``. The gradient is shared equally among tied maxima."""
    x = as_tensor(x)
    xp = get_xp(x.data)
    axes = _normalize_axes(axis, x.ndim)
    keepdims = _keepdims_arg("max", keepdims)
    if any(x.shape[a] == 0 for a in axes):
        raise ValueError(f"max: cannot reduce a zero-size tensor of shape {x.shape} over an empty axis "
                         f"(axis={axis!r}): the maximum of no values is undefined")
    out_keep = x.data.max(axis=axes, keepdims=True) if x.ndim else x.data.copy()
    out = out_keep if keepdims or not x.ndim else xp.squeeze(out_keep, axis=axes)

    def vjp(g):
        mask = x.data == out_keep
        # count as g's dtype: an int64 count would promote a float32 gradient to float64
        count = mask.sum(axis=axes, keepdims=True).astype(g.dtype) if x.ndim else 1
        return _expand_reduced(g, axes, keepdims, xp) * mask / count

    return record("max", out, (x,), (vjp,))


# --- shape ops -------------------------------------------------------------------------------
def reshape(x, *shape) -> Tensor:
    """View ``x`` with a new shape (one entry may be -1)."""
    x = as_tensor(x)
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    elif len(shape) == 1 and hasattr(shape[0], "ndim") and shape[0].ndim == 1:
        shape = tuple(shape[0].tolist())   # an integer array as the shape, as NumPy allows
    try:
        out = x.data.reshape(shape)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"reshape: cannot reshape a tensor of shape {x.shape} into {shape}") from exc
    return record("reshape", out, (x,), (lambda g: g.reshape(x.shape),))


def transpose(x, *axes) -> Tensor:
    """Permute axes (reverse them when none are given)."""
    x = as_tensor(x)
    if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
        axes = tuple(axes[0])
    if not axes:
        axes = tuple(reversed(range(x.ndim)))
    if any(isinstance(a, bool) or not isinstance(a, numbers.Integral) for a in axes):
        raise TypeError(f"transpose: axes must be ints, got {axes}")
    if (len(axes) != x.ndim or any(not -x.ndim <= a < x.ndim for a in axes)
            or sorted(int(a) % x.ndim for a in axes) != list(range(x.ndim))):
        raise ValueError(f"transpose: axes {axes} are not a permutation of the {x.ndim} axes")
    axes = tuple(int(a) % x.ndim for a in axes)
    inverse = tuple(sorted(range(len(axes)), key=axes.__getitem__))
    return record("transpose", x.data.transpose(axes), (x,), (lambda g: g.transpose(inverse),))


def _own(array, given):
    """``array``, copied when it is the caller's object ``given`` (or a view the caller holds):
    a VJP reads its index, mask or condition at backward time, after the caller may have
    reused that buffer for the next batch (int64 ids were kept, int32 ones converted)."""
    return array.copy() if array is given else array


def _check_index(index, xp):
    """Convert Tensor/list/tuple parts of an index to arrays (private copies of the caller's
    arrays, which the backward reads); reject float index arrays."""
    parts = index if isinstance(index, tuple) else (index,)
    out = []
    advanced = False
    for p in parts:
        if isinstance(p, Tensor):
            p = p.data
        if isinstance(p, (list, tuple)):   # inside an index NumPy reads a tuple as an array too
            p = from_python(p, xp)
            if p.size == 0 and p.dtype.kind == "f":   # [] or (): no values to have a dtype
                p = p.astype(xp.intp)
        if hasattr(p, "dtype") and hasattr(p, "shape"):
            if p.dtype.kind not in "iub":
                raise TypeError(
                    f"index arrays must be integer or boolean, got dtype {p.dtype}; "
                    "convert float ids with .astype(int) first"
                )
            p = _own(xp.asarray(p), p)
            advanced = True
        elif isinstance(p, float):
            raise TypeError(f"indices must be integers, slices or integer arrays, got float {p!r}")
        out.append(p)
    return (tuple(out) if isinstance(index, tuple) else out[0]), advanced


def _check_device_bounds(index, shape: tuple, xp) -> None:
    """IndexError for an integer index array out of bounds for its axis, as NumPy raises:
    CuPy wraps such indices around silently. One device sync for all the index arrays."""
    parts = index if isinstance(index, tuple) else (index,)
    is_array = [hasattr(p, "dtype") and hasattr(p, "shape") for p in parts]
    explicit = 0    # axes the index names (this module's ``sum`` is the Tensor op); a Python bool,
    for p, arr in zip(parts, is_array):     # like None, adds an axis instead of naming one
        explicit += (p.ndim if p.dtype.kind == "b" else 1) if arr else \
            (0 if p is None or p is Ellipsis or isinstance(p, bool) else 1)
    axis, checks = 0, []
    for p, arr in zip(parts, is_array):
        if p is Ellipsis:
            axis += len(shape) - explicit
        elif p is None or isinstance(p, bool):
            continue
        elif arr and p.dtype.kind == "b":
            axis += p.ndim
        else:
            if arr and p.size and axis < len(shape):
                checks.append((p, axis))
            axis += 1
    if not checks:
        return
    bounds = xp.stack([xp.stack([p.min(), p.max()]).astype(xp.int64) for p, _ in checks]).tolist()
    for (lo, hi), (_, ax) in zip(bounds, checks):
        if lo < -shape[ax] or hi >= shape[ax]:
            bad = hi if hi >= shape[ax] else lo
            raise IndexError(f"index {bad} is out of bounds for axis {ax} with size {shape[ax]}")


def getitem(x, index) -> Tensor:
    """``x[index]`` with NumPy semantics (ints, slices, None, Ellipsis, integer/bool arrays).

    VJP: scatter the gradient back; repeated integer indices accumulate.
    """
    x = as_tensor(x)
    xp = get_xp(x.data)
    index, advanced = _check_index(index, xp)
    if advanced and xp is not numpy:
        _check_device_bounds(index, x.shape, xp)
    out = x.data[index]

    def vjp(g):
        grad = xp.zeros(x.shape, dtype=g.dtype)
        if advanced:
            index_add(grad, index, g)
        else:
            grad[index] = g
        return grad

    return record("getitem", out, (x,), (vjp,))


def check_ids(ids, num_rows: int, xp, name: str = "ids"):
    """Validate row ids: an integer array (or Tensor / list / int) with values in [0, num_rows).

    Returns the backend array as ``intp`` (no copy for int64 ids on 64-bit machines), so
    index arithmetic on it (digit codes, sort keys) cannot wrap around in a narrow dtype.
    Raises TypeError (not an integer array), ValueError (a ragged nested list) or
    IndexError (out of range, naming the range and the values found). One min/max pass
    over the ids (a device sync on CuPy, which would otherwise wrap out-of-range ids
    silently).
    """
    if isinstance(ids, Tensor):
        ids = ids.data
    if isinstance(ids, (list, tuple, numbers.Integral)) and not isinstance(ids, bool):
        try:
            ids = from_python(ids, xp)
        except ValueError as exc:
            raise ValueError(f"{name}: ids must be a rectangular (nested) list of ints: {exc}") from None
        if ids.size == 0 and ids.dtype.kind == "f":  # [] or [[], []]: no values to have a dtype
            ids = ids.astype(xp.intp)
    if not hasattr(ids, "dtype") or not hasattr(ids, "shape"):
        raise TypeError(f"{name}: ids must be an integer array, got {type(ids).__name__}")
    if not isinstance(ids.dtype, numpy.dtype):   # another library's tensor (torch: torch.dtype)
        raise TypeError(f"{name}: ids must be a NumPy or CuPy integer array, a Tensor or a list of ints, "
                        f"got {type(ids).__module__}.{type(ids).__name__} (convert it, e.g. with .numpy())")
    if ids.dtype.kind not in "iu":
        raise TypeError(f"{name}: ids must have an integer dtype, got {ids.dtype}")
    get_xp(ids, xp.zeros(0))  # raises on a NumPy/CuPy mix
    ids = xp.asarray(ids)
    if ids.size:
        if xp is numpy:
            lo, hi = int(ids.min()), int(ids.max())
        else:
            lo, hi = xp.stack([ids.min(), ids.max()]).tolist()  # one host read: one sync
        if lo < 0 or hi >= num_rows:
            raise IndexError(f"{name}: ids must lie in [0, {num_rows}), got values in [{lo}, {hi}]")
    return ids.astype(xp.intp, copy=False)


def take(x, indices) -> Tensor:
    """Rows of ``x`` along axis 0: ``x[indices]`` for an integer array of any shape S.

    x: (n, *rest), indices: S with values in [0, n) -> S + rest. The VJP is a
    deterministic sorted segment sum (``backend.scatter_add``).
    """
    x = as_tensor(x)
    xp = get_xp(x.data)
    if x.ndim == 0:
        raise ValueError("take: x must have at least one dimension")
    n = x.shape[0]
    given = indices.data if isinstance(indices, Tensor) else indices
    indices = _own(check_ids(indices, n, xp, "take"), given)   # read again by the backward
    out = xp.take(x.data, indices, axis=0)
    return record("take", out, (x,), (lambda g: scatter_add(indices, g, n),))


def concat(tensors, axis: int = 0) -> Tensor:
    """Join tensors along an existing axis; the VJP slices the gradient back apart."""
    tensors = [as_tensor(t) for t in tensors]
    if not tensors:
        raise ValueError("concat: needs at least one tensor")
    xp = get_xp(*(t.data for t in tensors))
    ndim = tensors[0].ndim
    if ndim == 0:
        raise ValueError("concat: zero-dimensional tensors cannot be concatenated; use stack")
    axis = _single_axis("concat", axis, ndim)
    for i, t in enumerate(tensors):
        if t.ndim != ndim or t.shape[:axis] + t.shape[axis + 1:] != tensors[0].shape[:axis] + tensors[0].shape[axis + 1:]:
            raise ValueError(f"concat: tensor {i} has shape {t.shape}, incompatible with {tensors[0].shape} "
                             f"along axis {axis}")
    out = xp.concatenate([t.data for t in tensors], axis=axis)
    bounds = [0]
    for t in tensors:
        bounds.append(bounds[-1] + t.shape[axis])

    def slicer(i):
        sl = (slice(None),) * axis + (slice(bounds[i], bounds[i + 1]),)
        return lambda g: g[sl]

    return record("concat", out, tuple(tensors), tuple(slicer(i) for i in range(len(tensors))))


def stack(tensors, axis: int = 0) -> Tensor:
    """Join same-shape tensors along a new axis."""
    tensors = [as_tensor(t) for t in tensors]
    if not tensors:
        raise ValueError("stack: needs at least one tensor")
    for i, t in enumerate(tensors):
        if t.shape != tensors[0].shape:
            raise ValueError(f"stack: tensor {i} has shape {t.shape}, expected {tensors[0].shape}")
    xp = get_xp(*(t.data for t in tensors))
    axis = _single_axis("stack", axis, tensors[0].ndim + 1)
    out = xp.stack([t.data for t in tensors], axis=axis)

    def picker(i):
        sl = (slice(None),) * axis + (i,)
        return lambda g: g[sl]

    return record("stack", out, tuple(tensors), tuple(picker(i) for i in range(len(tensors))))


def split(x, indices_or_sections, axis: int = 0) -> list:
    """Split like ``numpy.split``: a number of equal sections or a list of split points."""
    x = as_tensor(x)
    axis = _single_axis("split", axis, x.ndim)
    n = x.shape[axis]
    sections = indices_or_sections
    if isinstance(sections, numbers.Real) and not isinstance(sections, numbers.Integral) \
            and float(sections).is_integer():
        sections = int(sections)   # numpy.split accepts 3.0 sections
    elif getattr(sections, "ndim", None) == 0 and getattr(sections, "dtype", None) is not None \
            and sections.dtype.kind in "iu":
        sections = int(sections)   # a 0-d integer array
    if isinstance(sections, numbers.Integral) and not isinstance(sections, bool):
        k = int(sections)
        if k <= 0 or n % k:
            raise ValueError(f"split: {k} sections do not divide axis {axis} of length {n}")
        points = [i * (n // k) for i in range(1, k)]
    else:
        if isinstance(sections, (str, bytes, bool)) or not hasattr(sections, "__iter__"):
            raise TypeError(f"split: indices_or_sections must be an int or a sequence of int split points, "
                            f"got {indices_or_sections!r}")
        points = list(sections.tolist() if hasattr(sections, "tolist") else sections)
        points = [as_int(q) for q in points]   # ints, NumPy integers and 0-d integer arrays
        if any(q is None for q in points):
            raise TypeError(f"split: split points must be ints, got {indices_or_sections!r}")
    edges = [0] + points + [n]
    return [getitem(x, (slice(None),) * axis + (slice(lo, hi),)) for lo, hi in zip(edges[:-1], edges[1:])]


def where(condition, a, b) -> Tensor:
    """Elementwise ``a`` where ``condition`` is true, else ``b`` (all three broadcast)."""
    if isinstance(condition, Tensor):
        condition = condition.data
    a, b = _lift(a, b)
    xp = get_xp(condition, a.data, b.data)
    condition = _own(xp.asarray(condition), condition)   # read again by the backward
    if condition.dtype.kind != "b":
        raise TypeError(f"where: condition must be a boolean array, got dtype {condition.dtype}")
    out = xp.where(condition, a.data, b.data)
    zero = xp.zeros((), dtype=out.dtype)
    return record("where", out, (a, b),
                  (lambda g: unbroadcast(xp.where(condition, g, zero), a.shape),
                   lambda g: unbroadcast(xp.where(condition, zero, g), b.shape)))


def astype(x, dtype) -> Tensor:
    """Cast to ``dtype``; the gradient is cast back to the input's dtype. A cast to an
    integer or bool dtype is not differentiable: its result never requires grad."""
    x = as_tensor(x)
    out = x.data.astype(dtype)
    if out.dtype.kind not in "fc":
        return Tensor(out)
    return record("astype", out, (x,), (lambda g: g.astype(x.dtype),))


# --- elementwise unary ---------------------------------------------------------------------
def exp(x) -> Tensor:
    """Elementwise ``e**x``."""
    x = as_tensor(x)
    out = get_xp(x.data).exp(x.data)
    return record("exp", out, (x,), (lambda g: g * out,))


def log(x) -> Tensor:
    """Elementwise natural logarithm."""
    x = as_tensor(x)
    return record("log", get_xp(x.data).log(x.data), (x,), (lambda g: g / x.data,))


def sqrt(x) -> Tensor:
    """Elementwise square root; d/dx = 1 / (2 sqrt(x))."""
    x = as_tensor(x)
    out = get_xp(x.data).sqrt(x.data)
    return record("sqrt", out, (x,), (lambda g: g / (2 * out),))


def tanh(x) -> Tensor:
    """Elementwise tanh; d/dx = 1 - tanh(x)^2."""
    x = as_tensor(x)
    out = get_xp(x.data).tanh(x.data)
    return record("tanh", out, (x,), (lambda g: g * (1 - out * out),))


def stable_sigmoid(a, xp):
    """1 / (1 + exp(-a)) on a raw array without overflow: exp is only taken of -|a|."""
    z = xp.exp(-xp.abs(a))
    return xp.where(a >= 0, 1 / (1 + z), z / (1 + z))


def sigmoid(x) -> Tensor:
    """Elementwise logistic function, stable for large |x|; d/dx = s (1 - s)."""
    x = as_tensor(x)
    out = stable_sigmoid(x.data, get_xp(x.data))
    return record("sigmoid", out, (x,), (lambda g: g * out * (1 - out),))


def relu(x) -> Tensor:
    """Elementwise ``max(x, 0)``; the gradient at 0 is taken as 0."""
    x = as_tensor(x)
    xp = get_xp(x.data)
    mask = x.data > 0
    # maximum, not where(mask, x, 0): NaN stays NaN (a NaN input must not vanish)
    return record("relu", xp.maximum(x.data, 0).astype(x.dtype, copy=False), (x,),
                  (lambda g: g * mask,))


def clip(x, a_min=None, a_max=None) -> Tensor:
    """Elementwise clamp to ``[a_min, a_max]``; gradient 1 inside (bounds included), 0 outside."""
    x = as_tensor(x)
    if a_min is None and a_max is None:
        raise ValueError("clip: give a_min, a_max or both")
    if isinstance(a_min, Tensor) or isinstance(a_max, Tensor):
        raise TypeError("clip: a_min and a_max must be numbers or arrays (constants, they get no gradient), "
                        "not Tensors; pass their .data")
    xp = get_xp(x.data)
    # array bounds on x's backend (CuPy's ufuncs refuse NumPy arrays); scalars stay scalars
    a_min, a_max = (b if b is None or isinstance(b, numbers.Number) else from_python(b, xp) for b in (a_min, a_max))
    if a_min is not None and a_max is not None and bool(xp.any(xp.asarray(a_min) > xp.asarray(a_max))):
        raise ValueError(f"clip: a_min={a_min} is greater than a_max={a_max}")
    out = xp.clip(x.data, a_min, a_max)
    if x.dtype.kind == "f":  # float32 stays float32; int inputs with float bounds become float
        out = out.astype(x.dtype, copy=False)
    inside = xp.ones(out.shape, dtype=bool)   # array bounds may broadcast x to a larger shape
    if a_min is not None:
        inside &= x.data >= a_min
    if a_max is not None:
        inside &= x.data <= a_max
    return record("clip", out, (x,), (lambda g: unbroadcast(g * inside, x.shape),))


# --- operator methods on Tensor ----------------------------------------------------------------
def _operator(fn, reflected: bool = False):
    """``Tensor.__op__`` from ``fn``; NotImplemented for an operand that opts out of array
    operators as NumPy arrays let it (``__array_ufunc__ = None``: TensorTrain, TTMatrix), so
    its own reflected operator runs (``Tensor(2.0) * tt`` scales the TT; ``x @ tt`` is
    Python's "unsupported operand" TypeError instead of a failed conversion to an array)."""
    def method(self, other):
        if not isinstance(other, Tensor) and getattr(type(other), "__array_ufunc__", False) is None:
            return NotImplemented
        return fn(other, self) if reflected else fn(self, other)
    method.__name__ = fn.__name__
    return method


Tensor.__add__ = _operator(add)
Tensor.__radd__ = _operator(add, reflected=True)
Tensor.__sub__ = _operator(sub)
Tensor.__rsub__ = _operator(sub, reflected=True)
Tensor.__mul__ = _operator(mul)
Tensor.__rmul__ = _operator(mul, reflected=True)
Tensor.__truediv__ = _operator(div)
Tensor.__rtruediv__ = _operator(div, reflected=True)
Tensor.__neg__ = neg
Tensor.__pow__ = _operator(power)
Tensor.__rpow__ = _operator(lambda base, x: _rpow(x, base), reflected=True)
Tensor.__matmul__ = _operator(matmul)
Tensor.__rmatmul__ = _operator(matmul, reflected=True)
Tensor.__getitem__ = getitem
Tensor.sum = sum
Tensor.mean = mean
Tensor.max = max
Tensor.reshape = reshape
Tensor.transpose = transpose
Tensor.astype = astype
Tensor.T = property(lambda self: transpose(self))
Tensor.exp = exp
Tensor.log = log
Tensor.sqrt = sqrt
Tensor.tanh = tanh
