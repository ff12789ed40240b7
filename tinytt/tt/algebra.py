"""Differentiable TT algebra over cores: add, sub, scale, hadamard, dot, norm; and ``round_tt``.

Every function takes ``TensorTrain``s whose cores are ``Tensor``s and builds its result with
the autodiff ops (``concat``, ``einsum``, ``*``), so gradients flow back to the input cores.
Results are exact (no truncation): ranks add under ``+``/``-`` and multiply under
``hadamard``; use ``round_tt`` (exported as ``tinytt.round``) to recompress.
"""

from __future__ import annotations

import math
import numbers

import numpy

from .. import backend
from .. import ops
from ..einsum import einsum
from ..ops import as_tensor, concat
from ..ops import sum as tsum
from ..tensor import Tensor
from .decompositions import _norm, core_norm
from .tensor_train import TensorTrain, balanced_cores
from .tt_matrix import TTMatrix

__all__ = ["add", "sub", "scale", "hadamard", "dot", "norm", "round_tt"]


def _check_pair(a, b, op: str) -> None:
    if not isinstance(a, TensorTrain) or not isinstance(b, TensorTrain):
        raise TypeError(
            f"{op}: both operands must be TensorTrain, got {type(a).__name__} and {type(b).__name__}"
        )
    if a.shape != b.shape:
        raise ValueError(f"{op}: shapes differ: {a.shape} and {b.shape}")
    if a.dtype != b.dtype:
        raise TypeError(f"{op}: dtypes differ: {a.dtype} and {b.dtype}; convert one first")
    backend.get_xp(a.cores[0].data, b.cores[0].data)  # raises on a NumPy/CuPy mix


def add(a: TensorTrain, b: TensorTrain) -> TensorTrain:
    """``A + B`` exactly, ranks ``r^A + r^B`` (first/last core concatenated, middle block-diagonal).

    Cores (r^A_{k-1} + r^B_{k-1}, n_k, r^A_k + r^B_k); cost O(sum_k n_k (r^A + r^B)^2) memory.
    Differentiable in the cores of both.
    """
    _check_pair(a, b, "add")
    if a.ndim == 1:
        return TensorTrain([a.cores[0] + b.cores[0]])
    xp = backend.get_xp(a.cores[0].data)
    out = []
    last = a.ndim - 1
    for k, (x, y) in enumerate(zip(a.cores, b.cores)):
        if k == 0:
            out.append(concat([x, y], axis=2))
        elif k == last:
            out.append(concat([x, y], axis=0))
        else:
            (ra, n, sa), (rb, _, sb) = x.shape, y.shape
            top = concat([x, Tensor(xp.zeros((ra, n, sb), dtype=x.dtype))], axis=2)
            bottom = concat([Tensor(xp.zeros((rb, n, sa), dtype=x.dtype)), y], axis=2)
            out.append(concat([top, bottom], axis=0))
    return TensorTrain(out)


def scale(a: TensorTrain, c) -> TensorTrain:
    """``c * A`` for a scalar (Python number or 0-d Tensor): the first core is scaled, others shared.

    Cost O(size of the first core); differentiable in the cores and in a Tensor ``c``.
    """
    if not isinstance(a, TensorTrain):
        raise TypeError(f"scale: a must be a TensorTrain, got {type(a).__name__}")
    if isinstance(c, numbers.Number):
        if isinstance(c, bool) or not isinstance(c, numbers.Real):
            raise TypeError(f"scale: c must be a real scalar, got {c!r}")
    else:
        try:
            c = as_tensor(c, like=a.cores[0])
        except TypeError:
            raise TypeError(f"scale: c must be a real scalar or a 0-d Tensor, got {c!r}") from None
        if c.ndim != 0:
            raise TypeError(f"scale: c must be a scalar or a 0-d Tensor, got shape {c.shape}")
        if c.dtype.kind not in "fiu":
            raise TypeError(f"scale: c must be a real scalar, got dtype {c.dtype}")
        if c.dtype != a.dtype:  # a float64 0-d array must not promote one float32 core
            c = c.astype(a.dtype)
    return TensorTrain([a.cores[0] * c] + list(a.cores[1:]))


def sub(a: TensorTrain, b: TensorTrain) -> TensorTrain:
    """``A - B`` exactly (``add(A, scale(B, -1))``), ranks ``r^A + r^B``."""
    _check_pair(a, b, "sub")
    return add(a, scale(b, -1.0))


def hadamard(a: TensorTrain, b: TensorTrain) -> TensorTrain:
    """Elementwise product ``A * B``: cores ``G^A_k[:, i, :] kron G^B_k[:, i, :]``, ranks ``r^A r^B``.

    Cost O(sum_k n_k (r^A r^B)^2); exact and differentiable. The operands' cores are balanced
    first (``balanced_cores``) when their scales are very uneven, so a product core does not
    overflow where the product tensor does not.
    """
    _check_pair(a, b, "hadamard")
    out = []
    a_cores = balanced_cores(a.cores)
    for x, y in zip(a_cores, a_cores if b is a else balanced_cores(b.cores)):
        (ra, n, sa), (rb, _, sb) = x.shape, y.shape
        out.append(einsum("anb,cnd->acnbd", x, y).reshape(ra * rb, n, sa * sb))
    return TensorTrain(out)


def dot(a: TensorTrain, b: TensorTrain) -> Tensor:
    """Inner product ``<A, B> = sum_i A[i] B[i]`` as a 0-d Tensor, without building either tensor.

    Contracts left to right keeping an (r^A_k, r^B_k) matrix (cores of very uneven scale
    balanced first, ``balanced_cores``, so the partial products neither overflow nor underflow
    where the result does not); cost O(sum_k n_k r^A r^B (r^A + r^B)). Differentiable in both.
    """
    _check_pair(a, b, "dot")
    a_cores = balanced_cores(a.cores)
    b_cores = a_cores if b is a else balanced_cores(b.cores)   # <A, A>: norm's gradient path
    v = einsum("anb,cnd->bd", a_cores[0], b_cores[0])
    for x, y in zip(a_cores[1:], b_cores[1:]):
        v = einsum("ac,anb,cnd->bd", v, x, y)
    return tsum(v)


def norm(a: TensorTrain) -> Tensor:
    """Frobenius norm ``||A||_F`` as a 0-d Tensor.

    Value: from a right-to-left QR sweep (``||A|| = ||G_1||`` once cores 2..N are
    right-orthogonal), so there is no cancellation and no overflow of ``<A, A>``.
    Gradient: ``d||A|| = <A, dA> / ||A||`` through ``dot(A, A)``; at ``A = 0`` (no division by
    zero) and where the norm overflows the dtype (value inf) the gradient is defined as 0.
    Cost O(sum_k n_k r^3).
    """
    if not isinstance(a, TensorTrain):
        raise TypeError(f"norm: a must be a TensorTrain, got {type(a).__name__}")
    xp = backend.get_xp(a.cores[0].data)
    value = core_norm(a.core_arrays())
    with numpy.errstate(over="ignore"):   # a norm beyond the dtype is inf there, by design
        const = Tensor(xp.asarray(value, dtype=a.dtype))
    if not a.requires_grad:
        return const
    # The gradient path is <S, S> with S = A / P: every core divided by its own Frobenius norm
    # (P = their product, held constant), so no partial contraction can overflow or underflow
    # whatever core holds the scale; it runs in float64 (float32 near its limits would
    # overflow the factors). Then d||A|| = <A, dA> / ||A|| = (v / (2 <S, S>)) d<S, S>.
    # At A = 0, or where ||A|| itself overflows (inf), the gradient is 0: the same finite
    # <S, S> times 0 keeps the forward value exact (<A, A> there is inf, and inf - inf NaN).
    scaled = []
    for c in (c if c.dtype == "float64" else ops.astype(c, "float64") for c in a.cores):
        # divide by 2**e with 2**e ~ ||core||, in two exact power-of-two steps (a subnormal
        # norm's 2**-e alone would overflow)
        e = math.frexp(_norm(c.data))[1]
        scaled.append(c * (2.0 ** -(e // 2)) * (2.0 ** -(e - e // 2)))
    s_tt = TensorTrain(scaled)
    sq = dot(s_tt, s_tt)
    sq_value = float(sq.data)
    usable = value != 0.0 and math.isfinite(value) and sq_value > 0 and math.isfinite(sq_value)
    factor = 0.5 * value / sq_value if usable else 0.0
    # value + (sq - sq) * factor: exactly ``value`` forward
    delta = (sq - sq.detach()) * factor
    return const + (delta if a.dtype == "float64" else ops.astype(delta, a.dtype))


def round_tt(a, eps: float = 1e-12, max_rank=None):
    """``a.round(eps, max_rank)`` for a ``TensorTrain`` or ``TTMatrix`` (exported as ``round``).

    Guarantee ``||A - round(A)||_F <= eps ||A||_F`` when ``max_rank`` does not bind; ranks
    never exceed ``max_rank``. Returns fresh leaves (not differentiated through).
    """
    if not isinstance(a, (TensorTrain, TTMatrix)):
        raise TypeError(f"round: a must be a TensorTrain or TTMatrix, got {type(a).__name__}")
    return a.round(eps, max_rank)

