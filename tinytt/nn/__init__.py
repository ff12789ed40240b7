"""Neural-network building blocks: Module, Parameter, layers, LSTM, losses.

    import tinytt as tt
    model = tt.nn.Sequential(tt.nn.Linear(4, 8), tt.nn.ReLU(), tt.nn.Linear(8, 2))
    loss = tt.nn.functional.cross_entropy(model(x), y)
"""

from . import functional, init
from .layers import Dropout, Embedding, Linear, ReLU, Tanh
from .losses import CrossEntropyLoss, MSELoss
from .lstm import LSTM, lstm_layer, reference_lstm, reference_lstm_layer
from .module import Module, Parameter, Sequential

__all__ = [
    "Module", "Parameter", "Sequential", "Linear", "Embedding", "Dropout", "ReLU", "Tanh",
    "LSTM", "lstm_layer", "reference_lstm", "reference_lstm_layer", "CrossEntropyLoss", "MSELoss",
    "functional", "init",
]

try:
    from .tt_linear import TTLinear
except ImportError:  # tinytt.tt.TTMatrix not available yet
    pass
else:
    __all__.append("TTLinear")

try:
    from .tt_embedding import TTEmbedding
except ImportError:  # written separately; absent in early checkouts
    pass
else:
    __all__.append("TTEmbedding")
