"""``TTEmbedding``: the embedding layer of *Tensorized Embedding Layers* (arXiv 1901.10787).

The V x D embedding matrix is a TT-matrix with cores ``(r_{k-1}, v_k, d_k, r_k)``,
``V' = v_1...v_N >= V`` (the vocabulary padded up so it factors evenly) and
``D = d_1...d_N``. A lookup never builds the V' x D matrix: ``tinytt.tt.lookup``
contracts only the core slices the batch needs, forward and backward.
"""

from __future__ import annotations

import math
import numbers

from .._validate import as_int, check_seed
from ..backend import get_xp
from ..tensor import Tensor
from ..tt.init import glorot_tt_matrix_cores
from ..ops import check_ids
from ..tt.lookup import rows_of_checked_ids
from ..tt.shapes import auto_shape, matrix_shape_arg, normalize_ranks, suggest_shape, tt_matrix_num_params
from ..tt.tt_matrix import TTMatrix, tt_matrix_svd
from .layers import check_padding_idx
from .module import Module, Parameter

__all__ = ["TTEmbedding"]


def _check_count(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _is_rank(rank) -> bool:
    """True for a positive int (or NumPy integer, or 0-d integer array) or a list/tuple of
    positive ints (not bools, not strings)."""
    def positive_int(r):
        r = as_int(r)
        return r is not None and r >= 1
    if isinstance(rank, (list, tuple)):
        return len(rank) > 0 and all(positive_int(r) for r in rank)
    return positive_int(rank)


class _CallableInt(int):
    """An int that returns itself when called."""

    def __call__(self) -> int:
        return int(self)


class TTEmbedding(Module):
    """Embedding ``ids -> W[ids]`` with ``W`` (num_embeddings x embedding_dim) stored as a TT-matrix.

    Args:
        num_embeddings: vocabulary size V.
        embedding_dim: vector size D.
        rank: internal TT rank (int) or the full rank list ``(1, r_1, ..., r_{N-1}, 1)``.
        n_cores: number of cores N when ``shape`` is None.
        shape: ``(row_shape, col_shape)`` with ``prod(row_shape) >= V`` and
            ``prod(col_shape) == D``; None picks ``(suggest_shape(V, N), auto_shape(D, N))``,
            the paper's entropy heuristic.
        padding_idx: an id whose vector is always zero and receives no gradient; an int in
            [-V, V) (negative counts from the end, as in PyTorch).
        dtype: "float32" (default) or "float64".
        seed: seed of the Glorot initialisation.

    The cores are drawn i.i.d. N(0, s^2) with ``s^2 = (sigma^2 / prod r_k)^(1/N)`` and
    ``sigma^2 = 2 / (V' + D)`` (so ``E[Var(W)] = sigma^2``), then scaled by one common factor
    that makes this draw's ``Var(W)`` exactly sigma^2 (``tinytt.tt.init``).

    Calling the layer on integer ids of shape S returns a Tensor S + (D,).
    Lookup cost: see ``tinytt.tt.lookup`` (deduplicated ids, no V' x D matrix).
    """

    def __init__(self, num_embeddings, embedding_dim, rank=16, n_cores: int = 3, shape=None,
                 padding_idx=None, dtype="float32", seed=None):
        check_seed("TTEmbedding", seed)
        self.num_embeddings = _check_count(num_embeddings, "num_embeddings")
        self.embedding_dim = _check_count(embedding_dim, "embedding_dim")
        if shape is None:
            n_cores = _check_count(n_cores, "n_cores")
            row_shape, col_shape = self.default_shape(self.num_embeddings, self.embedding_dim, n_cores)
        else:
            row_shape, col_shape = self._check_shape(shape)
        self._check_padding(padding_idx)
        cores = glorot_tt_matrix_cores(row_shape, col_shape, rank, seed=seed, dtype=dtype)
        self._init_from_cores(cores)

    @staticmethod
    def default_shape(num_embeddings: int, embedding_dim: int, n_cores: int = 3) -> tuple:
        """``(suggest_shape(V, N), auto_shape(D, N))``: the shape used when ``shape=None``
        (the paper's entropy heuristic; V is padded up to the product of the row factors)."""
        return suggest_shape(num_embeddings, n_cores), auto_shape(embedding_dim, n_cores)

    def _check_shape(self, shape, name: str = "shape"):
        row_shape, col_shape = matrix_shape_arg(shape, name)
        if len(row_shape) != len(col_shape) or not row_shape or min(row_shape + col_shape) < 1:
            raise ValueError(f"{name} must be two non-empty tuples of positive ints of equal length, got {shape!r}")
        if math.prod(row_shape) < self.num_embeddings:
            raise ValueError(f"{name}: prod(row_shape) = {math.prod(row_shape)} must be >= num_embeddings = "
                             f"{self.num_embeddings}")
        if math.prod(col_shape) != self.embedding_dim:
            raise ValueError(f"{name}: prod(col_shape) = {math.prod(col_shape)} must equal embedding_dim = "
                             f"{self.embedding_dim}")
        return row_shape, col_shape

    def _check_padding(self, padding_idx) -> None:
        self.padding_idx = check_padding_idx(padding_idx, self.num_embeddings, "TTEmbedding")

    def _init_from_cores(self, cores) -> None:
        self.cores = [Parameter(c) for c in cores]
        self.strategy = "auto"

    @classmethod
    def from_dense(cls, weight, rank=None, eps=None, row_shape=None, col_shape=None, n_cores: int = 3,
                   padding_idx=None) -> "TTEmbedding":
        """A TTEmbedding approximating a dense V x D matrix by TT-SVD (``tt_matrix_svd``).

        Give ``rank`` (an int capping every TT rank, or the full list
        ``(1, r_1, ..., r_{N-1}, 1)`` of caps), ``eps`` (relative Frobenius error bound of
        the padded matrix), or both. ``row_shape`` / ``col_shape`` default to
        ``suggest_shape(V, N)`` / ``auto_shape(D, N)``, with N the length of whichever is
        given, else ``n_cores``. Rows V..V'-1 of the padding are zero. The result's dtype
        is the weight's: float32 or float64 (convert float16 weights first). Cost: that of
        the TT-SVD of a V' x D matrix.
        """
        if rank is None and eps is None:
            raise ValueError("from_dense: give rank=..., eps=... or both")
        if rank is not None and not _is_rank(rank):
            raise ValueError(f"from_dense: rank must be a positive int or a list of positive ints "
                             f"(1, r_1, ..., r_(N-1), 1), got {rank!r}")
        if isinstance(weight, Tensor):
            weight = weight.data
        xp = get_xp(weight)
        weight = xp.asarray(weight)
        if weight.ndim != 2 or weight.dtype.kind != "f":
            raise ValueError(f"from_dense: weight must be a 2-D float array (V, D), got shape "
                             f"{tuple(weight.shape)} and dtype {weight.dtype}")
        if weight.dtype not in (xp.float32, xp.float64):
            raise TypeError(f"from_dense: weight must be float32 or float64 (the layer's dtypes), got "
                            f"{weight.dtype}; convert it first, e.g. weight.astype('float32')")
        if not bool(xp.isfinite(weight).all()):
            raise ValueError("from_dense: weight contains NaN or Inf; TT-SVD needs finite entries")
        n_rows, dim = (int(s) for s in weight.shape)
        given = row_shape if row_shape is not None else col_shape
        n_cores = _check_count(n_cores, "n_cores") if given is None else len(tuple(given))
        row_shape = tuple(row_shape) if row_shape is not None else suggest_shape(n_rows, n_cores)
        col_shape = tuple(col_shape) if col_shape is not None else auto_shape(dim, n_cores)
        if isinstance(rank, (list, tuple)):
            rank = normalize_ranks(rank, len(row_shape), "from_dense: rank")
        elif rank is not None:
            rank = as_int(rank)
        layer = cls.__new__(cls)
        layer.num_embeddings, layer.embedding_dim = n_rows, dim
        layer._check_shape((row_shape, col_shape), name="from_dense: row_shape/col_shape")
        layer._check_padding(padding_idx)
        padded = xp.zeros((math.prod(row_shape), dim), dtype=weight.dtype)
        padded[:n_rows] = weight
        matrix = tt_matrix_svd(padded, row_shape, col_shape, eps=1e-12 if eps is None else eps, max_rank=rank)
        layer._init_from_cores([c.data for c in matrix.cores])
        return layer

    # --- views ------------------------------------------------------------------------------
    @property
    def matrix(self) -> TTMatrix:
        """The TTMatrix (V' x D) whose cores are this layer's parameters."""
        return TTMatrix(self.cores)

    @property
    def row_shape(self) -> tuple:
        """Factors ``(v_1, ..., v_N)`` of the padded vocabulary size V'."""
        return tuple(int(c.shape[1]) for c in self.cores)   # (not via .matrix: no re-validation per call)

    @property
    def col_shape(self) -> tuple:
        """Factors ``(d_1, ..., d_N)`` of the embedding dimension D."""
        return tuple(int(c.shape[2]) for c in self.cores)

    @property
    def ranks(self) -> tuple:
        """TT ranks ``(1, r_1, ..., r_{N-1}, 1)``."""
        return self.matrix.ranks

    @property
    def num_parameters(self) -> int:
        """Number of core entries ``sum_k r_{k-1} v_k d_k r_k``.

        An int that can also be called, so ``layer.num_parameters`` (this layer's
        property) and ``layer.num_parameters()`` (every Module's method) agree.
        """
        return _CallableInt(tt_matrix_num_params(self.row_shape, self.col_shape, self.ranks))

    @property
    def compression_ratio(self) -> float:
        """``V * D / num_parameters`` with the real (unpadded) V."""
        return self.num_embeddings * self.embedding_dim / self.num_parameters

    def to_dense(self) -> Tensor:
        """The V x D matrix (padding rows cut off; the padding_idx row zeroed), differentiable."""
        full = self.matrix.full()[: self.num_embeddings]
        if self.padding_idx is None:
            return full
        xp = get_xp(full.data)
        keep = xp.ones((self.num_embeddings, 1), dtype=full.dtype)
        keep[self.padding_idx] = 0
        return full * Tensor(keep)

    def __repr__(self) -> str:
        return (f"TTEmbedding({self.num_embeddings}, {self.embedding_dim}, shape=({self.row_shape}, "
                f"{self.col_shape}), ranks={self.ranks}, compression={self.compression_ratio:.1f}x)")

    # --- lookup -----------------------------------------------------------------------------
    def forward(self, ids, strategy=None) -> Tensor:
        """Embedding vectors for integer ``ids`` of shape S -> Tensor S + (D,).

        ``strategy`` overrides ``self.strategy`` ("auto", "gather", "prefix", "full").
        Raises TypeError for non-integer ids, ValueError for an empty batch and
        IndexError for ids outside [0, num_embeddings).
        """
        xp = get_xp(self.cores[0].data)
        ids = check_ids(ids, self.num_embeddings, xp, "TTEmbedding")
        if ids.size == 0:
            raise ValueError(f"TTEmbedding: ids must not be empty, got shape {tuple(ids.shape)}")
        strategy = self.strategy if strategy is None else strategy
        return rows_of_checked_ids(self.cores, ids, self.row_shape, self.col_shape, strategy=strategy,
                                   padding_idx=self.padding_idx)
