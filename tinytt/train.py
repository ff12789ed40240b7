"""Training and evaluation loops shared by the CLI (``tinytt train``/``demo``) and the examples.

Pieces, from the bottom up:

- data containers that turn token lists into arrays once, up front:
  :class:`ClassificationData` (one padded ``(N, L)`` id matrix + lengths + labels; a
  batch is a row gather and a slice, no per-token Python) and :func:`lm_stream`
  (one id vector for BPTT);
- tasks with ``train_epoch`` and ``evaluate``: :class:`ClassificationTask` (accuracy,
  length-bucketed seeded batches via ``BucketBatcher``) and
  :class:`LanguageModelTask` (perplexity, BPTT windows with the hidden state carried
  across them);
- :func:`fit`: epochs, best-validation tracking (the test metric is reported at the
  epoch with the best validation metric), an atomic checkpoint after every epoch,
  resume from a checkpoint, per-epoch timings.

Per step the loops do one forward, one backward, optional clipping and one optimizer
step; the loss stays a device scalar (no ``.item()`` per step) and is averaged once
at the end of the epoch. Checkpoints are written with :func:`tinytt.io.save` (atomic:
an interrupted run leaves the previous checkpoint intact).
"""

from __future__ import annotations

import itertools
import json
import math
import numbers
import time
import warnings
from dataclasses import dataclass, field

import numpy

from . import ops
from ._validate import int_arg, number_arg
from .backend import get_xp, is_cupy_generator, to_device, to_numpy
from .data import BucketBatcher, Vocab, bptt_batches, progress
from .functional import cross_entropy
from .io import load, save
from .optim import clip_grad_norm
from .tensor import no_grad

__all__ = [
    "ClassificationData", "ClassificationTask", "LanguageModelTask", "lm_stream", "carve_validation",
    "fit", "FitResult", "save_checkpoint", "load_checkpoint", "CHECKPOINT_FORMAT", "load_classification",
    "train_classifier", "random_states", "set_random_states",
]

CHECKPOINT_FORMAT = "tinytt.train.checkpoint"


# ----------------------------------------------------------------------------- data
class ClassificationData:
    """Encoded classification examples: ``ids`` int64 (N, L) padded with 0, ``lengths`` (N,),
    ``labels`` int64 (N,).

    Empty sequences become a single ``<unk>`` (id 1) so every length is >= 1; sequences
    longer than ``max_len`` keep their first ``max_len`` ids.
    """

    def __init__(self, sequences, labels, max_len: int | None = None):
        if max_len is not None and (isinstance(max_len, bool) or not isinstance(max_len, numbers.Integral)
                                    or max_len < 1):
            raise ValueError(f"ClassificationData: max_len must be None or an int >= 1, got {max_len!r}")
        seqs = [s if len(s) else [1] for s in sequences]
        if max_len is not None:
            seqs = [s[:max_len] for s in seqs]
        lengths = numpy.fromiter((len(s) for s in seqs), dtype=numpy.int64, count=len(seqs))
        width = int(lengths.max()) if len(seqs) else 1
        # read as float64 first (exact for ids below 2**53) so that non-integer ids are caught,
        # not truncated
        try:
            values = numpy.fromiter(itertools.chain.from_iterable(seqs), dtype=numpy.float64, count=int(lengths.sum()))
        except (TypeError, ValueError):
            raise ValueError("ClassificationData: sequences must be lists of int token ids") from None
        flat = values.astype(numpy.int64)
        if values.size and ((flat != values).any() or int(flat.min()) < 0):
            raise ValueError("ClassificationData: sequences must hold non-negative int token ids, got "
                             f"{float(values[(flat != values) | (flat < 0)][0])!r}")
        ids = numpy.zeros((len(seqs), width), dtype=numpy.int64)
        ids[numpy.arange(width)[None, :] < lengths[:, None]] = flat   # row-major fill, vectorised
        self.ids = ids
        self.lengths = lengths
        raw = numpy.asarray(labels)
        kind = raw.dtype.kind
        # (integral floats only, and below 2**63: inf, 1e20 or a big uint64 wraps in the int64 cast)
        if raw.size and (kind not in "biuf" or raw.min() < 0
                         or (kind == "f" and not numpy.all((raw == numpy.floor(raw)) & (raw < 2.0 ** 63)))
                         or (kind == "u" and raw.max() >= 2 ** 63)):
            raise ValueError(f"ClassificationData: labels must be non-negative ints (class indices), got dtype "
                             f"{raw.dtype} with values {raw.reshape(-1)[:5].tolist()}...")
        self.labels = raw.astype(numpy.int64).reshape(-1)
        if self.labels.shape[0] != len(seqs):
            raise ValueError(f"ClassificationData: {len(seqs)} sequences but {self.labels.shape[0]} labels")

    def __len__(self) -> int:
        return int(self.lengths.shape[0])

    @classmethod
    def from_tokens(cls, token_lists, labels, vocab: Vocab, max_len: int | None = None) -> "ClassificationData":
        """Encode token lists with ``vocab`` (rows cut at ``max_len`` when given)."""
        return cls(vocab.encode_batch(token_lists), labels, max_len)

    def batch(self, idx):
        """``(ids (B, T), lengths (B,), labels (B,))`` for example indices ``idx``; T = longest row."""
        lengths = self.lengths[idx]
        return self.ids[idx, : int(lengths.max())], lengths, self.labels[idx]

    def subset(self, idx) -> "ClassificationData":
        """The examples at indices ``idx`` as a new ClassificationData (arrays are copied by
        NumPy's fancy indexing)."""
        out = object.__new__(ClassificationData)
        out.ids, out.lengths, out.labels = self.ids[idx], self.lengths[idx], self.labels[idx]
        return out


def carve_validation(n: int, fraction: float = 0.1, seed: int = 0):
    """``(train_idx, valid_idx)``: ``numpy.random.default_rng(seed).permutation(n)``; the first
    ``max(1, round(fraction * n))`` indices are validation (none when n < 2), the rest
    training (both sorted). ``n`` is an int >= 0, ``fraction`` a number in (0, 1), ``seed`` an
    int >= 0 (None would give another split on every call)."""
    n = int_arg("carve_validation", "n", n, low=0)
    if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real) or not 0.0 < fraction < 1.0:
        raise ValueError(f"carve_validation: fraction must be a number in (0, 1), got {fraction!r}")
    seed = int_arg("carve_validation", "seed", seed, low=0)
    perm = numpy.random.default_rng(seed).permutation(n)
    k = max(1, int(round(fraction * n))) if n > 1 else 0
    return numpy.sort(perm[k:]), numpy.sort(perm[:k])


def lm_stream(tokens, vocab: Vocab) -> numpy.ndarray:
    """Token strings -> one int64 id vector (unknown tokens -> ``<unk>``)."""
    return numpy.asarray(vocab.encode(tokens), dtype=numpy.int64)


# ----------------------------------------------------------------------------- tasks
def _mean_loss(losses, weights) -> float:
    """Mean of per-step mean losses weighted by each step's examples (or tokens), so a short
    last batch counts for what it holds (a per-example / per-token mean, like ``evaluate``)."""
    if not losses:
        return float("nan")
    xp = get_xp(losses[0])
    w = xp.asarray(numpy.asarray(weights, dtype=numpy.float64))
    return float((xp.stack(losses).astype(xp.float64) * w).sum() / w.sum())


class ClassificationTask:
    """Sentence/document classification: cross-entropy training, accuracy evaluation.

    Args:
        splits: ``{"train": ClassificationData, "valid": ..., "test": ... or None}``.
        batch_size: training batch size; batches are length-bucketed and shuffled with
            ``BucketBatcher(seed=seed)`` (deterministic per epoch).
        clip: global gradient-norm clip (0 = off).
        eval_batch_size: evaluation batch size (examples sorted by length).

    ``batch_size`` and ``eval_batch_size`` are ints >= 1, ``seed`` an int >= 0 and ``clip`` a
    finite number >= 0 (ValueError naming the argument otherwise).
    """

    metric = "accuracy"
    higher_is_better = True
    #: a split shorter than this cannot be evaluated (``fit`` needs a validation split)
    min_eval_length = 1

    def __init__(self, splits: dict, batch_size: int = 64, seed: int = 0, clip: float = 0.0,
                 eval_batch_size: int = 256, show_progress: bool = True):
        self.splits = splits
        self.batch_size = int_arg("ClassificationTask", "batch_size", batch_size)
        self.seed = int_arg("ClassificationTask", "seed", seed, low=0)
        self.clip = number_arg("ClassificationTask", "clip", clip)
        self.eval_batch_size = int_arg("ClassificationTask", "eval_batch_size", eval_batch_size)
        self.show_progress = show_progress
        train = splits["train"]
        # BucketBatcher only needs len() of each row to plan the (seeded, bucketed) order;
        # ranges stand in for the token lists, the ids come from the padded matrix
        self._batcher = BucketBatcher([range(int(n)) for n in train.lengths], batch_size=self.batch_size,
                                      seed=self.seed)

    def steps_per_epoch(self) -> int:
        """Number of training batches in one epoch."""
        return len(self._batcher)

    def batch_order(self, epoch: int) -> list:
        """The training batches of ``epoch`` in order: arrays of example indices into the
        train split (length-bucketed, shuffled with ``seed`` and ``epoch``)."""
        return self._batcher.batch_indices(epoch)

    def train_epoch(self, model, optimizer, epoch: int, max_steps: int | None = None,
                    deadline: float | None = None, desc: str = "train", on_step=None) -> dict:
        """One epoch of training: forward, cross-entropy, backward, optional clipping, one
        optimizer step per batch (model in train mode).

        ``max_steps`` caps the batches, ``deadline`` (a ``time.perf_counter()`` value) stops
        before the first step that starts after it, and ``on_step(step, loss)`` is called after
        each step. Returns ``{"train_loss": size-weighted mean loss, "steps": steps run}``.
        """
        model.train()
        data = self.splits["train"]
        order = self.batch_order(epoch)
        if max_steps is not None:
            order = order[:max_steps]
        losses, sizes = [], []
        for idx in progress(order, desc=desc, disable=not self.show_progress):
            # the time cap is checked before a step, not after: the progress display then
            # counts every step that ran (it counts an item when the next one is asked for)
            if losses and deadline is not None and time.perf_counter() > deadline:
                break
            ids, lengths, labels = data.batch(idx)
            logits = model(to_device(ids), lengths)
            loss = cross_entropy(logits, to_device(labels))
            optimizer.zero_grad()
            loss.backward()
            if self.clip > 0:
                clip_grad_norm(optimizer.params, self.clip)
            optimizer.step()
            losses.append(loss.data)
            sizes.append(len(idx))
            if on_step is not None:
                on_step(len(losses), loss)
        return {"train_loss": _mean_loss(losses, sizes), "steps": len(losses)}

    def evaluate(self, model, split: str) -> dict:
        """``{"loss", "accuracy", "n"}`` on a split (eval mode, no graph); NaN for an empty one."""
        data = self.splits[split]
        model.eval()
        order = numpy.argsort(data.lengths, kind="stable")
        correct = loss_sum = None     # device scalars: read once at the end
        with no_grad():
            for start in range(0, len(order), self.eval_batch_size):
                idx = order[start:start + self.eval_batch_size]
                ids, lengths, labels = data.batch(idx)
                logits = model(to_device(ids), lengths)
                lab = to_device(labels)
                loss = cross_entropy(logits, lab)
                xp = get_xp(logits.data)
                hits = (xp.argmax(logits.data, axis=-1) == lab).sum()
                part = loss.data.astype(xp.float64) * len(idx)
                correct = hits if correct is None else correct + hits
                loss_sum = part if loss_sum is None else loss_sum + part
        n = len(order)
        if n == 0:
            return {"loss": float("nan"), "accuracy": float("nan"), "n": 0}
        return {"loss": float(loss_sum) / n, "accuracy": int(correct) / n, "n": n}


class LanguageModelTask:
    """Word-level language modelling with truncated BPTT; metric: perplexity (lower is better).

    Args:
        streams: ``{"train": ids, "valid": ids, "test": ids or None}`` int64 vectors.
        batch_size, bptt: the stream is cut into ``batch_size`` rows and windows of
            ``bptt`` steps (``tinytt.data.bptt_batches``); the hidden state is carried
            (detached) from one window to the next.
        clip: gradient-norm clip (0 = off).
        eval_batch_size: rows used for evaluation (at most ``len // 2`` of a split's stream).

    ``batch_size``, ``bptt`` and ``eval_batch_size`` are ints >= 1 and ``clip`` a finite
    number >= 0 (ValueError naming the argument otherwise).
    """

    metric = "perplexity"
    higher_is_better = False
    #: a split shorter than this has no (input, target) pair: ``evaluate`` gives NaN
    min_eval_length = 2

    def __init__(self, streams: dict, batch_size: int = 20, bptt: int = 35, clip: float = 1.0,
                 eval_batch_size: int = 10, show_progress: bool = True):
        self.streams = streams
        self.batch_size = int_arg("LanguageModelTask", "batch_size", batch_size)
        self.bptt = int_arg("LanguageModelTask", "bptt", bptt)
        self.clip = number_arg("LanguageModelTask", "clip", clip)
        self.eval_batch_size = int_arg("LanguageModelTask", "eval_batch_size", eval_batch_size)
        self.show_progress = show_progress

    def steps_per_epoch(self) -> int:
        """Number of BPTT windows per epoch: ``ceil((len // batch_size - 1) / bptt)``."""
        n = len(self.streams["train"]) // self.batch_size
        return max(0, -(-(n - 1) // self.bptt))

    def train_epoch(self, model, optimizer, epoch: int, max_steps: int | None = None,
                    deadline: float | None = None, desc: str = "train", on_step=None) -> dict:
        """One epoch of training: forward, cross-entropy, backward, optional clipping, one
        optimizer step per batch (model in train mode).

        ``max_steps`` caps the batches, ``deadline`` (a ``time.perf_counter()`` value) stops
        before the first step that starts after it, and ``on_step(step, loss)`` is called after
        each step. Returns ``{"train_loss": size-weighted mean loss, "steps": steps run}``.
        """
        model.train()
        total = self.steps_per_epoch() if max_steps is None else min(max_steps, self.steps_per_epoch())
        batches = itertools.islice(bptt_batches(self.streams["train"], self.batch_size, self.bptt), total)
        state = None
        losses, sizes = [], []
        for x, y in progress(batches, total=total, desc=desc, disable=not self.show_progress):
            if losses and deadline is not None and time.perf_counter() > deadline:  # before a step: see above
                break
            logits, state = model(to_device(x), model.detach_state(state))
            loss = cross_entropy(ops.reshape(logits, (-1, logits.shape[-1])), to_device(y.reshape(-1)))
            optimizer.zero_grad()
            loss.backward()
            if self.clip > 0:
                clip_grad_norm(optimizer.params, self.clip)
            optimizer.step()
            losses.append(loss.data)
            sizes.append(y.size)
            if on_step is not None:
                on_step(len(losses), loss)
        return {"train_loss": _mean_loss(losses, sizes), "steps": len(losses)}

    def evaluate(self, model, split: str) -> dict:
        """``{"loss", "perplexity", "n"}``: token-weighted mean cross-entropy over the split.

        The stream is cut into ``eval_batch_size`` rows ("batchify", as PyTorch's
        word_language_model does): the ``len % rows`` tail and the first token of every row
        after the first are not predicted, so ``n`` is ``rows * (len // rows - 1)`` targets,
        not ``len - 1`` (on PTB's 82k-token test set with 10 rows: 82,420 targets instead of 82,429, 9 fewer)."""
        stream = self.streams[split]
        if len(stream) < self.min_eval_length:    # nothing to predict: as an empty classification split
            return {"loss": float("nan"), "perplexity": float("nan"), "n": 0}
        model.eval()
        state = None
        loss_sum = None
        n = 0
        bs = min(self.eval_batch_size, max(1, len(stream) // 2))
        with no_grad():
            for x, y in bptt_batches(stream, bs, self.bptt):
                logits, state = model(to_device(x), state)
                loss = cross_entropy(ops.reshape(logits, (-1, logits.shape[-1])), to_device(y.reshape(-1)))
                part = loss.data.astype(numpy.float64) * y.size   # summed in float64, as the classifier's
                loss_sum = part if loss_sum is None else loss_sum + part
                n += y.size
        mean = float(loss_sum) / max(n, 1) if loss_sum is not None else float("nan")
        return {"loss": mean, "perplexity": math.exp(min(mean, 700.0)), "n": n}


# ----------------------------------------------------------------------------- checkpoints
def _generators(model, device: bool = False):
    """``(name, Generator)`` of every NumPy random generator held by the model's modules
    (dropout masks), in a fixed order; with ``device``, its CuPy generators instead."""
    out = []
    for name, module in model.named_modules():
        for attr in sorted(vars(module)):
            value = vars(module)[attr]
            if (is_cupy_generator(value) if device else isinstance(value, numpy.random.Generator)):
                out.append((f"{name}.{attr}" if name else attr, value))
    return out


def _jsonable(value):
    """Bit-generator states hold ints, strings and (MT19937) uint32 arrays: arrays become
    ``{"ndarray": list, "dtype": str}`` so the state is JSON."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, numpy.ndarray):
        return {"ndarray": value.tolist(), "dtype": value.dtype.str}
    if isinstance(value, numpy.generic):
        return value.item()
    return value


def _from_jsonable(value):
    if isinstance(value, dict):
        if set(value) == {"ndarray", "dtype"}:
            return numpy.asarray(value["ndarray"], dtype=numpy.dtype(value["dtype"]))
        return {k: _from_jsonable(v) for k, v in value.items()}
    return value


def random_states(model) -> dict:
    """The bit-generator states of the model's NumPy random generators, by dotted name (a
    JSON-serialisable dict), so a resumed run draws the same dropout masks as an
    uninterrupted one.

    CuPy's generators (a model built on the GPU) cannot be serialised: they are left out,
    with a RuntimeWarning naming them, and a run resumed from such a checkpoint draws other
    dropout masks than an uninterrupted one would (same distribution, other values)."""
    device = [name for name, _ in _generators(model, device=True)]
    if device:
        warnings.warn(f"random_states: the CuPy generators {device} cannot be saved (CuPy random states "
                      f"are not serialisable); a run resumed from this state draws other dropout masks than "
                      f"an uninterrupted run", RuntimeWarning, stacklevel=2)
    return {name: _jsonable(gen.bit_generator.state) for name, gen in _generators(model)}


def set_random_states(model, states: dict) -> None:
    """Restore :func:`random_states` into a model of the same structure (unknown or
    missing names are skipped: a checkpoint without states resumes with fresh masks)."""
    for name, gen in _generators(model):
        if name in states:
            gen.bit_generator.state = _from_jsonable(states[name])


def save_checkpoint(path, model, optimizer, vocab: Vocab, config: dict, epoch: int, history: list,
                    best_state: dict | None = None, extra: dict | None = None) -> None:
    """Write everything needed to rebuild and resume a run to ``path`` (atomic).

    Layout: ``{"format", "version", "model": state_dict, "best_model": state_dict,
    "optim": optimizer state, "vocab": JSON token list, "config": JSON, "epoch": int,
    "history": JSON, "random": JSON of the dropout generators' states}``. The previous file stays intact until the new one is complete.
    """
    obj = {
        "format": CHECKPOINT_FORMAT,
        "version": 1,
        "epoch": int(epoch),
        "config": json.dumps(config, sort_keys=True),
        "vocab": json.dumps(vocab.tokens, ensure_ascii=False),
        "history": json.dumps(history),
        "model": model.state_dict(),
        "optim": optimizer.state_dict() if optimizer is not None else {},
        "random": json.dumps(random_states(model)),
    }
    if best_state is not None:
        obj["best_model"] = best_state
    if extra:
        obj["extra"] = json.dumps(extra)
    save(obj, path)


def load_checkpoint(path) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Returns a dict with ``config`` (dict), ``vocab`` (Vocab), ``epoch`` (int), ``history``
    (list), ``model``/``best_model`` (state dicts, NumPy arrays), ``optim``, ``extra``,
    ``random`` (generator states for :func:`set_random_states`; empty for older files).
    Raises ValueError when the file is not such a checkpoint.
    """
    obj = load(path)
    if not isinstance(obj, dict) or obj.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path!s} is a tinytt file but not a training checkpoint "
                         f"(expected format {CHECKPOINT_FORMAT!r})")
    missing = [k for k in ("config", "vocab", "epoch", "history", "model") if k not in obj]
    if missing:
        raise ValueError(f"{path!s} is a damaged training checkpoint: it lacks {', '.join(missing)}")
    return {
        "config": json.loads(obj["config"]),
        "vocab": Vocab(json.loads(obj["vocab"])),
        "epoch": int(obj["epoch"]),
        "history": json.loads(obj["history"]),
        "model": obj["model"],
        "best_model": obj.get("best_model"),
        "optim": obj.get("optim") or None,
        "extra": json.loads(obj["extra"]) if "extra" in obj else {},
        "random": json.loads(obj["random"]) if "random" in obj else {},
    }


# ----------------------------------------------------------------------------- fit
@dataclass
class FitResult:
    """What :func:`fit` returns.

    ``history``: one dict per epoch run (``epoch``, ``train_loss``, ``steps``, ``valid_loss``,
    ``valid_<metric>``, ``train_seconds``, ``eval_seconds``; ``test_*`` with
    ``test_every_epoch``); ``best_epoch``, ``best_valid`` (``{"loss", metric}``) and
    ``best_state`` (a copy of the weights): the epoch with the best validation metric;
    ``test``: ``{"loss", metric, "n"}`` of the test split at that epoch, or None without a
    test split; ``epoch_seconds``/``eval_seconds`` per epoch; ``seconds`` in all.
    """

    history: list = field(default_factory=list)
    best_epoch: int | None = None
    best_valid: dict | None = None
    test: dict | None = None
    epoch_seconds: list = field(default_factory=list)
    eval_seconds: list = field(default_factory=list)
    seconds: float = 0.0
    best_state: dict | None = None


def _better(task, new: float, old: float | None) -> bool:
    if old is None or (isinstance(old, float) and math.isnan(old)):
        return not math.isnan(new)
    return new > old if task.higher_is_better else new < old


def _copy_state(model) -> dict:
    return {k: to_numpy(v).copy() for k, v in model.state_dict().items()}


def fit(model, optimizer, task, epochs: int, *, start_epoch: int = 0, history: list | None = None,
        best_state: dict | None = None, checkpoint: str | None = None, vocab: Vocab | None = None,
        config: dict | None = None, test_every_epoch: bool = False, log=None,
        max_steps: int | None = None, time_budget: float | None = None) -> FitResult:
    """Train ``model`` for epochs ``start_epoch .. epochs-1``; evaluate on ``valid`` after each.

    The weights with the best validation metric are kept (in memory and in the
    checkpoint); at the end the test split (when present) is evaluated with them, so the
    reported test metric is the one at the best-validation epoch. With
    ``test_every_epoch`` the test split is evaluated after every epoch instead (each
    history row then carries it). After every epoch a checkpoint is written to
    ``checkpoint`` (when given; needs ``vocab``, and stores ``config`` or ``{}``).

    ``max_steps``/``time_budget`` (seconds, per epoch) cut epochs short (demos, smoke
    tests). ``log(str)`` receives one line per epoch. Returns a :class:`FitResult`.
    Raises ValueError when there are epochs to run but the training split gives no step
    (it is empty, or an LM stream is shorter than two rows of ``batch_size``).
    """
    if max_steps is not None and (isinstance(max_steps, bool) or not isinstance(max_steps, numbers.Integral)
                                  or max_steps < 1):
        raise ValueError(f"fit: max_steps must be None or an int >= 1, got {max_steps!r}")
    epochs = int_arg("fit", "epochs", epochs, low=0)
    start_epoch = int_arg("fit", "start_epoch", start_epoch, low=0)
    if time_budget is not None:
        time_budget = number_arg("fit", "time_budget", time_budget, positive=True)
    if checkpoint is not None and not isinstance(vocab, Vocab):
        raise ValueError(f"fit: a checkpoint needs vocab (the Vocab to store with it), got {type(vocab).__name__}")
    if checkpoint is not None:
        try:   # checked before the first epoch, not when its checkpoint is written
            json.dumps(config or {}, sort_keys=True)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"fit: config is stored in the checkpoint as JSON and must hold only str keys, "
                            f"str, int, float, bool, None, lists and dicts ({exc})") from None
    if start_epoch < epochs and task.steps_per_epoch() == 0:
        raise ValueError("fit: the training split is empty (0 steps per epoch); there is nothing to train on")
    if start_epoch < epochs and not _split_present(task, "valid", task.min_eval_length):
        raise ValueError("fit: the validation split is missing or too short to evaluate (a language model needs "
                         "at least 2 tokens); the best weights are chosen on it")
    log = log or (lambda s: None)
    history = history if history is not None else []   # appended to in place (callers see progress)
    res = FitResult(history=history, best_state=best_state)
    metric = task.metric
    for row in history:  # resume: recover the best epoch so far
        if _better(task, row["valid_" + metric], None if res.best_valid is None else res.best_valid[metric]):
            res.best_epoch = row["epoch"]
            res.best_valid = {"loss": row["valid_loss"], metric: row["valid_" + metric]}
            # that epoch's test metric, or none (not an earlier epoch's): fit evaluates it at the end
            res.test = ({"loss": row.get("test_loss"), metric: row["test_" + metric], "n": row.get("test_n")}
                        if "test_" + metric in row else None)
        res.epoch_seconds.append(row.get("train_seconds"))
        res.eval_seconds.append(row.get("eval_seconds"))
    has_test = _split_present(task, "test")
    t_start = time.perf_counter()
    for epoch in range(start_epoch, epochs):
        t0 = time.perf_counter()
        deadline = None if time_budget is None else t0 + time_budget
        tr = task.train_epoch(model, optimizer, epoch, max_steps=max_steps, deadline=deadline,
                              desc=f"epoch {epoch + 1}/{epochs}")
        t1 = time.perf_counter()
        if tr["steps"] == 0:
            raise ValueError(f"fit: epoch {epoch + 1} ran no training step (time_budget={time_budget!r} s "
                             f"ended it before the first batch)")
        if not math.isfinite(tr["train_loss"]):
            raise FloatingPointError(f"training loss is {tr['train_loss']} in epoch {epoch + 1}; "
                                     f"try a smaller --lr or gradient clipping")
        va = task.evaluate(model, "valid")
        row = {"epoch": epoch + 1, "train_loss": tr["train_loss"], "steps": tr["steps"],
               "valid_loss": va["loss"], "valid_" + metric: va[metric]}
        improved = _better(task, va[metric], None if res.best_valid is None else res.best_valid[metric])
        if test_every_epoch and has_test:
            te = task.evaluate(model, "test")
            row["test_loss"], row["test_" + metric], row["test_n"] = te["loss"], te[metric], te["n"]
        t2 = time.perf_counter()
        row["train_seconds"] = round(t1 - t0, 3)
        row["eval_seconds"] = round(t2 - t1, 3)
        history.append(row)
        res.epoch_seconds.append(row["train_seconds"])
        res.eval_seconds.append(row["eval_seconds"])
        if improved:
            res.best_epoch = epoch + 1
            res.best_valid = {"loss": va["loss"], metric: va[metric]}
            res.best_state = _copy_state(model)
            if test_every_epoch and has_test:
                res.test = {"loss": row["test_loss"], metric: row["test_" + metric], "n": te["n"]}
        msg = (f"epoch {epoch + 1}/{epochs}: train loss {tr['train_loss']:.4f}, valid {metric} "
               f"{va[metric]:.4f}" + (f", test {metric} {row['test_' + metric]:.4f}" if "test_" + metric in row else "")
               + f" ({row['train_seconds']:.1f} s train, {row['eval_seconds']:.1f} s eval)"
               + (" *best*" if improved else ""))
        log(msg)
        if checkpoint is not None:
            save_checkpoint(checkpoint, model, optimizer, vocab, config or {}, epoch + 1, history, res.best_state)
    # the test split at the best-validation weights; also with test_every_epoch when the best
    # epoch ran before a resume that first asked for it (its history row has no test metric)
    if has_test and res.best_state is not None and (not test_every_epoch or res.test is None):
        last = _copy_state(model)
        model.load_state_dict(res.best_state)
        t3 = time.perf_counter()
        res.test = task.evaluate(model, "test")
        res.eval_seconds.append(round(time.perf_counter() - t3, 3))
        model.load_state_dict(last)
    res.seconds = time.perf_counter() - t_start
    return res


def _split_present(task, name: str, min_length: int = 1) -> bool:
    store = getattr(task, "splits", None) or getattr(task, "streams", None) or {}
    split = store.get(name)
    return split is not None and len(split) >= min_length


# ----------------------------------------------------------------------------- conveniences for scripts
def load_classification(name: str, data_dir=None, vocab_size: int = 25000, max_len: int | None = 256,
                        seed: int = 0, valid_fraction: float = 0.1, max_train: int | None = None,
                        download: bool = False):
    """A named classification dataset, tokenized and encoded, ready for :class:`ClassificationTask`.

    Returns ``(data, vocab, num_classes)`` with ``data = {"train", "valid", "test"}`` of
    :class:`ClassificationData`. A validation split is carved from train (seeded) when the
    dataset has none; ``max_train`` (None or an int >= 1) keeps a seeded random subset of
    that many training examples.
    The vocabulary (``vocab_size`` ids incl. ``<pad>``/``<unk>``) is built on the training
    part only. Raises ``FileNotFoundError`` (with the paths looked at) when data is missing.
    """
    from .data import NUM_CLASSES, load_dataset, tokenize

    if max_train is not None:
        max_train = int_arg("load_classification", "max_train", max_train)
    # MR's own split is carved with a FIXED seed (the test set must not move with ``seed``)
    raw = load_dataset(name, data_dir, download=download, valid_fraction=valid_fraction)
    toks = {k: (None if v is None else ([tokenize(t) for t in v[0]], list(v[1]))) for k, v in raw.items()}
    if toks.get("valid") is None:
        t, lab = toks["train"]
        tr, va = carve_validation(len(t), valid_fraction, seed)
        toks["valid"] = ([t[i] for i in va], [lab[i] for i in va])
        toks["train"] = ([t[i] for i in tr], [lab[i] for i in tr])
    if max_train is not None and max_train < len(toks["train"][0]):
        keep = numpy.sort(numpy.random.default_rng(seed + 1).permutation(len(toks["train"][0]))[:max_train])
        toks["train"] = ([toks["train"][0][i] for i in keep], [toks["train"][1][i] for i in keep])
    vocab = Vocab.build(toks["train"][0], max_size=vocab_size)
    data = {k: ClassificationData.from_tokens(v[0], v[1], vocab, max_len) for k, v in toks.items()}
    return data, vocab, NUM_CLASSES[name]


def train_classifier(config: dict, data: dict, vocab: Vocab, num_classes: int, epochs: int = 2,
                     lr: float = 1e-3, batch_size: int = 64, seed: int = 0, log=None, model=None,
                     show_progress: bool = True) -> dict:
    """Build (unless ``model`` is given) and train a classifier; return metrics and the model.

    ``config`` is a :func:`tinytt.models.build_model` config. Returns ``{"model",
    "valid_accuracy", "test_accuracy" (at the best-validation epoch), "best_epoch",
    "embedding_parameters", "compression", "total_parameters", "seconds",
    "epoch_seconds"}``; the returned model holds the best-validation weights.
    """
    from .models import build_model, describe
    from .optim import Adam

    if model is None:
        model = build_model(dict(config, task="classify", seed=seed), len(vocab), num_classes)
    task = ClassificationTask(data, batch_size=batch_size, seed=seed, show_progress=show_progress)
    res = fit(model, Adam(model.parameters(), lr=lr), task, epochs, log=log)
    if res.best_state is not None:
        model.load_state_dict(res.best_state)
    return {"model": model, "valid_accuracy": None if res.best_valid is None else res.best_valid["accuracy"],
            "test_accuracy": None if res.test is None else res.test["accuracy"], "best_epoch": res.best_epoch,
            **describe(model), "seconds": round(res.seconds, 2), "epoch_seconds": res.epoch_seconds}
