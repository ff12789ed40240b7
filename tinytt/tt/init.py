"""Glorot initialisation of TT-matrices through the cores (the TT-embedding paper's scheme, plus a
rescaling of tinytt's own).

Every core entry is drawn i.i.d. ``N(0, s^2)`` with ``s^2 = (sigma^2 / prod_k r_k)^(1/N)``
(product over the internal ranks r_1..r_{N-1}) and ``sigma^2 = 2 / (V' + D)``,
``V' = prod m_k``, ``D = prod n_k``. Each entry of W is a sum of ``prod_k r_k`` products of N
independent such variables, so ``E[W] = 0`` and ``Var[W] = sigma^2`` exactly in expectation.
One draw's variance spreads around that (the entries share few random numbers), so the drawn
cores are then scaled by one common factor that makes the variance of this W exactly sigma^2
(tinytt's addition: the paper's code uses the i.i.d. draw as it comes).
"""

from __future__ import annotations

import math

import numpy

from .. import backend
from .._validate import check_seed
from ..tensor import Tensor
from .shapes import matrix_shapes, normalize_ranks
from .tt_matrix import TTMatrix

__all__ = ["glorot_std", "glorot_tt_matrix_cores", "glorot_tt_matrix"]


def glorot_std(row_shape, col_shape, ranks) -> float:
    """Per-entry core std ``s = (sigma^2 / prod_k r_k)^(1/(2N))``, ``sigma^2 = 2 / (prod m + prod n)``:
    the std the cores are drawn with (before ``glorot_tt_matrix_cores``' common rescaling)."""
    row_shape, col_shape = matrix_shapes(row_shape, col_shape, "glorot_std")
    n = len(row_shape)
    ranks = normalize_ranks(ranks, n, "glorot_std: ranks")
    return (_glorot_variance(row_shape, col_shape) / math.prod(ranks[1:-1])) ** (1.0 / (2 * n))


def _glorot_variance(row_shape, col_shape) -> float:
    """``sigma^2 = 2 / (V' + D)``, V' and D the products of the row and column factors."""
    return 2.0 / (math.prod(row_shape) + math.prod(col_shape))


def glorot_tt_matrix_cores(row_shape, col_shape, rank, seed=None, dtype="float32") -> list:
    """Glorot-initialised TT-matrix cores ``(r_{k-1}, m_k, n_k, r_k)`` on the default backend.

    ``rank``: an int (every internal rank) or N+1 ints with boundary 1s. The variance of the
    entries of W is ``2 / (V' + D)`` for every draw (i.i.d. normal cores, then one common
    rescaling computed from the cores). The entries are drawn on the host in float64 with
    ``numpy.random.default_rng(seed)``, then cast to ``dtype`` and moved to the backend (as
    :mod:`tinytt.nn.init` does): one seed gives the same layer in float32 and float64 and on
    every backend. Cost O(number of parameters).
    """
    row_shape, col_shape = matrix_shapes(row_shape, col_shape)
    ranks = normalize_ranks(rank, len(row_shape), "rank")
    dtype = numpy.dtype(dtype)
    if dtype not in (numpy.float32, numpy.float64):
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    std = glorot_std(row_shape, col_shape, ranks)
    rng = numpy.random.default_rng(check_seed("glorot_tt_matrix_cores", seed))
    drawn = [rng.standard_normal((ranks[k], m, n, ranks[k + 1])) * std
             for k, (m, n) in enumerate(zip(row_shape, col_shape))]
    # One draw's variance spreads around sigma^2 (std 4-15% for the paper's shapes: the V' x D
    # entries share few random numbers); scale every core by the same factor so that this
    # matrix's variance is sigma^2 exactly (computed from the cores, the matrix is never built)
    var = _matrix_variance(drawn)
    sigma2 = _glorot_variance(row_shape, col_shape)
    if var > 0 and math.isfinite(var):
        factor = (sigma2 / var) ** (1.0 / (2 * len(drawn)))
        drawn = [g * factor for g in drawn]
    return [backend.to_device(g.astype(dtype)) for g in drawn]


def _matrix_variance(cores) -> float:
    """Variance of the entries of the TT-matrix with float64 host ``cores``, from
    ``sum(W)`` and ``||W||_F^2`` contracted core by core. Cost O(sum_k m_k n_k r^3)."""
    total = numpy.ones(1)
    squares = numpy.ones((1, 1))
    for c in cores:
        total = total @ c.sum(axis=(1, 2))
        squares = numpy.einsum("bijc,bijd->cd", numpy.einsum("ab,aijc->bijc", squares, c), c)
    size = math.prod(c.shape[1] * c.shape[2] for c in cores)
    mean = total.item() / size
    return squares.item() / size - mean * mean


def glorot_tt_matrix(row_shape, col_shape, rank, seed=None, dtype="float32") -> TTMatrix:
    """A ``TTMatrix`` with Glorot-initialised cores (leaf Tensors, ``requires_grad=True``).

    Example: ``glorot_tt_matrix((25, 30, 40), (4, 8, 8), 16)`` has 68,160 parameters and
    ``Var(W) = 2 / (30000 + 256)``.
    """
    cores = glorot_tt_matrix_cores(row_shape, col_shape, rank, seed=seed, dtype=dtype)
    return TTMatrix([Tensor(c, requires_grad=True) for c in cores])
