"""Loss modules: thin wrappers over ``tinytt.functional``."""

from ..functional import _check_loss_options, cross_entropy, mse
from .module import Module

__all__ = ["CrossEntropyLoss", "MSELoss"]


class CrossEntropyLoss(Module):
    """``CrossEntropyLoss(ignore_index=None, label_smoothing=0.0)(logits, targets)`` =
    ``cross_entropy(logits, targets, ignore_index, label_smoothing)`` (mean over kept positions)."""

    def __init__(self, ignore_index=None, label_smoothing: float = 0.0):
        _check_loss_options(ignore_index, label_smoothing, "CrossEntropyLoss")
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing

    def forward(self, logits, targets):
        """logits ``(..., C)``, integer targets ``(...)`` -> scalar mean loss (see
        :func:`tinytt.cross_entropy`)."""
        return cross_entropy(logits, targets, ignore_index=self.ignore_index,
                             label_smoothing=self.label_smoothing)


class MSELoss(Module):
    """``MSELoss()(prediction, target)`` = mean squared error."""

    def forward(self, prediction, target):
        """``mean((prediction - target)^2)`` over all elements -> scalar (see :func:`tinytt.mse`)."""
        return mse(prediction, target)
