"""Padding and mini-batch iteration for variable-length id sequences.

* :func:`pad_sequences` turns a list of id lists into a dense ``int64`` matrix
  plus lengths.
* :class:`BucketBatcher` / :func:`iterate_batches` yield padded batches of
  similar length (little padding), in a seeded random order, with every example
  exactly once per epoch.
* :func:`bptt_batches` cuts one long token-id stream (language modelling) into
  ``(inputs, targets)`` windows.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from .._validate import as_int, int_arg

__all__ = ["pad_sequences", "BucketBatcher", "iterate_batches", "bptt_batches"]

_TRUNCATE = ("end", "start")


def _check_max_len(max_len, where):
    if max_len is None:
        return None
    if isinstance(max_len, bool) or not isinstance(max_len, (int, np.integer)) or max_len < 1:
        raise ValueError(f"{where}: max_len must be None or an int >= 1, got {max_len!r}")
    return int(max_len)


def _check_pad_id(pad_id, where):
    """An int64 value (negative ones too: -100 pads targets for ``ignore_index=-100``)."""
    value = as_int(pad_id)
    if value is None or not -2 ** 63 <= value < 2 ** 63:
        raise ValueError(f"{where}: pad_id must be an int64 value, got {pad_id!r}")
    return value


def _check_truncate(truncate, where):
    if truncate not in _TRUNCATE:
        raise ValueError(f"{where}: truncate must be 'end' (keep the first max_len ids) or 'start' "
                         f"(keep the last max_len ids), got {truncate!r}")


def pad_sequences(
    seqs: Sequence[Sequence[int]],
    max_len: int | None = None,
    pad_id: int = 0,
    truncate: str = "end",
) -> tuple[np.ndarray, np.ndarray]:
    """Pad (and optionally truncate) id sequences into a dense (B, T) matrix plus their lengths.

    Parameters
    ----------
    seqs : sequence of sequences of int
        ``B`` id sequences (lists or 1-D integer arrays), possibly empty.
    max_len : int or None
        Sequences longer than this are truncated. The width ``T`` of the
        result is the longest (truncated) length in ``seqs``, so ``T <= max_len``.
    pad_id : int
        Fill value after each sequence's end (default 0 = ``<pad>``).
    truncate : {"end", "start"}
        ``"end"`` drops ids past ``max_len`` (keeps the beginning); ``"start"``
        drops ids from the front (keeps the ending).

    Returns
    -------
    ids : np.ndarray, int64, shape (B, T)
        ``ids[b, :lengths[b]]`` is the (truncated) sequence, the rest ``pad_id``.
    lengths : np.ndarray, int64, shape (B,)
        Lengths after truncation.

    Cost O(B * T).
    """
    max_len = _check_max_len(max_len, "pad_sequences")
    _check_truncate(truncate, "pad_sequences")
    pad_id = _check_pad_id(pad_id, "pad_sequences")
    if isinstance(seqs, (str, bytes)):
        raise TypeError("pad_sequences: seqs must be a sequence of id sequences, got a string")
    rows = []
    for i, s in enumerate(seqs):
        a = np.asarray(s)
        if a.ndim != 1 or (a.size and a.dtype.kind not in "iu"):
            raise TypeError(f"pad_sequences: seqs[{i}] must be a 1-D sequence of ints, "
                            f"got {a.dtype} array of shape {a.shape}")
        if a.size and a.dtype.kind == "u" and int(a.max()) >= 2 ** 63:
            raise ValueError(f"pad_sequences: seqs[{i}] holds id {int(a.max())}, beyond int64")
        if max_len is not None and a.shape[0] > max_len:
            a = a[:max_len] if truncate == "end" else a[a.shape[0] - max_len:]
        rows.append(a)
    lengths = np.fromiter((r.shape[0] for r in rows), dtype=np.int64, count=len(rows))
    width = int(lengths.max()) if len(rows) else 0
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    for b, r in enumerate(rows):
        ids[b, : r.shape[0]] = r
    return ids, lengths


class BucketBatcher:
    """Length-bucketed, seeded mini-batch iterator.

    Each epoch: the example indices are shuffled (seeded), cut into pools of
    ``batch_size * bucket_size_multiplier`` examples, each pool is sorted by
    (truncated) length and cut into batches, and the batch order is shuffled.
    Batches therefore hold examples of similar length (little padding) while
    the order stays random. With ``shuffle=False`` the pools are consecutive
    runs of the input and the batch order is kept (still deterministic).

    Every example appears exactly once per epoch; one batch may be smaller
    than ``batch_size`` unless ``drop_last=True``, which drops
    ``n % batch_size`` examples instead: the last ones of the epoch's (seeded)
    order before bucketing, so random ones when shuffling (the last ones of the
    input with ``shuffle=False``), not always the longest.

    The order depends only on ``(seed, epoch)``: ``batcher.epoch(k)`` always
    yields the same batches; iterating the batcher itself runs epochs
    0, 1, 2, ... on successive ``for`` loops.

    Yields ``(ids, lengths, labels)``: ``ids`` int64 ``(B, T)`` padded with
    ``pad_id``, ``lengths`` int64 ``(B,)``, ``labels`` a ``(B,)`` array (``None``
    when no labels were given). Use :attr:`last_indices` to get the example
    indices of the batch just yielded.
    """

    def __init__(
        self,
        sequences: Sequence[Sequence[int]],
        labels: Sequence | np.ndarray | None = None,
        batch_size: int = 32,
        max_len: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        bucket_size_multiplier: int = 50,
        drop_last: bool = False,
        pad_id: int = 0,
        truncate: str = "end",
    ):
        """See the class docstring; ``sequences`` are id lists (see ``Vocab.encode``)."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"BucketBatcher: batch_size must be an int >= 1, got {batch_size!r}")
        if (isinstance(bucket_size_multiplier, bool) or not isinstance(bucket_size_multiplier, (int, np.integer))
                or bucket_size_multiplier < 1):
            raise ValueError(
                f"BucketBatcher: bucket_size_multiplier must be an int >= 1, got {bucket_size_multiplier!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"BucketBatcher: seed must be a non-negative int, got {seed!r}")
        self.max_len = _check_max_len(max_len, "BucketBatcher")
        _check_truncate(truncate, "BucketBatcher")
        self.sequences = list(sequences)
        n = len(self.sequences)
        if labels is not None:
            labels = np.asarray(labels)
            if labels.ndim < 1 or labels.shape[0] != n:
                raise ValueError(
                    f"BucketBatcher: labels must have one entry per sequence ({n}), got shape {labels.shape}")
        self.labels = labels
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.bucket_size_multiplier = int(bucket_size_multiplier)
        self.drop_last = bool(drop_last)
        self.pad_id = _check_pad_id(pad_id, "BucketBatcher")
        self.truncate = truncate
        for i, s in enumerate(self.sequences[:64]):
            # a cheap check of the first rows' first ids, so token lists fail here, not mid-epoch
            # (every row is checked when it is padded)
            first = s[0] if len(s) else 0
            if isinstance(s, (str, bytes)) or isinstance(first, bool) or not isinstance(first, (int, np.integer)):
                raise TypeError(f"BucketBatcher: sequences[{i}] must be a sequence of int ids, got {s!r:.60}")
        lengths = np.fromiter((len(s) for s in self.sequences), dtype=np.int64, count=n)
        if self.max_len is not None:
            lengths = np.minimum(lengths, self.max_len)
        self._lengths = lengths
        self._next_epoch = 0
        self.last_indices: np.ndarray | None = None

    def __len__(self) -> int:
        """Number of batches per epoch."""
        n = len(self.sequences)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def batch_indices(self, epoch: int = 0) -> list[np.ndarray]:
        """Example indices of every batch of ``epoch``, in yield order (int64 arrays).

        Cost O(n log n) for n examples. ``epoch`` is an int >= 0.
        """
        epoch = int_arg("BucketBatcher", "epoch", epoch, low=0)
        n = len(self.sequences)
        if self.shuffle:
            rng = np.random.default_rng([self.seed, int(epoch)])
            order = rng.permutation(n)
        else:
            rng = None
            order = np.arange(n)
        if self.drop_last:
            # drop the n % batch_size examples at the end of the (shuffled) order *before*
            # bucketing: dropping the incomplete batch after sorting a pool by length would
            # always drop the longest examples of the last pool (with n <= one pool: the same
            # longest examples in every epoch, never trained on)
            order = order[: n - n % self.batch_size]
        pool = self.batch_size * self.bucket_size_multiplier
        batches = []
        for start in range(0, n, pool):
            chunk = order[start:start + pool]
            chunk = chunk[np.argsort(self._lengths[chunk], kind="stable")]
            batches.extend(chunk[i:i + self.batch_size] for i in range(0, len(chunk), self.batch_size))
        if rng is not None:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return [np.asarray(b, dtype=np.int64) for b in batches]

    def epoch(self, epoch: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
        """Yield the ``(ids, lengths, labels)`` batches of ``epoch`` (deterministic; ``epoch``
        is checked when this is called, not at the first batch)."""
        return self._batches(self.batch_indices(epoch))

    def _batches(self, order):
        for idx in order:
            ids, lengths = pad_sequences([self.sequences[i] for i in idx], self.max_len, self.pad_id, self.truncate)
            labels = None if self.labels is None else self.labels[idx]
            self.last_indices = idx
            yield ids, lengths, labels

    def __iter__(self):
        """Run the next epoch (0 on the first ``for`` loop, then 1, 2, ...)."""
        k = self._next_epoch
        self._next_epoch += 1
        return self.epoch(k)


def iterate_batches(
    sequences: Sequence[Sequence[int]],
    labels: Sequence | np.ndarray | None = None,
    batch_size: int = 32,
    max_len: int | None = None,
    shuffle: bool = True,
    seed: int = 0,
    epoch: int = 0,
    bucket_size_multiplier: int = 50,
    drop_last: bool = False,
    pad_id: int = 0,
    truncate: str = "end",
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
    """One epoch of :class:`BucketBatcher` batches: yields ``(ids, lengths, labels)``.

    Equivalent to ``BucketBatcher(sequences, labels, ...).epoch(epoch)``;
    deterministic for a given ``(seed, epoch)``.
    """
    batcher = BucketBatcher(sequences, labels, batch_size=batch_size, max_len=max_len, shuffle=shuffle, seed=seed,
                            bucket_size_multiplier=bucket_size_multiplier, drop_last=drop_last, pad_id=pad_id,
                            truncate=truncate)
    return batcher.epoch(epoch)


def bptt_batches(
    ids: Sequence[int] | np.ndarray,
    batch_size: int,
    bptt: int,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Language-model batches from one id stream (e.g. ``vocab.encode(corpus["train"])``).

    The stream is trimmed to a multiple of ``batch_size`` and reshaped to
    ``(batch_size, N)`` (row ``b`` is the ``b``-th contiguous slice, the usual
    "batchify"), then cut into windows of ``bptt`` steps. Yields
    ``(inputs, targets)`` int64 arrays of shape ``(batch_size, t)`` with
    ``t <= bptt`` and ``targets[:, j] == next id after inputs[:, j]``; hidden
    state can be carried across consecutive windows. Cost O(len(ids)). The
    arguments are checked when it is called (ValueError/TypeError naming them);
    the windows are produced lazily.
    """
    for name, v in (("batch_size", batch_size), ("bptt", bptt)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"bptt_batches: {name} must be an int >= 1, got {v!r}")
    raw = np.asarray(ids)
    if raw.ndim != 1:
        raise ValueError(f"bptt_batches: ids must be 1-D, got shape {raw.shape}")
    if raw.size and raw.dtype.kind not in "iu":
        raise TypeError(f"bptt_batches: ids must be integer ids (e.g. vocab.encode(tokens)), got dtype {raw.dtype}")
    arr = raw.astype(np.int64, copy=False)
    n = arr.shape[0] // batch_size
    if n < 2:
        raise ValueError(f"bptt_batches: need at least 2 * batch_size = {2 * batch_size} ids, got {arr.shape[0]}")
    # the checks above run at the call; the windows are produced lazily
    return _bptt_windows(arr[: n * batch_size].reshape(batch_size, n), n, bptt)


def _bptt_windows(data, n: int, bptt: int):
    for start in range(0, n - 1, bptt):
        t = min(bptt, n - 1 - start)
        yield data[:, start:start + t], data[:, start + 1:start + 1 + t]
