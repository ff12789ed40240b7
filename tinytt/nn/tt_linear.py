"""TTLinear: ``y = x @ W + b`` with the weight ``W`` (in, out) stored as a TT-matrix."""

from __future__ import annotations

import math
import numbers

from .. import ops
from .._validate import bool_arg, check_seed
from ..einsum import einsum
from ..tt import TTMatrix, auto_shape, glorot_tt_matrix
from ..tt.shapes import matrix_shape_arg, normalize_ranks
from . import init as _init
from .module import Module, Parameter

__all__ = ["TTLinear"]


def _prod(xs) -> int:
    return int(math.prod(xs))


#: the cost model's weights (``TTLinear._costs``), measured on 2 cores, float32, in = out = 1024
#: and 4096 x 256, ranks 8-32, B = 1..20,000: one GEMM ``x @ W`` ran 3.5-10x as many
#: multiply-adds per second as the core-by-core einsums, the build of W 2-5x fewer
GEMM_SPEEDUP = 4
BUILD_WEIGHT = 2


class TTLinear(Module):
    """A linear layer whose weight ``W`` (in_features, out_features) is a TT-matrix.

    Args:
        in_features, out_features: sizes; ``prod(row_shape) == in_features`` and
            ``prod(col_shape) == out_features``.
        rank: TT rank of every inner bond (int), or the full rank list
            ``(1, r_1, ..., r_{N-1}, 1)`` as for ``TTEmbedding``.
        shape: optional ``(row_shape, col_shape)``; default ``auto_shape(in, n_cores)`` and
            ``auto_shape(out, n_cores)``.
        n_cores: number of cores when ``shape`` is None (3 by default).
        bias: add a bias (out_features,), initialised to zero.
        dtype: parameter dtype (float32 by default).
        seed: initialisation seed (Glorot through the cores: Var(W) = 2 / (in + out)).

    Parameters are the cores ``cores.0 .. cores.{N-1}`` of shape ``(r_{k-1}, m_k, n_k, r_k)``
    and ``bias``; ``.matrix`` is the ``TTMatrix`` view of them.

    Forward: for x (..., in) with B rows, contracting x reshaped (B, m_1..m_N) with the cores
    one by one costs ``sum_k B (n_1..n_{k-1}) r_{k-1} m_k n_k r_k (m_{k+1}..m_N)``
    multiply-adds; building ``W = full()`` and one GEMM costs about
    ``sum_k (m_1 n_1 .. m_k n_k) r_{k-1} r_k + B in out``. The cheaper of the two is used.
    """

    def __init__(self, in_features, out_features, rank, shape=None, n_cores: int = 3, bias: bool = True,
                 dtype="float32", seed=None):
        check_seed("TTLinear", seed)
        for name, v in (("in_features", in_features), ("out_features", out_features)):
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
                raise ValueError(f"TTLinear: {name} must be a positive int, got {v!r}")
        self.in_features, self.out_features = int(in_features), int(out_features)
        if isinstance(rank, (list, tuple)):
            rank = tuple(rank)
        elif isinstance(rank, bool) or not isinstance(rank, numbers.Integral) or rank < 1:
            raise ValueError(f"TTLinear: rank must be a positive int or a list (1, r_1, ..., r_(N-1), 1), "
                             f"got {rank!r}")
        else:
            rank = int(rank)
        if shape is None:
            if isinstance(n_cores, bool) or not isinstance(n_cores, numbers.Integral) or n_cores < 1:
                raise ValueError(f"TTLinear: n_cores must be a positive int, got {n_cores!r}")
            row_shape, col_shape = auto_shape(self.in_features, n_cores), auto_shape(self.out_features, n_cores)
        else:
            row_shape, col_shape = matrix_shape_arg(shape, "TTLinear: shape")
        if _prod(row_shape) != self.in_features or _prod(col_shape) != self.out_features:
            raise ValueError(f"TTLinear: shape {row_shape} x {col_shape} does not multiply out to "
                             f"({self.in_features}, {self.out_features})")
        if len(row_shape) != len(col_shape):
            raise ValueError(f"TTLinear: row_shape {row_shape} and col_shape {col_shape} need the same length")
        self.row_shape, self.col_shape = row_shape, col_shape
        if isinstance(rank, tuple):
            rank = tuple(normalize_ranks(rank, len(row_shape), "TTLinear: rank"))
        self.rank = rank
        m = glorot_tt_matrix(row_shape, col_shape, rank, seed=seed, dtype=dtype)
        self.cores = [Parameter(c.data) for c in m.cores]
        self.bias = Parameter(_init.zeros((self.out_features,), dtype)) if bool_arg("TTLinear", "bias", bias) else None

    @property
    def matrix(self) -> TTMatrix:
        """The weight as a TTMatrix over this layer's (trainable) cores."""
        return TTMatrix(self.cores)

    @property
    def ranks(self) -> tuple:
        """TT ranks ``(1, r_1, ..., r_{N-1}, 1)`` of the weight."""
        return (1,) + tuple(int(c.shape[3]) for c in self.cores)

    @property
    def compression_ratio(self) -> float:
        """Dense weight size ``in * out`` divided by the cores' parameter count."""
        return self.in_features * self.out_features / sum(c.size for c in self.cores)

    def _costs(self, b: int) -> tuple:
        """(direct, full): estimated costs of the two forward paths for b rows, in einsum
        multiply-adds. The one big GEMM ``x @ W`` runs ``GEMM_SPEEDUP`` times more multiply-adds
        per second than the core-by-core einsums, and building W (small ranks, growing
        outputs) ``BUILD_WEIGHT`` times fewer."""
        ranks, ms, ns = self.ranks, self.row_shape, self.col_shape
        direct = 0
        for k in range(len(ms)):
            direct += b * _prod(ns[:k]) * ranks[k] * ms[k] * ns[k] * ranks[k + 1] * _prod(ms[k + 1:])
        build = 0
        acc = 1
        for k in range(len(ms)):
            acc *= ms[k] * ns[k]
            build += acc * ranks[k] * ranks[k + 1]
        full = b * self.in_features * self.out_features / GEMM_SPEEDUP + BUILD_WEIGHT * build
        return direct, full

    def forward(self, x):
        """``x @ W + b`` with the TT-matrix weight: ``(..., in_features)`` -> ``(..., out_features)``.

        Picks the cheaper of contracting x with the cores one at a time (never forming W,
        ``sum_k B n_<k r_{k-1} m_k n_k r_k m_>k`` multiply-adds) and building W once then one
        GEMM (``B * in * out`` plus the build), by the weighted counts in ``_costs``: the
        contraction wins for a few rows, the GEMM for many (its intermediates, several times
        the input's size, are also what made a 100,000-row batch take 10 GB).
        """
        x = ops.as_tensor(x)
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"TTLinear: expected input (..., {self.in_features}), got shape {x.shape}")
        dtype = self.cores[0].dtype
        if x.dtype.kind not in "fiub":
            raise TypeError(f"TTLinear: input must be a real (float, int or bool) array, got dtype {x.dtype}")
        if x.dtype != dtype:  # the layer's dtype wins (ints and bools are converted too)
            x = ops.astype(x, dtype)
        lead = x.shape[:-1]
        x2 = ops.reshape(x, (-1, self.in_features))
        b = x2.shape[0]
        direct, full = self._costs(b)
        if full < direct:
            y = x2 @ self.matrix.full()
        else:
            y = self._contract(x2)
        if self.bias is not None:
            y = y + self.bias
        return ops.reshape(y, lead + (self.out_features,))

    def _contract(self, x2):
        """x2 (B, in) -> (B, out) core by core, never forming W."""
        b = x2.shape[0]
        ms = self.row_shape
        # z: (B, P = n_1..n_{k-1}, r_{k-1}, m_k, Q = m_{k+1}..m_N)
        z = ops.reshape(x2, (b, 1, 1, ms[0], _prod(ms[1:])))
        for k, core in enumerate(self.cores):
            z = einsum("bpamq,amnc->bpncq", z, core)  # (B, P, n_k, r_k, Q)
            if k + 1 < len(ms):
                q = _prod(ms[k + 2:])
                z = ops.reshape(z, (b, z.shape[1] * z.shape[2], core.shape[3], ms[k + 1], q))
        return ops.reshape(z, (b, self.out_features))

    def extra_repr(self) -> str:
        return (f"{self.in_features}, {self.out_features}, rank={self.rank}, "
                f"shape={self.row_shape}x{self.col_shape}")
