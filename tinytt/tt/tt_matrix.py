"""``TTMatrix``: a matrix of shape (m_1..m_N, n_1..n_N) in TT format, and ``tt_matrix_svd``.

Cores ``G_k`` have shape ``(r_{k-1}, m_k, n_k, r_k)``, ``r_0 = r_N = 1``:

    W[i, j] = G_1[:, i_1, j_1, :] @ .. @ G_N[:, i_N, j_N, :]

with ``(i_1..i_N) = unravel_index(i, (m_1..m_N))`` and ``(j_1..j_N) = unravel_index(j,
(n_1..n_N))`` in C order (first digit most significant; GUIDE §1). ``full``, ``rows`` and
``@`` are differentiable in the cores.
"""

from __future__ import annotations

import math

from .. import backend
from ..einsum import einsum
from ..ops import as_tensor
from ..tensor import Tensor
from .decompositions import round_cores, tt_svd_cores
from .lookup import tt_matrix_rows
from .shapes import matrix_shapes
from .tensor_train import CoreChain, TensorTrain, _as_core_tensors

__all__ = ["TTMatrix", "tt_matrix_svd"]


class TTMatrix(CoreChain):
    """A TT-matrix from N cores ``(r_{k-1}, m_k, n_k, r_k)`` (arrays or ``Tensor``s).

    Validation as for ``TensorTrain`` (4-D cores, boundary ranks 1, matching ranks, one dtype
    and backend). Attributes: ``cores``, ``row_shape`` (m_k), ``col_shape`` (n_k), ``shape``
    (prod m, prod n), ``ranks``, ``ndim`` (number of cores N), ``dtype``, ``num_parameters``.
    """

    def __init__(self, cores):
        if isinstance(cores, TTMatrix):
            cores = cores.cores
        self.cores = _as_core_tensors(cores, 4)

    @property
    def row_shape(self) -> tuple:
        """Row mode sizes ``(m_1, ..., m_N)``; the matrix has ``prod(m_k)`` rows."""
        return tuple(int(c.shape[1]) for c in self.cores)

    @property
    def col_shape(self) -> tuple:
        """Column mode sizes ``(n_1, ..., n_N)``; the matrix has ``prod(n_k)`` columns."""
        return tuple(int(c.shape[2]) for c in self.cores)

    @property
    def shape(self) -> tuple:
        """``(prod(row_shape), prod(col_shape))``."""
        return (math.prod(self.row_shape), math.prod(self.col_shape))

    def __repr__(self) -> str:
        return (f"TTMatrix(row_shape={self.row_shape}, col_shape={self.col_shape}, "
                f"ranks={self.ranks}, dtype={self.dtype})")

    def to_tt(self) -> TensorTrain:
        """The same data as a TT-tensor of shape (m_1 n_1, .., m_N n_N) (differentiable reshape)."""
        return TensorTrain([c.reshape(c.shape[0], c.shape[1] * c.shape[2], c.shape[3]) for c in self.cores])

    # --- dense views ---------------------------------------------------------------------------
    def full(self) -> Tensor:
        """The dense matrix (prod m, prod n), differentiable; rows/columns in C order.

        Contracts left to right then permutes (m_1, n_1, .., m_N, n_N) -> (m.., n..);
        cost ``sum_{k>=2} (m_1 n_1 .. m_k n_k) r_{k-1} r_k`` multiply-adds, memory ``prod m * prod n``.
        """
        n = self.ndim
        dense = self.to_tt().full()
        inter = []
        for m_k, n_k in zip(self.row_shape, self.col_shape):
            inter += [m_k, n_k]
        perm = list(range(0, 2 * n, 2)) + list(range(1, 2 * n, 2))
        return dense.reshape(*inter).transpose(*perm).reshape(*self.shape)

    def rows(self, ids, strategy: str = "auto", padding_idx=None) -> Tensor:
        """Rows ``W[ids]`` for an integer array of any shape S -> Tensor S + (prod n,).

        Never builds W unless the cost model says that is cheapest: the fused lookup of
        ``tinytt.tt.lookup.tt_matrix_rows`` (deduplicated ids, digits in C order, partial
        products shared between ids with a common prefix; ``strategy`` "gather", "prefix",
        "full" or "auto"). Differentiable: the cores get gradient only at the digits that
        occur. ``padding_idx`` rows are zero and send no gradient. Raises TypeError for
        non-integer ids and IndexError outside [0, prod m).
        """
        return tt_matrix_rows(self.cores, ids, self.row_shape, self.col_shape, strategy=strategy,
                              padding_idx=padding_idx)

    def __matmul__(self, x) -> Tensor:
        """``W @ X`` for a dense X of shape (prod n,) or (prod n, b) without building W.

        Sweeps the cores over X reshaped to (n_1..n_N, b): cost
        ``sum_k (m_1..m_{k-1}) r_{k-1} m_k n_k r_k (n_{k+1}..n_N) b``. Differentiable in the cores
        and in X. Returns shape (prod m,) or (prod m, b).
        """
        if isinstance(x, TTMatrix):
            raise TypeError("W @ X: X must be a dense vector or matrix; the product of two TT-matrices is not "
                            "implemented (use W @ X.full() for a dense result)")
        x = as_tensor(x)
        if x.ndim not in (1, 2) or x.shape[0] != self.shape[1]:
            raise ValueError(
                f"W @ X needs X of shape ({self.shape[1]},) or ({self.shape[1]}, b), got {x.shape}"
            )
        if x.dtype != self.dtype:
            raise TypeError(f"W @ X: dtypes differ: W is {self.dtype}, X is {x.dtype}")
        vector = x.ndim == 1
        b = 1 if vector else x.shape[1]
        # z: (P, r_{k-1}, n_k, Q) with P = m_1..m_{k-1}, Q = n_{k+1}..n_N * b
        z = x.reshape(1, 1, self.col_shape[0], -1)
        for k, c in enumerate(self.cores):
            z = einsum("pajq,amjc->pmcq", z, c)  # (P, m_k, r_k, Q)
            p = z.shape[0] * z.shape[1]
            if k + 1 < self.ndim:
                z = z.reshape(p, c.shape[3], self.col_shape[k + 1], -1)
        out = z.reshape(self.shape[0], b)
        return out.reshape(self.shape[0]) if vector else out

    # --- decompositions ------------------------------------------------------------------------
    def round(self, eps: float = 1e-12, max_rank=None) -> "TTMatrix":
        """TT rounding of the matrix (as a TT over merged modes m_k n_k): relative Frobenius error
        ``<= eps`` and ranks ``<= max_rank``; fresh leaves. Cost ``O(sum_k m_k n_k r^3)``.
        """
        merged = [c.reshape(c.shape[0], c.shape[1] * c.shape[2], c.shape[3]) for c in self.core_arrays()]
        out = round_cores(merged, eps, max_rank)
        return TTMatrix([g.reshape(g.shape[0], m, n, g.shape[2])
                         for g, m, n in zip(out, self.row_shape, self.col_shape)])


def tt_matrix_svd(w, row_shape, col_shape, eps: float = 1e-12, max_rank=None,
                  requires_grad: bool = False) -> TTMatrix:
    """TT-SVD of a dense matrix ``w`` (prod m, prod n) into a ``TTMatrix`` of fresh leaves.

    ``w`` is reshaped to (m_1..m_N, n_1..n_N), permuted to (m_1, n_1, .., m_N, n_N), merged to
    (m_1 n_1, .., m_N n_N) and TT-SVD'd; same guarantee as ``tt_svd``:
    ``||w - full||_F <= eps ||w||_F`` and ranks ``<= max_rank``. Cost: one transpose copy plus
    the TT-SVD.
    """
    row_shape, col_shape = matrix_shapes(row_shape, col_shape)
    if isinstance(w, Tensor):
        w = w.data
    xp = backend.get_xp(w)
    w = xp.asarray(w)
    expected = (math.prod(row_shape), math.prod(col_shape))
    if w.ndim != 2 or tuple(w.shape) != expected:
        raise ValueError(f"w must have shape {expected} for row_shape {row_shape} and col_shape "
                         f"{col_shape}, got {tuple(w.shape)}")
    n = len(row_shape)
    perm = [ax for k in range(n) for ax in (k, n + k)]
    t = w.reshape(row_shape + col_shape).transpose(perm).reshape([m * q for m, q in zip(row_shape, col_shape)])
    cores = tt_svd_cores(t, eps, max_rank, name="w")
    return TTMatrix([Tensor(g.reshape(g.shape[0], m, q, g.shape[2]), requires_grad=requires_grad)
                     for g, m, q in zip(cores, row_shape, col_shape)])
