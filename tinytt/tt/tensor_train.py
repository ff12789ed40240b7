"""``TensorTrain``: a TT-tensor held as a list of differentiable cores, plus ``tt_svd`` and ``random_tt``.

A TT-tensor of shape (n_1..n_N) with ranks (1, r_1, .., r_{N-1}, 1) stores cores
``G_k`` of shape ``(r_{k-1}, n_k, r_k)``:

    A[i_1, .., i_N] = G_1[:, i_1, :] @ G_2[:, i_2, :] @ .. @ G_N[:, i_N, :]

Cores are ``Tensor``s, so ``full``, ``norm``, ``dot``, element access, ``gather`` and the
algebra (``+``, ``-``, scalar ``*``, ``hadamard``) are differentiable. ``tt_svd``, ``round`` and
``orthogonalize`` return fresh leaves (decompositions are not differentiated through).
"""

from __future__ import annotations

import math
import numbers

import numpy

from .. import backend
from ..ops import as_tensor, astype, take
from ..einsum import einsum
from ..tensor import Tensor
from .cores import check_cores, random_cores
from .decompositions import orthogonalize_cores, round_cores, tt_svd_cores

__all__ = ["TensorTrain", "tt_svd", "random_tt"]


#: cores whose largest entries lie within 2**BALANCE_SPREAD of each other are contracted as
#: they are; beyond it, ``balanced_cores`` first evens out their scales
BALANCE_SPREAD = 64


def balanced_cores(cores) -> list:
    """The same TT (a list of core Tensors), each core multiplied by an exact power of two so
    that their largest entries all lie near ``2**(E / N)``, ``E`` the sum of their binary
    exponents: the product of the factors is 1, so every entry of the tensor is unchanged.

    Contracted left to right, unevenly scaled cores (one 2**660, the next 2**-660) overflow or
    underflow in the partial products although the tensor itself is ordinary; balanced, a
    partial product of k cores has the scale of ``2**(k E / N)``. Differentiable (constant
    factors). Cost: one pass over each core for its largest entry and one device sync; cores
    within ``2**BALANCE_SPREAD`` of each other, zero or non-finite cores come back unchanged.
    """
    cores = list(cores)
    if len(cores) < 2:
        return cores
    xp = backend.get_xp(cores[0].data)
    if xp is numpy:    # (Python floats: a third of the cost of stacking small NumPy scalars)
        peaks = [float(numpy.abs(c.data).max()) for c in cores]
    else:
        peaks = xp.stack([xp.abs(c.data).max() for c in cores]).astype(xp.float64).tolist()
    if not all(0.0 < p < math.inf for p in peaks):     # zero, inf or NaN cores: as they are
        return cores
    exps = [math.frexp(p)[1] for p in peaks]
    if max(exps) - min(exps) <= BALANCE_SPREAD:
        return cores
    n, total = len(exps), sum(exps)
    targets = [total // n + (1 if k < total % n else 0) for k in range(n)]   # sum(targets) == total
    step_limit = 100 if cores[0].dtype.itemsize <= 4 else 1000   # 2**step stays a finite scalar
    out = []
    for core, e, target in zip(cores, exps, targets):
        shift = target - e
        while shift:                     # each step exact: the entries move towards the target
            step = max(-step_limit, min(step_limit, shift))
            core = core * (2.0 ** step)
            shift -= step
        out.append(core)
    return out


def _as_core_tensors(cores, ndim_core: int, name: str = "cores") -> list:
    """Validate ``cores`` (arrays or Tensors) and return them as Tensors (arrays wrapped, not copied)."""
    if isinstance(cores, (TensorTrain,)):
        cores = cores.cores
    arrays = check_cores(cores, ndim_core, name)
    return [c if isinstance(c, Tensor) else Tensor(a) for c, a in zip(cores, arrays)]


class CoreChain:
    """What TT-tensors and TT-matrices share: a chain of ``Tensor`` cores whose last axis is the
    right rank. Subclasses validate the cores and give the shapes."""

    __array_ufunc__ = None  # make ``ndarray * tt`` defer to the reflected operator

    @property
    def ranks(self) -> tuple:
        """``(r_0, ..., r_N)`` with ``r_0 = r_N = 1``."""
        return (1,) + tuple(int(c.shape[-1]) for c in self.cores)

    @property
    def ndim(self) -> int:
        """The number of cores N."""
        return len(self.cores)

    @property
    def dtype(self):
        """The cores' dtype."""
        return self.cores[0].dtype

    @property
    def num_parameters(self) -> int:
        """Number of core entries."""
        return sum(int(c.size) for c in self.cores)

    @property
    def requires_grad(self) -> bool:
        """True when any core requires a gradient."""
        return any(c.requires_grad for c in self.cores)

    def core_arrays(self) -> list:
        """The cores' backend arrays (no copy)."""
        return [c.data for c in self.cores]

    def detach(self):
        """The same cores (not copied) as new leaves outside the graph."""
        return type(self)([c.detach() for c in self.cores])


class TensorTrain(CoreChain):
    """A TT-tensor from a list of N cores ``(r_{k-1}, n_k, r_k)`` (arrays or ``Tensor``s).

    Validation: every core is 3-D with a floating dtype; ``r_0 = r_N = 1``; neighbouring ranks
    agree; one dtype and one backend for all cores. Raises ValueError/TypeError naming the core.

    Attributes: ``cores`` (list of Tensors), ``shape`` (n_1..n_N), ``ranks`` (r_0..r_N),
    ``ndim`` (N), ``dtype``, ``num_parameters``.
    """

    def __init__(self, cores):
        self.cores = _as_core_tensors(cores, 3)

    @property
    def shape(self) -> tuple:
        """Mode sizes ``(n_1, ..., n_N)`` of the tensor."""
        return tuple(int(c.shape[1]) for c in self.cores)

    def __repr__(self) -> str:
        return f"TensorTrain(shape={self.shape}, ranks={self.ranks}, dtype={self.dtype})"

    # --- dense views ---------------------------------------------------------------------------
    def full(self) -> Tensor:
        """The dense tensor (n_1..n_N), differentiable; C order.

        Contracts left to right (cores of very uneven scale balanced first, ``balanced_cores``):
        cost ``sum_{k>=2} (n_1..n_k) r_{k-1} r_k`` multiply-adds, memory ``prod n``.
        """
        cores = balanced_cores(self.cores)
        if len(cores) == 1:   # a copy: a reshape would be a view of the core (writes reach it)
            return astype(cores[0].reshape(*self.shape), cores[0].dtype)
        res = cores[0].reshape(self.shape[0], self.ranks[1])
        for c in cores[1:]:
            r0, n, r1 = c.shape
            res = (res @ c.reshape(r0, n * r1)).reshape(-1, r1)
        return res.reshape(*self.shape)

    def __getitem__(self, index) -> Tensor:
        """``A[i_1, .., i_N]`` for a tuple of N ints (negative ints count from the end): a 0-d Tensor.

        Cost ``O(sum_k r_{k-1} r_k)``; differentiable (gradients land on the selected slices).
        """
        if isinstance(index, numbers.Integral) and self.ndim == 1:
            index = (index,)
        if not isinstance(index, tuple) or len(index) != self.ndim or not all(
            isinstance(i, numbers.Integral) and not isinstance(i, bool) for i in index
        ):
            raise TypeError(
                f"TensorTrain index must be a tuple of {self.ndim} ints, got {index!r}; "
                "use gather() for batches of indices"
            )
        res = None
        for k, (i, n) in enumerate(zip(index, self.shape)):
            i = int(i)
            if not -n <= i < n:
                raise IndexError(f"index {i} is out of range for axis {k} of size {n}")
            piece = self.cores[k][:, i % n, :]
            res = piece if res is None else res @ piece
        return res.reshape()

    def gather(self, indices) -> Tensor:
        """Entries ``A[indices[j, 0], .., indices[j, N-1]]`` for an integer (K, N) array -> Tensor (K,).

        Never builds the full tensor: gathers the slices ``G_k[:, i_k, :]`` (K, r_{k-1}, r_k) and
        contracts left to right, cost ``O(K sum_k r_{k-1} r_k)``; differentiable (repeated
        indices accumulate). Negative indices are rejected.
        """
        xp = backend.get_xp(self.cores[0].data)
        if isinstance(indices, Tensor):
            indices = indices.data
        indices = xp.asarray(indices)
        if indices.dtype.kind not in "iu" or indices.ndim != 2 or indices.shape[1] != self.ndim:
            raise TypeError(
                f"indices must be an integer array of shape (K, {self.ndim}), got dtype "
                f"{indices.dtype} and shape {tuple(indices.shape)}"
            )
        if indices.shape[0]:
            for k, n in enumerate(self.shape):
                lo, hi = int(indices[:, k].min()), int(indices[:, k].max())
                if lo < 0 or hi >= n:
                    raise IndexError(f"indices[:, {k}] must lie in [0, {n}), got values in [{lo}, {hi}]")
        res = None
        for k, c in enumerate(self.cores):
            sl = take(c.transpose(1, 0, 2), indices[:, k])  # (K, r_{k-1}, r_k)
            res = sl[:, 0, :] if res is None else einsum("ka,kab->kb", res, sl)
        return res[:, 0]

    # --- algebra (see tinytt.tt.algebra) -------------------------------------------------------
    def norm(self) -> Tensor:
        """Frobenius norm ``||A||_F`` as a 0-d Tensor (stable value via orthogonalisation)."""
        from .algebra import norm

        return norm(self)

    def __add__(self, other):
        from .algebra import add

        return add(self, other)

    def __sub__(self, other):
        from .algebra import sub

        return sub(self, other)

    def __neg__(self):
        from .algebra import scale

        return scale(self, -1.0)

    def __mul__(self, c):
        from .algebra import scale

        if isinstance(c, TensorTrain):
            raise TypeError("TensorTrain * TensorTrain is ambiguous; use tinytt.tt.hadamard(A, B)")
        return scale(self, c)

    __rmul__ = __mul__

    def __truediv__(self, c):
        from .algebra import scale

        if isinstance(c, numbers.Number):    # Python and NumPy scalars alike
            if c == 0:
                raise ZeroDivisionError(f"{type(self).__name__} division by zero")
            return scale(self, 1.0 / c)
        return scale(self, 1.0 / as_tensor(c, like=self.cores[0]))

    # --- decompositions (fresh leaves) ---------------------------------------------------------
    def round(self, eps: float = 1e-12, max_rank=None) -> "TensorTrain":
        """TT rounding: ``||A - B||_F <= eps ||A||_F`` with ranks <= ``max_rank`` (fresh leaves).

        QR sweep right to left, then truncated SVDs left to right with threshold
        ``eps ||A||_F / sqrt(N-1)`` per bond; cost ``O(sum_k n_k r^3)``.
        """
        return TensorTrain(round_cores(self.core_arrays(), eps, max_rank))

    def orthogonalize(self, direction: str = "left") -> "TensorTrain":
        """Same tensor with orthogonal cores (fresh leaves): ``"left"`` makes cores 0..N-2
        left-orthogonal (``G.reshape(r n, r')^T G.reshape(r n, r') = I``), ``"right"`` makes
        cores 1..N-1 right-orthogonal. Cost ``O(sum_k n_k r^3)``. Raises OverflowError when the
        norm does not fit the dtype in one core (see ``orthogonalize_cores``).
        """
        return TensorTrain(orthogonalize_cores(self.core_arrays(), direction))


def tt_svd(a, eps: float = 1e-12, max_rank=None, requires_grad: bool = False) -> TensorTrain:
    """TT-SVD of a dense array or Tensor ``a`` (any order >= 1) -> ``TensorTrain`` of fresh leaves.

    Guarantee: ``||a - full||_F <= eps ||a||_F`` (when ``max_rank`` does not bind); ranks never
    exceed ``max_rank``; a tensor of TT ranks r is recovered with exactly those ranks for small
    ``eps``; an all-zero tensor gives rank 1. Keeps float32/float64 (integers -> float64).
    Cost: one thin SVD (or QR + small SVD) per bond, dominated by the first unfolding.
    Raises ValueError for NaN/Inf, ``eps < 0`` or a 0-d input.
    """
    cores = tt_svd_cores(a, eps, max_rank)
    return TensorTrain([Tensor(c, requires_grad=requires_grad) for c in cores])


def random_tt(shape, ranks, seed=None, dtype="float64", requires_grad: bool = False) -> TensorTrain:
    """A random ``TensorTrain`` with Gaussian cores on the default backend.

    ``ranks``: an int (every internal bond) or N+1 ints with boundary 1s (kept as given, even
    when larger than the mode products allow). Core k ~ N(0, 1/sqrt(r_{k-1} r_k)) entrywise, so
    each full-tensor entry has variance 1. ``seed`` makes it reproducible.
    """
    cores = random_cores(shape, ranks, seed=seed, dtype=dtype)
    return TensorTrain([Tensor(c, requires_grad=requires_grad) for c in cores])
