"""Numerically careful composites written as fused ops: softmax family, losses, dropout.

Each is one recorded op with a hand-written VJP, so the forward keeps the
stable formulation (max shift, logsumexp) and the backward does not rebuild it
from many small primitives.
"""

from __future__ import annotations

import numbers

import numpy

from ._validate import as_int
from .backend import from_python, get_xp, sum_dtype
from .ops import _keepdims_arg, _own, as_tensor, astype, stable_sigmoid
from .tensor import Tensor, record

__all__ = [
    "softmax", "log_softmax", "logsumexp", "cross_entropy",
    "binary_cross_entropy_with_logits", "mse", "dropout",
]


_UNSEEDED = {}  # backend module -> the unseeded Generator used by dropout(rng=None)


def _axis(axis: int, ndim: int, name: str) -> int:
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise TypeError(f"{name}: axis must be a single int, got {axis!r}")
    if not -ndim <= axis < ndim:
        raise ValueError(f"{name}: axis {axis!r} is out of range for {ndim} dimensions")
    return int(axis) % ndim


def _float_input(x, name: str) -> Tensor:
    """x as a floating (or complex) Tensor: integer and bool inputs become float64 (as
    ``exp`` of them does in NumPy; the results were cast back to integers)."""
    x = as_tensor(x)
    if x.dtype.kind in "iub":
        return astype(x, "float64")
    return x


def _log_softmax_array(a, axis: int, xp):
    shifted = a - a.max(axis=axis, keepdims=True)
    total = xp.exp(shifted).sum(axis=axis, keepdims=True, dtype=sum_dtype(a.dtype))
    return shifted - xp.log(total).astype(a.dtype, copy=False)


def logsumexp(x, axis: int = -1, keepdims: bool = False) -> Tensor:
    """``log(sum(exp(x), axis))`` computed after subtracting the max. VJP: g * softmax(x).
    Integer and bool inputs are computed in float64."""
    x = _float_input(x, "logsumexp")
    keepdims = _keepdims_arg("logsumexp", keepdims)
    xp = get_xp(x.data)
    axis = _axis(axis, x.ndim, "logsumexp")
    if x.shape[axis] == 0:   # the log of an empty sum: -inf, as in torch and SciPy
        shape = tuple(1 if a == axis else n for a, n in enumerate(x.shape) if keepdims or a != axis)
        return record("logsumexp", xp.full(shape, -xp.inf, dtype=x.dtype), (x,), (lambda g: xp.zeros_like(x.data),))
    m_raw = x.data.max(axis=axis, keepdims=True)
    # an all -inf row (max -inf) or a +inf entry: shift by 0 there, not by an infinite max
    # (inf - inf = nan); the result is then -inf or +inf, as in torch and SciPy
    m = xp.where(xp.isfinite(m_raw), m_raw, 0).astype(x.dtype, copy=False)
    with numpy.errstate(divide="ignore", invalid="ignore"):
        e = xp.exp(x.data - m)
        s = e.sum(axis=axis, keepdims=True, dtype=sum_dtype(x.dtype))
        out_keep = (m + xp.log(s)).astype(x.dtype, copy=False)
    out = out_keep if keepdims else xp.squeeze(out_keep, axis=axis)

    def vjp(g):
        gk = g if keepdims else xp.expand_dims(g, axis)
        w = (e / s).astype(x.dtype, copy=False)
        # a row holding +inf is shifted by 0, so a finite entry above ~709 has exp = inf and
        # inf / inf = nan: its weight is the limit exp(x - inf) = 0 (as torch gives)
        with numpy.errstate(invalid="ignore"):
            w = xp.where((m_raw == xp.inf) & xp.isfinite(x.data), 0, w).astype(x.dtype, copy=False)
        return gk * w

    return record("logsumexp", out, (x,), (vjp,))


def softmax(x, axis: int = -1) -> Tensor:
    """``exp(x) / sum(exp(x))`` along ``axis``. VJP: s * (g - sum(g s)). Integer and bool
    inputs are computed in float64."""
    x = _float_input(x, "softmax")
    xp = get_xp(x.data)
    axis = _axis(axis, x.ndim, "softmax")
    if x.shape[axis] == 0:   # nothing to normalise: an empty result, as in torch
        return record("softmax", x.data.copy(), (x,), (lambda g: xp.zeros_like(x.data),))
    e = xp.exp(x.data - x.data.max(axis=axis, keepdims=True))
    s = (e / e.sum(axis=axis, keepdims=True, dtype=sum_dtype(x.dtype))).astype(x.dtype, copy=False)
    return record("softmax", s, (x,), (lambda g: s * (g - (g * s).sum(axis=axis, keepdims=True)),))


def log_softmax(x, axis: int = -1) -> Tensor:
    """``x - logsumexp(x)`` along ``axis``. VJP: g - softmax(x) * sum(g). Integer and bool
    inputs are computed in float64."""
    x = _float_input(x, "log_softmax")
    xp = get_xp(x.data)
    axis = _axis(axis, x.ndim, "log_softmax")
    if x.shape[axis] == 0:   # nothing to normalise: an empty result, as in torch
        return record("log_softmax", x.data.copy(), (x,), (lambda g: xp.zeros_like(x.data),))
    out = _log_softmax_array(x.data, axis, xp)
    return record("log_softmax", out, (x,),
                  (lambda g: g - xp.exp(out) * g.sum(axis=axis, keepdims=True),))


def _numeric_targets(targets, xp, dtype, where: str):
    """An array of targets read in ``dtype``; strings, objects and complex numbers are refused
    (NumPy would parse "1" as 1.0 or drop an imaginary part)."""
    raw = from_python(targets, xp)
    if raw.dtype.kind not in "biuf":
        raise TypeError(f"{where}: targets must be a real numeric array, got dtype {raw.dtype}")
    return raw.astype(dtype, copy=False)


def _check_loss_options(ignore_index, label_smoothing, where: str) -> None:
    """ignore_index: None or an int (not a bool: True would ignore class 1); label_smoothing:
    a number in [0, 1). ValueError/TypeError naming the argument otherwise."""
    if ignore_index is not None and as_int(ignore_index) is None:
        raise TypeError(f"{where}: ignore_index must be None or an int, got {ignore_index!r}")
    if isinstance(label_smoothing, (bool, numpy.bool_)) or not isinstance(label_smoothing, (numbers.Real, numpy.ndarray)) \
            or numpy.ndim(label_smoothing) != 0 or not 0.0 <= float(label_smoothing) < 1.0:
        raise ValueError(f"{where}: label_smoothing must be a number in [0, 1), got {label_smoothing!r}")


def cross_entropy(logits, targets, ignore_index: int | None = None, label_smoothing: float = 0.0) -> Tensor:
    """Mean softmax cross-entropy of integer class targets, fused with the log-softmax.

    Args:
        logits: (..., C) float scores.
        targets: (...) integer class ids in [0, C), or ``ignore_index``.
        ignore_index: targets equal to it contribute no loss and no gradient; the
            mean is over the remaining positions (0 when none remain).
        label_smoothing: in [0, 1): the target distribution is
            (1 - label_smoothing) * onehot + label_smoothing / C.
    Returns:
        scalar Tensor: mean over kept positions of ``-sum_c q_c log softmax(logits)_c``.

    VJP wrt logits: (softmax - q) * keep / count. Cost O(numel(logits)).
    """
    logits = as_tensor(logits)
    xp = get_xp(logits.data)
    if logits.dtype.kind != "f":
        raise TypeError(f"cross_entropy: logits must be floating point, got dtype {logits.dtype}")
    if logits.ndim < 1:
        raise ValueError("cross_entropy: logits must have shape (..., C)")
    t = targets.data if isinstance(targets, Tensor) else xp.asarray(targets)
    get_xp(logits.data, t)
    if t.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: targets must be integer class ids, got dtype {t.dtype}")
    if tuple(t.shape) != logits.shape[:-1]:
        raise ValueError(f"cross_entropy: targets shape {tuple(t.shape)} must equal logits.shape[:-1] = "
                         f"{logits.shape[:-1]}")
    _check_loss_options(ignore_index, label_smoothing, "cross_entropy")
    n_classes = logits.shape[-1]
    keep = t != ignore_index if ignore_index is not None else xp.ones(t.shape, dtype=bool)
    safe_t = xp.where(keep, t, 0)
    if not safe_t.size:
        lo = hi = count = 0
    elif xp is numpy:   # host reads cost nothing here
        lo, hi, count = int(safe_t.min()), int(safe_t.max()), int(keep.sum())
    else:               # the range check and the kept count in one device sync; clamped into
        #                 int64 first (uint64 targets of 2**63 and above would wrap negative)
        top = xp.minimum(safe_t.max(), n_classes).astype(xp.int64)
        bottom = safe_t.min().astype(xp.int64) if safe_t.dtype.kind == "i" else xp.zeros((), dtype=xp.int64)
        lo, hi, count = xp.stack([bottom, top, keep.sum().astype(xp.int64)]).tolist()
    if lo < 0 or hi >= n_classes:
        raise IndexError(f"cross_entropy: targets must lie in [0, {n_classes}) (or equal ignore_index), "
                         f"got values in [{lo}, {hi}]")
    logp = _log_softmax_array(logits.data, -1, xp)
    picked = xp.take_along_axis(logp, safe_t[..., None], axis=-1)[..., 0]
    per_item = -(1.0 - label_smoothing) * picked
    if label_smoothing:
        per_item = per_item - (label_smoothing / n_classes) * logp.sum(axis=-1, dtype=sum_dtype(logp.dtype))
    scale = 1.0 / count if count else 0.0
    loss = (xp.where(keep, per_item, 0).sum(dtype=sum_dtype(logp.dtype)) * scale).astype(logits.dtype)

    def vjp(g):
        # (softmax - q) * keep * g / count, written in place on one fresh C-ordered (N, C) array
        # (exp keeps logp's layout: a transposed one would make the reshape below a copy, and
        # the one-hot term would be subtracted from the copy)
        grad = xp.empty(logp.shape, dtype=logp.dtype)
        xp.exp(logp, out=grad)
        if label_smoothing:
            grad -= label_smoothing / n_classes
        flat = grad.reshape(-1, n_classes)
        flat[xp.arange(flat.shape[0]), safe_t.reshape(-1)] -= 1.0 - label_smoothing
        factor = (keep * (g * scale)).astype(grad.dtype)
        grad *= factor[..., None]
        if count < keep.size:   # ignored positions: exactly 0, also for NaN or inf logits (not 0 * NaN)
            xp.copyto(grad, 0, where=~keep[..., None])
        return grad

    return record("cross_entropy", loss, (logits,), (vjp,))


def binary_cross_entropy_with_logits(logits, targets) -> Tensor:
    """Mean of ``-y log sigmoid(x) - (1 - y) log(1 - sigmoid(x))``, stable for any x.

    Uses ``max(x, 0) - x y + log(1 + exp(-|x|))``; an infinite logit costs its limit,
    ``(1 - y) inf`` at +inf and ``y inf`` at -inf, which is 0 where that weight is 0 (the
    formula would give inf - inf = nan). logits and targets have the same shape; targets
    are floats in [0, 1]; an empty input gives NaN (the mean of nothing, as ``mse``). VJP:
    (sigmoid(x) - y) / n.
    """
    logits = as_tensor(logits)
    xp = get_xp(logits.data)
    if logits.dtype.kind != "f":
        raise TypeError(f"binary_cross_entropy_with_logits: logits must be floating point, got dtype {logits.dtype}")
    y = targets.data if isinstance(targets, Tensor) else _numeric_targets(targets, xp, logits.dtype,
                                                                           "binary_cross_entropy_with_logits")
    y = _own(y, targets)     # the backward reads it, after the caller may reuse the array
    if tuple(y.shape) != logits.shape:
        raise ValueError(f"binary_cross_entropy_with_logits: targets shape {tuple(y.shape)} must equal "
                         f"logits shape {logits.shape}")
    x = logits.data
    n = max(x.size, 1)
    infinite = xp.isinf(x)
    with numpy.errstate(invalid="ignore"):       # inf - inf at infinite logits, replaced below
        per = xp.maximum(x, 0) - x * y + xp.log1p(xp.exp(-xp.abs(x)))
    if bool(infinite.any()):
        weight = xp.where(x > 0, 1 - y, y)       # what multiplies |x| in the limit
        limit = xp.where(weight == 0, 0, xp.copysign(xp.inf, weight)).astype(per.dtype)
        per = xp.where(infinite, limit, per)
    loss = (per.sum() / n).astype(logits.dtype)
    if x.size == 0:   # the mean of nothing, as mse and PyTorch (was 0.0)
        loss = xp.full((), xp.nan, dtype=logits.dtype)
    inputs, vjps = (logits,), ((lambda g: (stable_sigmoid(x, xp) - y) * (g / n)),)
    if isinstance(targets, Tensor) and targets.requires_grad:  # d/dy = -x / n
        inputs, vjps = inputs + (targets,), vjps + ((lambda g: -x * (g / n)),)
    return record("bce_with_logits", loss, inputs, vjps)


def mse(prediction, target) -> Tensor:
    """Mean squared error ``mean((prediction - target)^2)``; shapes must match.

    A target given as an array (not a Tensor) is read in the prediction's float dtype, as
    ``binary_cross_entropy_with_logits`` reads its targets: a float64 target array does not
    turn a float32 model's loss into float64.
    """
    prediction = as_tensor(prediction)
    if not isinstance(target, Tensor) and prediction.dtype.kind == "f":
        target = Tensor(_numeric_targets(target, get_xp(prediction.data), prediction.dtype, "mse"))
    target = as_tensor(target, like=prediction)
    if prediction.shape != target.shape:
        raise ValueError(f"mse: prediction shape {prediction.shape} must equal target shape {target.shape}")
    diff = prediction - target
    return (diff * diff).mean()


def dropout(x, p: float = 0.5, training: bool = True, rng=None) -> Tensor:
    """Zero each element with probability ``p`` and scale the rest by 1/(1-p) (inverted dropout).

    Args:
        x: input Tensor.
        p: drop probability in [0, 1).
        training: when False (evaluation), ``x`` is returned unchanged.
        rng: a backend random Generator (``tinytt.backend.default_rng(seed)``) for
            reproducible masks; a fresh unseeded one when None. The uniforms are drawn in
            x's float dtype (float32 or float64; float64 for float16 and complex inputs), so
            the same generator state gives different masks for float32 and float64 inputs.
    x must be floating or complex (TypeError otherwise, in training and evaluation alike).
    """
    x = as_tensor(x)
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 <= p < 1.0:
        raise ValueError(f"dropout: p must be a probability in [0, 1), got {p!r}")
    if x.dtype.kind not in "fc":
        raise TypeError(f"dropout: x must be a floating (or complex) array, got dtype {x.dtype}")
    if not isinstance(training, (bool, numpy.bool_)):
        raise TypeError(f"dropout: training must be a bool, got {training!r}")
    if rng is not None and not callable(getattr(rng, "random", None)):
        raise TypeError(f"dropout: rng must be None or a random Generator (tinytt.backend.default_rng(seed)), "
                        f"got {type(rng).__name__}")
    if not training or p == 0.0:
        return x
    xp = get_xp(x.data)
    if rng is None:  # one unseeded generator per backend (a new CuPy one allocates its states)
        rng = _UNSEEDED.get(xp) or _UNSEEDED.setdefault(xp, xp.random.default_rng())
    draw_dtype = x.dtype if x.dtype.kind == "f" and x.dtype.itemsize in (4, 8) else xp.float64
    mask = (rng.random(x.shape, dtype=draw_dtype) >= p).astype(x.dtype)
    if get_xp(mask) is not xp:
        raise TypeError(f"dropout: rng draws {get_xp(mask).__name__} arrays but x is a {xp.__name__} array; "
                        f"make the generator on x's backend (tinytt.backend.default_rng(seed))")
    mask *= 1.0 / (1.0 - p)
    return record("dropout", x.data * mask, (x,), (lambda g: g * mask,))
