"""Text models used by the CLI and the examples: classifiers and an LSTM language model.

Every model takes its embedding layer from :func:`make_embedding`, so the same
architecture runs with a dense ``nn.Embedding`` or a ``nn.TTEmbedding`` (the layer of
*Tensorized Embedding Layers*, arXiv 1901.10787) and nothing else changes.

- :class:`LSTMClassifier`: Embedding -> (Bi)LSTM -> readout -> Dropout -> Linear.
  Readout ``"final"`` is the state at each sequence's last real token (forward) and
  first token (reverse direction), concatenated; ``"mean"`` is the mean of the LSTM
  outputs over the real time steps. Both ignore padding (the LSTM gets ``lengths``).
- :class:`MLPClassifier`: masked mean of the embeddings -> Linear -> ReLU -> Dropout -> Linear.
- :class:`LSTMLanguageModel`: Embedding -> Dropout -> LSTM -> Dropout -> Linear(V);
  the hidden state can be carried across BPTT windows.

:func:`build_model` makes any of them from a plain config dict (what the CLI stores in
checkpoints), so a checkpoint is enough to rebuild its model.
"""

from __future__ import annotations

import numbers
import operator

import numpy

from . import ops
from ._validate import int_arg
from .backend import default_rng, to_device, to_numpy
from .functional import dropout as _dropout
from .nn import LSTM, Dropout, Embedding, Linear, Module
from .tensor import Tensor

__all__ = [
    "make_embedding", "parse_tt_shape", "LSTMClassifier", "MLPClassifier", "LSTMLanguageModel",
    "build_model", "describe", "embedding_parameters", "MODEL_KINDS", "READOUTS", "EMBEDDINGS", "MODEL_DEFAULTS",
]

MODEL_KINDS = ("lstm", "bilstm", "mlp")
READOUTS = ("final", "mean")
EMBEDDINGS = ("dense", "tt")


def parse_tt_shape(text):
    """``"25,30,40x4,8,8"`` -> ``((25, 30, 40), (4, 8, 8))``; raises ValueError with the reason."""
    if isinstance(text, (tuple, list)):
        try:
            rows, cols = text
            rows, cols = (tuple(operator.index(v) for v in side) for side in (rows, cols))
        except (TypeError, ValueError):
            raise ValueError(f"TT shape must be (row_factors, col_factors), two sequences of ints, got {text!r}") from None
    else:
        parts = str(text).lower().replace(" ", "").split("x")
        if len(parts) != 2:
            raise ValueError(f"TT shape must look like 'v1,v2,v3xd1,d2,d3' (e.g. 25,30,40x4,8,8), got {text!r}")
        try:
            rows, cols = (tuple(int(v) for v in p.split(",")) for p in parts)
        except ValueError:
            raise ValueError(f"TT shape must hold positive integers separated by commas, got {text!r}") from None
    if len(rows) != len(cols) or len(rows) < 1 or min(rows + cols) < 1:
        raise ValueError(f"TT shape needs as many row factors as column factors, all >= 1, got {text!r}")
    return rows, cols


def make_embedding(kind: str, num_embeddings: int, embedding_dim: int, rank: int = 16, cores: int = 3,
                   tt_shape=None, padding_idx=0, seed=None, init_std=None):
    """A dense ``Embedding`` (``kind="dense"``) or a ``TTEmbedding`` (``kind="tt"``).

    ``tt_shape`` is ``(row_shape, col_shape)`` or the string form ``"25,30,40x4,8,8"``;
    None lets ``TTEmbedding`` pick the paper's shapes for ``cores`` cores.
    ``init_std`` rescales the dense table's N(0, 1) initialisation (None keeps it).
    """
    if kind == "dense":
        emb = Embedding(num_embeddings, embedding_dim, padding_idx=padding_idx, seed=seed)
        if init_std is not None:
            emb.weight.data *= emb.weight.data.dtype.type(init_std)
        return emb
    if kind == "tt":
        from .nn import TTEmbedding

        shape = None if tt_shape is None else parse_tt_shape(tt_shape)
        return TTEmbedding(num_embeddings, embedding_dim, rank=rank, n_cores=cores, shape=shape,
                           padding_idx=padding_idx, seed=seed)
    raise ValueError(f"embedding must be one of {EMBEDDINGS}, got {kind!r}")


def embedding_parameters(embedding) -> int:
    """Number of trainable numbers in an embedding layer (dense or TT)."""
    n = getattr(embedding, "num_parameters", None)
    if isinstance(n, int):
        return n
    return int(sum(p.size for p in embedding.parameters()))


def _host_lengths(lengths, batch: int, time: int):
    """Lengths as a host int64 array (None: every row is ``time`` long)."""
    if lengths is None:
        return None
    if isinstance(lengths, Tensor):
        lengths = lengths.data
    host = to_numpy(lengths)
    if host.dtype.kind not in "iu" or host.size != batch:
        raise ValueError(f"lengths must be {batch} integers (one per row of ids), got dtype {host.dtype} "
                         f"and shape {host.shape}")
    host = host.astype(numpy.int64, copy=False).reshape(batch)
    if batch and (int(host.min()) < 1 or int(host.max()) > time):
        # (a length past T or below 1 would silently change the readout's mean or be ignored)
        raise ValueError(f"lengths must lie in [1, {time}] (ids have {time} columns), got values in "
                         f"[{int(host.min())}, {int(host.max())}]")
    return host


def _model_seed(where: str, seed):
    """``seed`` as None or an int >= 0: the models derive one seed per layer as ``seed + k``
    (a Generator cannot be split that way)."""
    return None if seed is None else int_arg(where, "seed", seed, low=0)


def _check_batch_ids(where: str, ids) -> None:
    """ids must be a (batch, time) matrix (the lookup itself takes any shape)."""
    shape = getattr(ids.data if isinstance(ids, Tensor) else ids, "shape", None)
    if shape is None or len(shape) != 2:
        raise ValueError(f"{where}: ids must be a (batch, time) integer matrix, got shape "
                         f"{None if shape is None else tuple(shape)}")


class _TextModel(Module):
    """Shared helpers: parameter counts and the compression of the embedding."""

    @property
    def embedding_parameters(self) -> int:
        """Number of trainable numbers in the model's embedding layer."""
        return embedding_parameters(self.embedding)

    @property
    def compression(self) -> float:
        """Dense size ``V * D`` divided by the embedding's parameter count."""
        return self.embedding.num_embeddings * self.embedding.embedding_dim / self.embedding_parameters

    def total_parameters(self) -> int:
        """Number of parameters of the whole model (embedding included)."""
        return self.num_parameters()


class LSTMClassifier(_TextModel):
    """Embedding -> (Bi)LSTM -> readout -> Dropout -> Linear(num_classes).

    ``forward(ids (B, T) int, lengths (B,) int or None) -> logits (B, num_classes)``.
    ``readout="final"`` concatenates the last layer's final states (forward, then
    reverse); ``"mean"`` averages the outputs over each row's real steps. Padding
    never changes the result (the LSTM carries its state over padded steps and
    outputs zeros there). Cost: that of the LSTM, O(B T (E + H) H) per direction.
    """

    def __init__(self, embedding, hidden_size: int, num_classes: int, num_layers: int = 1,
                 bidirectional: bool = False, readout: str = "final", dropout: float = 0.5, seed=0):
        if readout not in READOUTS:
            raise ValueError(f"readout must be one of {READOUTS}, got {readout!r}")
        seed = _model_seed("LSTMClassifier", seed)
        self.embedding = embedding
        self.lstm = LSTM(embedding.embedding_dim, hidden_size, num_layers=num_layers,
                         bidirectional=bidirectional, dropout=dropout if num_layers > 1 else 0.0,
                         seed=None if seed is None else seed + 1)
        self.readout = readout
        out = hidden_size * (2 if bidirectional else 1)
        self.drop = Dropout(dropout, seed=None if seed is None else seed + 2)
        self.fc = Linear(out, num_classes, seed=None if seed is None else seed + 3)

    def features(self, ids, lengths=None) -> Tensor:
        """The readout vector (B, H * directions) before dropout and the classifier."""
        _check_batch_ids("LSTMClassifier", ids)
        x = self.embedding(ids)
        B, T = x.shape[0], x.shape[1]
        lengths = _host_lengths(lengths, B, T)
        full = lengths is None or int(lengths.min()) == T
        outputs, (h_n, _) = self.lstm(x, lengths=None if full else lengths)
        if self.readout == "final":
            if self.lstm.bidirectional:
                return ops.concat([h_n[-2], h_n[-1]], axis=-1)
            return h_n[-1]
        total = ops.sum(outputs, axis=1)             # outputs are zero at padded steps
        if full:
            return total * (1.0 / T)
        inv = (1.0 / numpy.maximum(lengths, 1)).astype(total.dtype)[:, None]
        return total * Tensor(to_device(inv))

    def forward(self, ids, lengths=None) -> Tensor:
        """ids ``(B, T)``, lengths ``(B,)`` or None -> logits ``(B, num_classes)``."""
        return self.fc(self.drop(self.features(ids, lengths)))


class MLPClassifier(_TextModel):
    """Mean of the embeddings over real tokens -> Linear -> ReLU -> Dropout -> Linear.

    ``forward(ids (B, T), lengths (B,) or None) -> logits (B, num_classes)``; positions
    at or beyond ``lengths`` are excluded from the mean. With ``lengths=None`` every one of
    the T positions counts (pass lengths when the batch is padded; the CLI always does).
    """

    def __init__(self, embedding, hidden_size: int, num_classes: int, dropout: float = 0.5, seed=0):
        seed = _model_seed("MLPClassifier", seed)
        self.embedding = embedding
        self.fc1 = Linear(embedding.embedding_dim, hidden_size, init="he", seed=None if seed is None else seed + 1)
        self.drop = Dropout(dropout, seed=None if seed is None else seed + 2)
        self.fc2 = Linear(hidden_size, num_classes, seed=None if seed is None else seed + 3)

    def features(self, ids, lengths=None) -> Tensor:
        """Masked mean of the embeddings, (B, D)."""
        _check_batch_ids("MLPClassifier", ids)
        x = self.embedding(ids)                      # (B, T, D)
        B, T, D = x.shape
        lengths = _host_lengths(lengths, B, T)
        if lengths is None:
            return ops.mean(x, axis=1)
        w = (numpy.arange(T)[None, :] < lengths[:, None]) / numpy.maximum(lengths, 1)[:, None]
        w = to_device(w.astype(x.dtype)[:, None, :])
        # masked mean as one batched matmul: (B, 1, T) @ (B, T, D) -> (B, 1, D)
        return ops.reshape(ops.matmul(Tensor(w), x), (B, D))

    def forward(self, ids, lengths=None) -> Tensor:
        """ids ``(B, T)``, lengths ``(B,)`` or None -> logits ``(B, num_classes)``."""
        return self.fc2(self.drop(ops.relu(self.fc1(self.features(ids, lengths)))))


class LSTMLanguageModel(_TextModel):
    """Embedding -> Dropout -> LSTM -> Dropout -> Linear(vocab): next-token logits.

    ``forward(ids (B, T), state=None) -> (logits (B, T, V), (h, c))``; pass the returned
    state (detached with :meth:`detach_state`) to the next BPTT window.
    ``tie_weights`` is not offered (a TT embedding has no dense matrix to share).
    """

    def __init__(self, embedding, hidden_size: int, num_layers: int = 1, dropout: float = 0.2, seed=0):
        if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"LSTMLanguageModel: dropout must be a probability in [0, 1), got {dropout!r}")
        seed = _model_seed("LSTMLanguageModel", seed)
        self.embedding = embedding
        self.vocab_size = embedding.num_embeddings
        self.lstm = LSTM(embedding.embedding_dim, hidden_size, num_layers=num_layers,
                         dropout=dropout if num_layers > 1 else 0.0, seed=None if seed is None else seed + 1)
        self.p = float(dropout)
        self._rng = default_rng(None if seed is None else seed + 2)
        self.decoder = Linear(hidden_size, self.vocab_size, seed=None if seed is None else seed + 3)

    def _drop(self, x):
        if not self.training or self.p == 0.0:
            return x
        return _dropout(x, self.p, training=True, rng=self._rng)

    def forward(self, ids, state=None):
        """ids ``(B, T)``, state None or ``(h, c)`` -> ``(logits (B, T, V), (h, c))``."""
        _check_batch_ids("LSTMLanguageModel", ids)
        x = self._drop(self.embedding(ids))
        outputs, state = self.lstm(x, state=state)
        return self.decoder(self._drop(outputs)), state

    @staticmethod
    def detach_state(state):
        """The state's arrays as fresh leaves (truncated backpropagation through time)."""
        if state is None:
            return None
        return tuple(Tensor(s.data) for s in state)


#: what ``build_model`` uses for a key the config leaves out: the defaults of ``tinytt train``
#: (``tinytt.cli.TRAIN_DEFAULTS`` is built from these), per task
MODEL_DEFAULTS = {
    "classify": {"model": "lstm", "readout": "mean", "embedding": "dense", "rank": 16, "cores": 3,
                 "tt_shape": None, "emb_dim": 256, "hidden": 128, "layers": 1, "dropout": 0.5, "seed": 0},
    "lm": {"model": "lstm", "readout": "final", "embedding": "dense", "rank": 16, "cores": 3,
           "tt_shape": None, "emb_dim": 128, "hidden": 256, "layers": 1, "dropout": 0.2, "seed": 0},
}


def build_model(config: dict, vocab_size: int, num_classes: int | None = None):
    """Build the model a config dict describes (the keys the CLI uses).

    Keys: ``task`` ("classify" | "lm"), ``model`` ("lstm" | "bilstm" | "mlp"),
    ``readout``, ``embedding`` ("dense" | "tt"), ``rank``, ``cores``, ``tt_shape``,
    ``emb_dim``, ``hidden``, ``layers``, ``dropout``, ``seed``. Missing keys take
    the CLI defaults (``MODEL_DEFAULTS[task]``: a classifier is an LSTM with the mean
    readout, embedding 256, hidden 128; a language model has embedding 128, hidden 256).
    Raises ValueError for a bad combination (e.g. a TT shape whose products do not fit
    the vocabulary and embedding sizes).
    """
    task = config.get("task", "classify")
    if task not in MODEL_DEFAULTS:
        raise ValueError(f"task must be 'classify' or 'lm', got {task!r}")
    cfg = dict(MODEL_DEFAULTS[task])
    cfg.update((k, v) for k, v in config.items() if v is not None or k == "tt_shape")
    seed = int(cfg["seed"] or 0)
    emb = make_embedding(cfg["embedding"], vocab_size, cfg["emb_dim"], rank=cfg["rank"], cores=cfg["cores"],
                         tt_shape=cfg["tt_shape"], padding_idx=0, seed=seed, init_std=cfg.get("dense_init_std"))
    hidden, layers, dropout = cfg["hidden"], cfg["layers"], cfg["dropout"]
    if cfg["readout"] not in READOUTS:
        raise ValueError(f"readout must be one of {READOUTS}, got {cfg['readout']!r}")
    if task == "lm":
        if cfg["model"] != "lstm":
            raise ValueError(f"a language model (task 'lm') is an 'lstm', got model {cfg['model']!r}")
        return LSTMLanguageModel(emb, hidden, num_layers=layers, dropout=dropout, seed=seed + 10)
    if num_classes is None or num_classes < 2:
        raise ValueError(f"a classifier needs num_classes >= 2, got {num_classes!r}")
    kind = cfg["model"]
    if kind == "mlp":
        return MLPClassifier(emb, hidden, num_classes, dropout=dropout, seed=seed + 10)
    if kind not in ("lstm", "bilstm"):
        raise ValueError(f"model must be one of {MODEL_KINDS}, got {kind!r}")
    return LSTMClassifier(emb, hidden, num_classes, num_layers=layers, bidirectional=kind == "bilstm",
                          readout=cfg["readout"], dropout=dropout, seed=seed + 10)


def describe(model) -> dict:
    """Embedding parameters, compression and total parameters of a model, as a dict."""
    return {
        "embedding_parameters": model.embedding_parameters,
        "compression": round(float(model.compression), 2),
        "total_parameters": model.total_parameters(),
    }
