"""Dense layers: Linear, Embedding (hand-written lookup op), Dropout, activations."""

from __future__ import annotations

import numbers

from .. import ops
from .._validate import bool_arg, check_seed
from ..backend import default_rng, get_xp, scatter_add, take_rows
from ..functional import dropout
from ..ops import check_ids
from ..tensor import Tensor, record
from . import init as _init
from .module import Module, Parameter

__all__ = ["Linear", "Embedding", "Dropout", "ReLU", "Tanh", "embedding", "check_ids"]


def _check_size(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


class Linear(Module):
    """``y = x @ W + b`` with ``W`` of shape ``(in_features, out_features)``.

    Args:
        in_features, out_features: sizes.
        bias: add a bias ``b`` (out_features,), initialised to zero.
        init: ``"glorot"`` (uniform, Var = 2/(in+out)) or ``"he"`` (normal, Var = 2/in).
        dtype: parameter dtype (float32 by default).
        seed: seed (int, None or numpy Generator) of the initialisation.

    ``x`` may have any number of leading dimensions ``(..., in_features)``; it is
    flattened to 2-D for one GEMM. Cost O(numel(x) * out_features).
    """

    def __init__(self, in_features, out_features, bias: bool = True, init: str = "glorot",
                 dtype="float32", seed=None):
        self.in_features = _check_size("in_features", in_features)
        self.out_features = _check_size("out_features", out_features)
        rng = _init.make_rng(seed)
        if init == "glorot":
            w = _init.glorot_uniform(self.in_features, self.out_features, dtype=dtype, rng=rng)
        elif init == "he":
            w = _init.he_normal(self.in_features, self.out_features, dtype=dtype, rng=rng)
        else:
            raise ValueError(f"Linear: init must be 'glorot' or 'he', got {init!r}")
        self.weight = Parameter(w)
        self.bias = Parameter(_init.zeros((self.out_features,), dtype)) if bool_arg("Linear", "bias", bias) else None

    def forward(self, x):
        """``x @ W + b``: x ``(..., in_features)`` -> ``(..., out_features)``, in the weight's
        dtype (other real inputs are converted). One GEMM, O(numel(x) * out_features)."""
        x = ops.as_tensor(x)
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"Linear: expected input (..., {self.in_features}), got shape {x.shape}")
        if x.dtype.kind not in "fiub":
            raise TypeError(f"Linear: input must be a real (float, int or bool) array, got dtype {x.dtype}")
        if x.dtype != self.weight.dtype:  # the layer's dtype wins (ints and bools are converted too)
            x = ops.astype(x, self.weight.dtype)
        lead = x.shape[:-1]
        y = ops.reshape(x, (-1, self.in_features)) @ self.weight if x.ndim != 2 else x @ self.weight
        if self.bias is not None:
            y = y + self.bias
        return ops.reshape(y, lead + (self.out_features,)) if x.ndim != 2 else y

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, bias={self.bias is not None}"


def embedding(weight: Tensor, ids, padding_idx=None) -> Tensor:
    """Rows of ``weight`` (V, D) for integer ``ids`` of any shape S -> S + (D,).

    One recorded op. Backward: deterministic sorted segment sum of the output gradient
    into a (V, D) array (``backend.scatter_add``), so repeated ids accumulate in a fixed
    order; the row ``padding_idx`` (if given) receives no gradient.
    """
    xp = get_xp(weight.data)
    v, d = weight.shape
    given = ids.data if isinstance(ids, Tensor) else ids
    ids = check_ids(ids, v, xp, "Embedding")
    if isinstance(given, type(ids)) and given.dtype == ids.dtype:
        ids = ids.copy()   # the backward reads the ids later: not the caller's (reusable) buffer
    out = take_rows(weight.data, ids)

    def vjp(g):
        # g: S + (D,), read in place even when broadcast; the padding row is not summed
        return scatter_add(ids, g, v, skip=padding_idx)

    out = record("embedding", out, (weight,), (vjp,))
    out._gathered = (weight, ids, padding_idx)   # out.data == weight.data[ids]
    return out


def check_padding_idx(padding_idx, num_embeddings: int, who: str):
    """``padding_idx`` as None or an int in [0, V): an int in [-V, V) (negative counts from the
    end, as in PyTorch); ValueError naming ``who`` otherwise."""
    if padding_idx is None:
        return None
    if isinstance(padding_idx, bool) or not isinstance(padding_idx, numbers.Integral) or not (
        -num_embeddings <= padding_idx < num_embeddings
    ):
        raise ValueError(f"{who}: padding_idx must be None or an int in [-{num_embeddings}, {num_embeddings}) "
                         f"(negative counts from the end), got {padding_idx!r}")
    return int(padding_idx) % num_embeddings


class Embedding(Module):
    """A (num_embeddings, embedding_dim) table; ``forward(ids)`` returns ``ids.shape + (D,)``.

    Args:
        num_embeddings, embedding_dim: sizes.
        padding_idx: a row that starts at zero and never receives a gradient; an int in
            [-V, V) (negative counts from the end, as in PyTorch).
        dtype: parameter dtype (float32 by default).
        seed: initialisation seed; rows ~ N(0, 1) like PyTorch.
    """

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, dtype="float32", seed=None):
        self.num_embeddings = _check_size("num_embeddings", num_embeddings)
        self.embedding_dim = _check_size("embedding_dim", embedding_dim)
        padding_idx = check_padding_idx(padding_idx, self.num_embeddings, "Embedding")
        self.padding_idx = padding_idx
        w = _init.normal((self.num_embeddings, self.embedding_dim), 1.0, dtype, _init.make_rng(seed))
        if padding_idx is not None:
            w[padding_idx] = 0
        self.weight = Parameter(w)

    def forward(self, ids):
        """Rows ``weight[ids]``: integer ids of any shape S -> ``S + (embedding_dim,)``
        (see :func:`embedding`; O(numel(ids) * D) forward and backward)."""
        return embedding(self.weight, ids, self.padding_idx)

    def extra_repr(self) -> str:
        pad = f", padding_idx={self.padding_idx}" if self.padding_idx is not None else ""
        return f"{self.num_embeddings}, {self.embedding_dim}{pad}"


class Dropout(Module):
    """Inverted dropout with probability ``p`` in training mode; identity in ``eval()``.

    Masks come from a backend generator seeded with ``seed`` (reproducible runs). The
    uniforms are drawn in the input's float dtype (float32 or float64; float64 for float16
    and complex inputs), so one seed gives different masks for float32 and float64 inputs;
    integer inputs are refused (TypeError).
    """

    def __init__(self, p: float = 0.5, seed=None):
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 <= p < 1.0:
            raise ValueError(f"Dropout: p must be a probability in [0, 1), got {p!r}")
        self.p = float(p)
        self.rng = default_rng(check_seed("Dropout", seed))

    def forward(self, x):
        """``x * mask / (1 - p)`` with ``mask ~ Bernoulli(1 - p)`` in training mode, ``x`` in
        eval mode; same shape as x, O(numel(x))."""
        return dropout(x, self.p, training=self.training, rng=self.rng)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class ReLU(Module):
    """Elementwise ``max(x, 0)``."""

    def forward(self, x):
        """``max(x, 0)``, same shape; gradient 1 where x > 0, else 0."""
        return ops.relu(x)


class Tanh(Module):
    """Elementwise ``tanh``."""

    def forward(self, x):
        """``tanh(x)``, same shape; gradient ``1 - tanh(x)^2``."""
        return ops.tanh(x)
