"""Deterministic segment sums of rows on NumPy, split over the CPU's cores.

``segment_sum(indices, values, num_rows)`` computes ``out[i] = sum of values[k] over k
with indices[k] == i`` -- the backward of every row gather (embedding lookups, ``take``).
``numpy.add.at`` does this one element at a time and, summed in whatever order, is slow;
here the rows are sorted by index (a stable sort, so repeated indices are always added in
the order their rows lie in memory: C order for contiguous values, the view's memory order
for a permuted view, which is read in place) and summed in a few large NumPy calls:

- segments longer than ``_LONG_SEGMENT`` (frequent ids: "the", padding) are gathered and
  summed one by one;
- the others are grouped by length into power-of-two buckets; each bucket is gathered as a
  padded ``(segments, width, *rest)`` block (padding slots zeroed) and summed over the width.

Each long segment and each slice of a bucket is a *job* writing its own output rows. When
there is enough work (``_PARALLEL_MIN_FLOATS``) and more than one core
(``tinytt.parallel.num_threads``), the jobs are dealt to the cores, largest first, and run at
once: gathers and reductions are memory-bound and NumPy releases the GIL while it loops, so a
second core adds memory bandwidth. Every row is summed by the same operations in the same
order whichever thread runs it: the result is bit-identical to a serial run.

Cost: the sort (a radix sort for 16-bit keys; skipped when the indices are already
non-decreasing) plus at most ~2K gathered rows for K indices, read once more by the sums.
"""

from __future__ import annotations

import math

import numpy

from . import parallel

__all__ = ["segment_sum"]

#: segments longer than this are summed one at a time (when there are at most
#: ``_MAX_LONG_SEGMENTS`` of them) instead of in padded power-of-two buckets
_LONG_SEGMENT = 64
_MAX_LONG_SEGMENTS = 256
#: below this many gathered floats a second thread costs more than it saves (~50 us hand-off)
_PARALLEL_MIN_FLOATS = 1 << 18
#: a broadcast ``values`` is summed by one GEMM (``_broadcast_sum``) when its count matrix
#: has at most this many entries per index (a GEMM multiply-add costs far less than
#: gathering a row) and at most ``_BROADCAST_GEMM_MAX`` entries in all
_BROADCAST_GEMM_RATIO = 16
_BROADCAST_GEMM_MAX = 1 << 24
#: buckets are cut into jobs of about this many gathered rows, so the cores can be balanced
_JOB_ROWS = 2048
#: outputs with at least this many elements are zero-filled by all cores. Measured on 2 cores,
#: float32 rows of 256: 1 M elements 0.12 ms either way, 2 M 1.09 -> 0.60 ms, a 30000 x 256
#: embedding gradient 4.29 -> 2.88 ms; at 0.5 M the hand-off makes it 0.06 -> 0.09 ms
_PARALLEL_ZERO_MIN = 1 << 20


def _zeros(shape: tuple, dtype):
    """``numpy.zeros(shape, dtype)``, written by all cores when it is large: with freed memory
    kept mapped (``tinytt.allocator``) a big zeros is a memset, which one core does not
    saturate here."""
    size = math.prod(shape)
    if size < _PARALLEL_ZERO_MIN or parallel.num_threads() < 2:
        return numpy.zeros(shape, dtype=dtype)
    out = numpy.empty(shape, dtype=dtype)
    rows = out.reshape(shape[0], -1)
    # blocks of at least half the threshold, so a thread always gets a worthwhile share
    min_rows = max(1, _PARALLEL_ZERO_MIN // 2 // rows.shape[1])
    parallel.map_blocks(lambda a, b: rows[a:b].fill(0), shape[0], min_size=min_rows)
    return out


def _flat_rows(values, lead: tuple, rest: tuple):
    """``values`` (lead + rest) as rows ``(prod(lead),) + rest`` without copying, or None
    when that needs a copy (e.g. a broadcast gradient from a mean over the sequence)."""
    axes = [i for i, n in enumerate(lead) if n != 1]
    for i, j in zip(axes, axes[1:]):
        if values.strides[i] != values.strides[j] * lead[j]:
            return None
    return values.reshape((math.prod(lead),) + rest)


def _memory_order(values, n_lead: int):
    """The permutation of the first ``n_lead`` axes that puts them in memory order (largest
    stride first), or None when they already are or some axis is broadcast (stride 0)."""
    strides = values.strides[:n_lead]
    if any(st == 0 and n > 1 for st, n in zip(strides, values.shape)):
        return None
    perm = tuple(sorted(range(n_lead), key=lambda a: -abs(strides[a])))
    return None if perm == tuple(range(n_lead)) else perm


def _accumulator(dtype):
    """dtype the sums run in: float32 for float16 (float16 sums stall: 5,000 x 0.01 stops
    growing at 32), else the values' own dtype."""
    dtype = numpy.dtype(dtype)
    return numpy.dtype(numpy.float32) if dtype == numpy.float16 else dtype


def _broadcast_sum(indices, values, num_rows: int, counts, skip):
    """The segment sum as one GEMM when ``values`` is broadcast along some of the indices'
    axes (stride 0: a mean or sum over tokens broadcasts one gradient row per sequence),
    or None when that does not apply or would cost more than the gathers.

    With ``J`` distinct rows ``v_j`` behind the broadcast and ``P`` distinct indices,
    ``out[i] = sum_j C[i, j] v_j`` where ``C[i, j]`` counts the positions of value row j
    with index i: one ``(P, J) @ (J, rest)`` product instead of gathering every row.
    The counts are exact integers, so each output is a count-weighted sum (no worse
    rounding than the row-by-row sums). Values with inf or nan go the row-by-row way: in
    the product, a zero count times inf would be nan.
    """
    lead = tuple(indices.shape)
    bcast = [a for a, n in enumerate(lead) if n > 1 and values.strides[a] == 0]
    if not bcast:
        return None
    present = numpy.flatnonzero(counts)
    kept_shape = tuple(1 if a in bcast else n for a, n in enumerate(lead))
    n_kept = math.prod(kept_shape)
    n_present, n_indices = present.shape[0], indices.size
    if n_present * n_kept > min(_BROADCAST_GEMM_RATIO * n_indices, _BROADCAST_GEMM_MAX):
        return None
    rest = tuple(values.shape[len(lead):])
    compact = values[tuple(0 if a in bcast else slice(None) for a in range(len(lead)))]
    compact = compact.reshape(n_kept, -1)
    if not numpy.isfinite(compact).all():
        return None   # a zero count times inf or nan would put nan into rows it never reaches
    position = numpy.zeros(num_rows, dtype=numpy.intp)
    position[present] = numpy.arange(n_present)
    kept_index = numpy.broadcast_to(numpy.arange(n_kept).reshape(kept_shape), lead)
    pair = (position[indices] * n_kept + kept_index).reshape(-1)
    weights = numpy.bincount(pair, minlength=n_present * n_kept).reshape(n_present, n_kept)
    # counts are exact in the GEMM's dtype: float16 (exact to 2048, inf above 65504) and
    # counts above 2**24 go through float32 / float64
    acc = _accumulator(values.dtype)
    if acc.kind in "fc" and int(weights.max(initial=0)) > 2 ** (numpy.finfo(acc).nmant + 1):
        acc = numpy.promote_types(acc, numpy.float64)
    sums = (weights.astype(acc) @ compact.astype(acc, copy=False)).astype(values.dtype, copy=False)
    sums = sums.reshape((n_present,) + rest)
    if n_present == num_rows:    # every row occurs (the distinct rows of a lookup)
        out = sums
    else:
        out = _zeros((num_rows,) + rest, values.dtype)
        out[present] = sums
    if skip is not None:
        out[skip] = 0
    return out


def segment_sum(indices, values, num_rows: int, skip=None):
    """Sum the rows of ``values`` by index (NumPy arrays; see the module docstring).

    Args:
        indices: integer array of shape S, each in [0, num_rows).
        values: array of shape S + rest (any strides: a broadcast array is read in place).
        num_rows: number of output rows.
        skip: None or a row index whose segment is not summed: that output row is zero
            (an embedding's padding row, which gets no gradient).
    Returns:
        (num_rows, *rest) array with ``values.dtype``.
    """
    lead = tuple(indices.shape)
    rest = tuple(values.shape[len(lead):])
    if tuple(values.shape[:len(lead)]) != lead:
        raise ValueError(f"segment_sum: values of shape {tuple(values.shape)} must start with the "
                         f"indices' shape {lead}")
    if indices.size == 0 or math.prod(rest) == 0:   # nothing to add (and no (0, -1) reshapes)
        return numpy.zeros((num_rows,) + rest, dtype=values.dtype)
    floats_per_row = math.prod(rest)
    counts = numpy.bincount(indices.reshape(-1), minlength=num_rows)
    out = _broadcast_sum(indices, values, num_rows, counts, skip)
    if out is not None:
        return out
    flat = _flat_rows(values, lead, rest)
    if flat is None:
        # a permuted view of contiguous rows (an LSTM's time-major input gradient seen as
        # (batch, time, D)): permute the indices the same way and read the rows in memory
        # order, a plain take instead of a multi-index gather
        perm = _memory_order(values, len(lead))
        if perm is not None:
            indices = indices.transpose(perm)
            values = values.transpose(perm + tuple(range(len(lead), values.ndim)))
            lead = tuple(indices.shape)
            flat = _flat_rows(values, lead, rest)
    indices = indices.reshape(-1)

    def rows_at(positions):
        """values' rows at flat positions (an int array of any shape, or a slice)."""
        if isinstance(positions, slice):
            if flat is not None:
                return flat[positions]
            positions = numpy.arange(positions.start, positions.stop)
        if flat is not None:
            return numpy.take(flat, positions, axis=0)
        return values[numpy.unravel_index(positions, lead)]

    starts = numpy.cumsum(counts) - counts
    # position of the j-th row of segment k is order[starts[k] + j]; no sort when already grouped
    grouped = indices.shape[0] < 2 or bool((indices[1:] >= indices[:-1]).all())
    # (16-bit keys when they fit: NumPy's stable sort is then a radix sort, ~4x faster)
    keys = indices.astype(numpy.uint16) if num_rows <= 1 << 16 else indices
    order = None if grouped else numpy.argsort(keys, kind="stable")
    todo = counts
    if skip is not None:
        todo = counts.copy()
        todo[skip] = 0
    width, largest = 1, int(todo.max(initial=0))
    acc = _accumulator(values.dtype)
    if counts.shape[0] == num_rows > 0 and int(counts.min()) > 0:
        # every row occurs: one contiguous take of each row's first value fills the output
        # (no zero-fill); rows that occur more than once are overwritten by their sums below
        out = rows_at(starts if order is None else order[starts])
        width = 2
    else:
        out = _zeros((num_rows,) + rest, values.dtype)
    jobs = []  # (rows gathered, fn writing its own rows of out)

    def long_segment(k: int):
        def job():
            span = slice(int(starts[k]), int(starts[k] + counts[k]))
            total = rows_at(span if order is None else order[span]).sum(axis=0, dtype=acc)
            out[k] = numpy.asarray(total).astype(out.dtype, copy=False)   # integers wrap like add.at
        return job

    def bucket(members, width: int):
        def job():
            first = starts[members]
            if width == 1:
                out[members] = rows_at(first if order is None else order[first])
                return
            offsets = numpy.arange(width)
            valid = offsets < counts[members][:, None]
            positions = numpy.where(valid, first[:, None] + offsets, first[:, None])
            block = rows_at(positions if order is None else order[positions])
            # zero the padding slots (assignment, not a multiply: inf * 0 would be nan)
            block[~valid] = 0
            out[members] = block.sum(axis=1, dtype=acc)
        return job

    # long segments (frequent ids: padding, "the") are summed one by one, without padding
    heavy = numpy.flatnonzero(todo > _LONG_SEGMENT)
    if 0 < heavy.shape[0] <= _MAX_LONG_SEGMENTS:
        jobs += [(int(counts[k]), long_segment(k)) for k in heavy.tolist()]
        largest = _LONG_SEGMENT
    while width // 2 < largest:
        members = numpy.flatnonzero((todo > width // 2) & (todo <= width))
        per_job = max(1, _JOB_ROWS // width)
        for a in range(0, members.shape[0], per_job):
            part = members[a:a + per_job]
            jobs.append((part.shape[0] * width, bucket(part, width)))
        width *= 2
    parallel.run_jobs(jobs, min_weight=_PARALLEL_MIN_FLOATS // max(floats_per_row, 1))
    if skip is not None:
        out[skip] = 0
    return out
