"""tinytt: tensor trains and TT embeddings with a small reverse-mode autodiff, on NumPy or CuPy.

    import tinytt as tt
    x = tt.Tensor(numpy.ones((3, 4)), requires_grad=True)
    y = tt.tanh(x @ x.T).sum()
    y.backward()          # x.grad is a backend array of x's shape and dtype
"""

from . import _openblas  # noqa: F401  (first: it must run before anything imports NumPy)
from . import backend
from .backend import get_backend, get_xp, set_backend, to_device, to_numpy
from .einsum import einsum, einsum_cache_clear, einsum_cache_info
from .functional import (
    binary_cross_entropy_with_logits,
    cross_entropy,
    dropout,
    log_softmax,
    logsumexp,
    mse,
    softmax,
)
from .ops import (
    add, as_tensor, astype, clip, concat, div, exp, getitem, log, matmul, max, mean, mul, neg,
    power, relu, reshape, sigmoid, split, sqrt, stack, sub, sum, take, tanh, transpose, where,
)
from .tensor import Tensor, enable_grad, is_grad_enabled, no_grad
from .tt import (
    TensorTrain, TTMatrix, auto_shape, dot, glorot_tt_matrix, hadamard, norm, random_tt, round,
    suggest_shape, tt_matrix_num_params, tt_matrix_svd, tt_svd,
)
from .io import load, save
from . import allocator, data, io, nn, optim, testing  # noqa: E402  (subpackages, after the core names)

__version__ = "0.1.0"

__all__ = [
    "__version__", "backend", "set_backend", "get_backend", "get_xp", "to_numpy", "to_device",
    "Tensor", "no_grad", "enable_grad", "is_grad_enabled",
    "as_tensor", "add", "sub", "mul", "div", "neg", "power", "matmul", "einsum",
    "einsum_cache_info", "einsum_cache_clear",
    "sum", "mean", "max", "reshape", "transpose", "getitem", "take", "concat", "stack", "split",
    "where", "astype", "exp", "log", "sqrt", "tanh", "sigmoid", "relu", "clip",
    "softmax", "log_softmax", "logsumexp", "cross_entropy", "binary_cross_entropy_with_logits",
    "mse", "dropout",
    "TensorTrain", "TTMatrix", "tt_svd", "tt_matrix_svd", "random_tt", "round", "dot", "hadamard",
    "norm", "suggest_shape", "auto_shape", "tt_matrix_num_params", "glorot_tt_matrix",
    "save", "load", "nn", "optim", "data", "io", "testing", "allocator",
]
