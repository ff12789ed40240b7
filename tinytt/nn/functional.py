"""Losses and activations for models, re-exported from ``tinytt.functional`` / ``tinytt.ops``
so that ``tinytt.nn.functional`` is the one place a model author imports them from."""

from ..functional import (  # noqa: F401
    binary_cross_entropy_with_logits,
    cross_entropy,
    dropout,
    log_softmax,
    logsumexp,
    mse,
    softmax,
)
from ..ops import relu, sigmoid, tanh  # noqa: F401
from .layers import embedding  # noqa: F401
from .lstm import lstm_layer, reference_lstm_layer  # noqa: F401

__all__ = [
    "cross_entropy", "binary_cross_entropy_with_logits", "mse", "dropout", "softmax",
    "log_softmax", "logsumexp", "relu", "sigmoid", "tanh", "embedding", "lstm_layer",
    "reference_lstm_layer",
]
