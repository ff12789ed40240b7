"""Rows of a TT-matrix for a batch of ids, without building the matrix: one fused op.

A TT-matrix ``W`` (V' x D) has cores ``G_k`` of shape ``(r_{k-1}, v_k, d_k, r_k)``.
Row ``i`` with C-order digits ``(i_1, ..., i_N)`` is the contraction

    W[i, :] = G_1[:, i_1] x G_2[:, i_2] x ... x G_N[:, i_N]       (reshaped to D = d_1...d_N)

computed left to right as partial products ``L_k`` of shape ``(d_1...d_k, r_k)``:
``L_k = L_{k-1} @ G_k[:, i_k]`` (``G_k[:, i_k]`` viewed as ``(r_{k-1}, d_k r_k)``).

``L_k`` depends only on the first k digits, so the ids are first deduplicated
and every level works on *nodes*: distinct prefixes of digits. Each level
``k >= 2`` turns parent nodes into child nodes in one of two ways:

- **select**: multiply each child's parent partial product by the core slice of
  the child's digit; cost ``children * D_<k * r_{k-1} * d_k r_k``. When the level has
  many children per digit value (real text: thousands of ids, tens of digit values),
  the plan sorts the children by (digit, parent) and each digit value is ONE GEMM
  ``(children_i * D_<k, r_{k-1}) @ (r_{k-1}, d_k r_k)`` written straight into the
  level's (digit-major) partial products; its backward GEMM ``parents_i^T @ grad_i``
  sums the core gradient of that digit directly. Otherwise one small matmul per child
  (batched matmul).
- **expand**: multiply every parent by every slice of the core,
  ``(parents * D_<k, r_{k-1}) @ (v_k, r_{k-1}, d_k r_k)``, into a digit-major block
  whose row ``i * parents + p`` is child (p, i), then take the children present;
  more flops (all ``v_k`` children of each parent) in big GEMMs.

Three strategies arrange this:

- ``"gather"``: every distinct id is its own chain (no prefix sharing), select at
  every level — the per-token contraction of the paper's ``gather_rows``;
- ``"prefix"``: nodes are the distinct prefixes present in the batch, and each
  level picks select or expand by the cost model below;
- ``"full"``: nodes are *all* prefixes, expand at every level — the whole matrix
  is built (what the paper's layer does on every forward), then rows are gathered.

``"auto"`` estimates the cost of the three from the batch (flops weighted by how
fast each kind of kernel runs, plus the floats moved) and runs the cheapest.

The plan relabels nodes so that rows come out digit-major wherever a level runs per
digit; ``LookupPlan.inverse`` maps each token straight to its row, so nothing is
permuted back. The backward pass (hand-written, same levels in reverse) gives each
core a gradient only at the digits that occurred. Per-digit levels: one GEMM per digit
for the core slice, one for the parents' gradient, which is added to the parents by
plain indexed addition (a digit's children have distinct parents); batched select
levels sum per digit and per parent with deterministic sorted segment sums
(``backend.scatter_add``); expand levels assign the child gradients into the block
(children are distinct) and run one batched GEMM for the core. Duplicate ids in the
batch are summed once, up front, in a fixed order: the result is deterministic.

The plan of a batch (``plan_lookup``: distinct ids, levels, order) is cached for the last
``PLAN_CACHE_SIZE`` batches (``cached_plan``), so a batch looked up again skips it.

Threads (NumPy, two or more cores; ``tinytt.parallel``): per-digit forward levels run their
digits as jobs on all cores when the level is at most twice the last-level cache, and the
spread of the rows to the tokens and the segment sum of the output gradient are split over
the cores. The backward's per-digit loops stay serial (their small calls would hand the GIL
back and forth). Results are the same bits run to run; across thread counts the GEMMs may
round differently (jobs run OpenBLAS on one thread each, a serial level may use several),
the gathers and sums do not.
"""

from __future__ import annotations

import collections
import functools
import math
import numbers
import os
import threading
from dataclasses import dataclass

import numpy

from .._validate import as_int
from ..backend import get_xp, scatter_add, take_rows
from ..einsum import CacheInfo   # (hits, misses, size), as for einsum's plan cache
from ..ops import check_ids
from ..parallel import run_jobs
from ..tensor import Tensor, record
from .cores import check_cores

__all__ = ["STRATEGIES", "tt_matrix_rows", "rows_of_checked_ids", "plan_lookup", "estimate_costs",
           "cached_plan", "plan_cache_info", "plan_cache_clear", "PLAN_CACHE_SIZE"]

STRATEGIES = ("gather", "prefix", "full")

# Cost model constants, in flop-equivalents (measured on a 2-core x86 machine with
# OpenBLAS, float32, ranks ~16): one flop of a per-digit GEMM costs 1, one flop of
# NumPy's batched matmul over many tiny matrices costs 2, and moving one float
# (gather, scatter, zero-fill, indexed add) costs about 13 GEMM flops.
_BATCHED_FLOP_COST = 2.0
_FLOAT_MOVE_COST = 13.0


#: per-digit GEMMs and row gathers run on all cores (NumPy) when a level has at least this
#: many multiply-adds (below, a thread hand-off of ~50 us costs more than it saves)
PARALLEL_MIN_MADDS = 1 << 20

#: a select level multiplies per digit value (one GEMM per value present) instead of one
#: small matmul per node when it has at least this many nodes per distinct digit
GROUP_MIN_NODES_PER_DIGIT = 8


@dataclass
class _Level:
    mode: str            # "select" or "expand"
    digit: object        # (n_nodes,) digit of each node at this level
    parent: object       # (n_nodes,) parent node (index into the previous level), or None: node i itself
    n_nodes: int
    spans: list = None   # nodes sorted by digit: [(digit value, start, stop)] of each run, else None
    pick: object = None  # expand levels: (n_nodes,) row of each node in the (v_k * parents) block,
    #                      or None when the nodes are the whole block in block order


@dataclass
class LookupPlan:
    """The node structure of one lookup: per level, the digits and parents of its nodes.

    Rows come out in the last level's node order (for "full": all V' rows, in the order the
    expand blocks produce them); ``inverse`` maps every id of the batch to its row there and
    ``row_of_uniq`` maps each distinct id of ``uniq`` to it.
    """

    strategy: str
    levels: list
    uniq: object         # (U,) sorted distinct ids
    inverse: object      # (B,) row of each id of the batch
    row_of_uniq: object  # (U,) row of each distinct id

    def row_of(self, idx: int):
        """Row of id ``idx``, or None when the batch does not contain it."""
        xp = get_xp(self.uniq)
        if self.uniq.shape[0] == 0:
            return None
        if xp is numpy:
            pos = int(numpy.searchsorted(self.uniq, idx))
            if pos < self.uniq.shape[0] and int(self.uniq[pos]) == idx:
                return int(self.row_of_uniq[pos])
            return None
        # CuPy's searchsorted takes only arrays: search a one-element array; then read the
        # position, the id found there and its row at once (one sync)
        pos = xp.searchsorted(self.uniq, xp.asarray([idx], dtype=self.uniq.dtype))[0]
        at = xp.minimum(pos, self.uniq.shape[0] - 1)
        pos, found, row = (int(v) for v in xp.stack([pos, self.uniq[at].astype(pos.dtype),
                                                     self.row_of_uniq[at].astype(pos.dtype)]).tolist())
        return row if pos < self.uniq.shape[0] and found == idx else None


def _strides(row_shape) -> list:
    strides, acc = [], 1
    for v in reversed(row_shape):
        strides.append(acc)
        acc *= v
    return strides[::-1]


def _level_costs(n_par, n_ch, d_before, r0, v, d, r1, present=None) -> tuple:
    """(expand cost, select cost) of building one level, forward and backward together.

    ``present``: how many of the ``v`` digit values occur at this level (None: all ``v``);
    select runs per digit value (GEMMs) with at least ``GROUP_MIN_NODES_PER_DIGIT`` children
    per value present, as ``plan_lookup`` decides, else as batched matmuls.

    select: three products of ``n_ch * d_before * r0 * d r1`` multiply-adds (forward, core
    gradient, parent gradient); per child, its parent block ``d_before x r0`` is gathered,
    written back and added (4 moves per float) and its output ``d_before x d r1`` written
    and read (2). Levels with fewer than ``GROUP_MIN_NODES_PER_DIGIT`` nodes per digit run
    batched matmuls (slower per flop) that also gather one core slice per child.
    expand: two products over every (parent, digit) pair plus the parent-gradient product
    over the children; the ``v * n_par`` block is written and zero-filled/scattered in the
    backward, and each child's output and parent gradient move twice.
    """
    madds_select = n_ch * d_before * r0 * d * r1
    madds_expand = n_par * d_before * r0 * v * d * r1
    select_moves = n_ch * d_before * (4 * r0 + 2 * d * r1)
    if n_ch >= GROUP_MIN_NODES_PER_DIGIT * (v if present is None else present):
        select = 6 * madds_select + _FLOAT_MOVE_COST * select_moves
    else:
        select_moves += 3 * n_ch * r0 * d * r1
        select = 6 * madds_select * _BATCHED_FLOP_COST + _FLOAT_MOVE_COST * select_moves
    expand_moves = 2 * n_par * v * d_before * d * r1 + 2 * n_ch * d_before * (d * r1 + r0)
    expand = 2 * (2 * madds_expand + madds_select) + _FLOAT_MOVE_COST * expand_moves
    return expand, select


def _node_counts(uniq, row_shape, strategy, xp) -> list:
    n = len(row_shape)
    if strategy == "full":
        return [math.prod(row_shape[: k + 1]) for k in range(n)]
    if strategy == "gather":
        return [int(uniq.shape[0])] * n
    strides = _strides(row_shape)
    counts = []
    for k in range(n):
        code = uniq // strides[k]
        counts.append(int((code[1:] != code[:-1]).sum()) + 1 if code.shape[0] else 0)
    return counts


def _digits_present(uniq, row_shape, xp) -> list:
    """How many distinct digit values the ids ``uniq`` have at each level (the same for the
    gather and prefix nodes, whose level-k digits are those of the ids)."""
    strides = _strides(row_shape)
    return [int(xp.count_nonzero(xp.bincount((uniq // strides[k]) % v, minlength=v))) if uniq.shape[0] else 0
            for k, v in enumerate(row_shape)]


def estimate_costs(uniq, row_shape, col_shape, ranks, xp=None, prefix_counts=None, present=None) -> dict:
    """Estimated cost (flop-equivalents) of each strategy for the distinct ids ``uniq``.

    The model (``_level_costs``): per level, flops of the forward and backward products
    plus 13 flop-equivalents per float gathered, scattered or zero-filled; "prefix"
    takes the cheaper of select and expand at each level; "full" also pays for
    zero-filling and scattering into all V' rows in the backward.
    ``prefix_counts`` (distinct prefixes per level) and ``present`` (distinct digit values per
    level, ``_digits_present``) are reused when the caller has them.
    """
    xp = xp or get_xp(uniq)
    if present is None:
        present = _digits_present(uniq, row_shape, xp)
    costs = {}
    for strategy in STRATEGIES:
        if strategy == "prefix" and prefix_counts is not None:
            counts = prefix_counts
        else:
            counts = _node_counts(uniq, row_shape, strategy, xp)
        total = _FLOAT_MOVE_COST * counts[0] * col_shape[0] * ranks[1]
        d_before = col_shape[0]
        for k in range(1, len(row_shape)):
            expand, select = _level_costs(counts[k - 1], counts[k], d_before, ranks[k], row_shape[k],
                                          col_shape[k], ranks[k + 1], None if strategy == "full" else present[k])
            total += {"gather": select, "full": expand}.get(strategy, min(expand, select))
            d_before *= col_shape[k]
        if strategy == "full":
            total += _FLOAT_MOVE_COST * counts[-1] * d_before
        costs[strategy] = total
    return costs


#: ``_unique_inverse`` marks ids in a table when the id range is at most this many entries
#: (or 8x the number of ids): O(range + ids) instead of sorting the ids
_MARK_TABLE_LIMIT = 1 << 21


def _unique_inverse(flat_ids, bound: int, xp):
    """Sorted distinct ids and each id's position among them: ``xp.unique(..., return_inverse)``.

    On NumPy with a small id range (``bound`` = ids' exclusive upper limit) it marks the
    ids in a boolean table of ``bound`` entries and reads the distinct ids off it, which
    avoids the O(B log B) sort (measured 0.09 ms instead of 0.57 ms for 12,800 ids < 25,000).
    """
    if xp is numpy and 0 < bound <= max(_MARK_TABLE_LIMIT, 8 * flat_ids.shape[0]):
        present = xp.zeros(bound, dtype=bool)
        present[flat_ids] = True
        uniq = xp.flatnonzero(present)
        position = xp.empty(bound, dtype=xp.intp)
        position[uniq] = xp.arange(uniq.shape[0])
        return uniq.astype(flat_ids.dtype, copy=False), position[flat_ids]
    uniq, inverse = xp.unique(flat_ids, return_inverse=True)
    return uniq, inverse.reshape(-1)


def _digit_order(digit, counts, parent, n_par: int, xp):
    """``(order, spans)``: node indices sorted by (digit, parent), and ``(digit value, start,
    stop)`` of each run of equal digits in that order (host ints: one sync on CuPy).
    ``counts``: ``bincount(digit)``."""
    present = xp.flatnonzero(counts)
    key = digit * n_par + parent
    if xp is numpy and counts.shape[0] * n_par <= 1 << 16:
        key = key.astype(numpy.uint16)  # NumPy's stable sort of 16-bit keys is a radix sort
    order = xp.argsort(key, kind="stable")
    stops = xp.cumsum(counts[present])
    spans, start = [], 0
    for value, stop in zip(present.tolist(), stops.tolist()):
        spans.append((int(value), start, int(stop)))
        start = int(stop)
    return order, spans


def _raw_levels(uniq, row_shape, col_shape, ranks, strategy, counts, mode, xp, present=None) -> list:
    """Levels with nodes in prefix order (sorted by the code of their first k digits)."""
    n = len(row_shape)
    strides = _strides(row_shape)
    levels = []
    if strategy == "gather":
        for k in range(n):
            digit = (uniq // strides[k]) % row_shape[k]
            levels.append(_Level("select", digit, None, int(uniq.shape[0])))
        return levels
    if strategy == "full":
        for k in range(n):
            count = math.prod(row_shape[: k + 1])
            code = xp.arange(count)
            levels.append(_Level("expand" if k else "select", code % row_shape[k],
                                 code // row_shape[k] if k else None, count))
        return levels
    position = None
    d_before = col_shape[0]
    for k in range(n):
        code = uniq // strides[k]
        is_new = xp.ones(code.shape, dtype=bool)
        is_new[1:] = code[1:] != code[:-1]
        first = xp.flatnonzero(is_new)
        digit = code[first] % row_shape[k]
        if k == 0:
            levels.append(_Level("select", digit, None, int(first.shape[0])))
        else:
            expand, select = _level_costs(counts[k - 1], counts[k], d_before, ranks[k], row_shape[k],
                                          col_shape[k], ranks[k + 1], None if present is None else present[k])
            chosen = mode or ("expand" if expand < select else "select")
            levels.append(_Level(chosen, digit, position[first], int(first.shape[0])))
            d_before *= col_shape[k]
        position = xp.cumsum(is_new) - 1
    return levels


def plan_lookup(flat_ids, row_shape, col_shape, ranks, strategy: str = "auto", mode=None) -> LookupPlan:
    """Deduplicate ``flat_ids`` (B,) and lay out the levels of the chosen strategy.

    ``mode`` ("select" or "expand") forces that mode at every level of the
    "prefix" strategy instead of the cost model's choice (used by the tests).
    Levels k >= 1 that run per digit value (every expand level, and select levels with
    at least ``GROUP_MIN_NODES_PER_DIGIT`` nodes per digit value) get their nodes sorted
    by digit here, so each digit's nodes are contiguous; parents, the final rows and
    the batch's ``inverse`` are relabelled to match.
    """
    _check_mode(mode)
    xp = get_xp(flat_ids)
    if flat_ids.ndim != 1 or flat_ids.dtype.kind not in "iu":
        raise ValueError(f"plan_lookup: flat_ids must be a 1-D integer array, got {flat_ids.dtype} of shape "
                         f"{tuple(flat_ids.shape)}")
    if flat_ids.dtype != xp.intp:
        flat_ids = flat_ids.astype(xp.intp)   # narrow dtypes would wrap in the digit arithmetic
    n_rows = math.prod(row_shape)
    if flat_ids.shape[0] and xp is numpy and not (0 <= int(flat_ids.min()) and int(flat_ids.max()) < n_rows):
        raise IndexError(f"plan_lookup: ids must lie in [0, {n_rows}), got values from {int(flat_ids.min())} to "
                         f"{int(flat_ids.max())}")
    uniq, inverse = _unique_inverse(flat_ids, math.prod(row_shape), xp)
    counts = _node_counts(uniq, row_shape, "prefix", xp) if strategy in ("auto", "prefix") else None
    present = _digits_present(uniq, row_shape, xp) if strategy in ("auto", "prefix") else None
    if strategy == "auto":
        costs = estimate_costs(uniq, row_shape, col_shape, ranks, xp, prefix_counts=counts, present=present)
        strategy = min(costs, key=costs.get)
    elif strategy not in STRATEGIES:
        raise ValueError(f"strategy must be 'auto' or one of {STRATEGIES}, got {strategy!r}")
    levels = _raw_levels(uniq, row_shape, col_shape, ranks, strategy, counts, mode, xp, present)
    relabel = None  # previous level: old node index -> new position
    for k, level in enumerate(levels):
        if relabel is not None:
            level.parent = relabel if level.parent is None else relabel[level.parent]
        relabel = None
        if k == 0:
            continue
        counts = xp.bincount(level.digit)
        per_digit = int(xp.count_nonzero(counts)) * GROUP_MIN_NODES_PER_DIGIT <= level.n_nodes
        if level.mode == "select" and not per_digit:
            continue  # few nodes per digit value: one batched matmul, nodes stay in prefix order
        n_par = levels[k - 1].n_nodes
        parent = xp.arange(level.n_nodes) if level.parent is None else level.parent
        order, level.spans = _digit_order(level.digit, counts, parent, n_par, xp)
        level.digit = level.digit[order]
        level.parent = parent[order]
        relabel = xp.empty(level.n_nodes, dtype=order.dtype)
        relabel[order] = xp.arange(level.n_nodes, dtype=order.dtype)
        if level.mode == "expand":
            full_block = level.n_nodes == row_shape[k] * n_par
            level.pick = None if full_block else level.digit * n_par + level.parent
    if strategy == "full":
        row_of_uniq = uniq if relabel is None else relabel[uniq]
        # (a copy: the backward reads it later, and flat_ids may be the caller's buffer)
        inverse = flat_ids.copy() if relabel is None else relabel[flat_ids]
    else:
        row_of_uniq = xp.arange(uniq.shape[0]) if relabel is None else relabel
        inverse = inverse if relabel is None else relabel[inverse]
    return LookupPlan(strategy, levels, uniq, inverse, row_of_uniq)


#: plans kept for batches looked up again (a probe batch, a validation set of at most 8 batches)
PLAN_CACHE_SIZE = 8
#: batches with more ids than this are planned every time: their plans are big (several arrays
#: of the batch's length each) and planning them is small next to their lookup
PLAN_CACHE_MAX_IDS = 1 << 20
_plans = collections.OrderedDict()      # key -> (ids copy, plan), least recently used first
_plans_lock = threading.Lock()
_plan_stats = {"hits": 0, "misses": 0}


def plan_cache_info() -> CacheInfo:
    """Hits and misses of the lookup-plan cache, and the number of plans it holds."""
    with _plans_lock:
        return CacheInfo(_plan_stats["hits"], _plan_stats["misses"], len(_plans))


def plan_cache_clear() -> None:
    """Forget every cached lookup plan and reset the counters."""
    with _plans_lock:
        _plans.clear()
        _plan_stats.update(hits=0, misses=0)


def cached_plan(flat_ids, row_shape, col_shape, ranks, strategy: str = "auto", mode=None) -> LookupPlan:
    """``plan_lookup`` through a cache of the last ``PLAN_CACHE_SIZE`` plans.

    A plan depends on the ids' values, so the key is the TT layout, the ids' dtype and length
    and their first and last four values; the cached plan is used only when its stored copy of
    the ids equals ``flat_ids`` (one comparison, ~10 us for 12,800 ids, against ~0.5 ms to plan),
    else it is replaced. A new batch (every step of training) costs the key and at most that
    comparison. Plans are never modified after they are made, so one plan can serve several
    lookups at once.
    """
    n = int(flat_ids.shape[0])
    if PLAN_CACHE_SIZE <= 0 or n == 0 or n > PLAN_CACHE_MAX_IDS:
        return plan_lookup(flat_ids, row_shape, col_shape, ranks, strategy, mode)
    xp = get_xp(flat_ids)
    ends = flat_ids[:4] if n <= 8 else xp.concatenate([flat_ids[:4], flat_ids[-4:]])
    # (the module's plan settings are part of the key: a changed threshold makes new plans)
    key = (tuple(row_shape), tuple(col_shape), tuple(int(r) for r in ranks), strategy, mode, xp.__name__,
           flat_ids.dtype.str, n, tuple(ends.tolist()),
           GROUP_MIN_NODES_PER_DIGIT, _BATCHED_FLOP_COST, _FLOAT_MOVE_COST)
    with _plans_lock:
        entry = _plans.get(key)
    if entry is not None and bool(xp.array_equal(entry[0], flat_ids)):
        with _plans_lock:
            _plan_stats["hits"] += 1
            if key in _plans:
                _plans.move_to_end(key)
        return entry[1]
    plan = plan_lookup(flat_ids, row_shape, col_shape, ranks, strategy, mode)
    with _plans_lock:
        _plan_stats["misses"] += 1
        _plans[key] = (flat_ids.copy(), plan)   # a copy: the caller may reuse its id buffer
        _plans.move_to_end(key)
        while len(_plans) > PLAN_CACHE_SIZE:
            _plans.popitem(last=False)
    return plan


def _per_digit(core):
    """Core ``(r0, v, d, r1)`` as its ``v`` slices ``(v, r0, d r1)`` (a small contiguous copy)."""
    r0, v, d, r1 = core.shape
    return core.transpose(1, 0, 2, 3).reshape(v, r0, d * r1)


def _parallel_min(xp) -> float:
    """Least work (multiply-adds) worth splitting over threads: NumPy only (CuPy never)."""
    return PARALLEL_MIN_MADDS if xp is numpy else math.inf


def _take_rows(src, index, out, xp) -> None:
    """``out[:] = src[index]`` (rows) without a temporary: NumPy's ``take(out=)`` buffers
    its output unless ``mode`` is "clip" (the indices are valid here); CuPy assigns.
    Not ``backend.take_rows``: this runs ~70 times per lookup inside per-digit jobs, where
    that function's index checks and thread-count lookup cost more than the copy (the
    IMDB forward went 2.5 -> 4.7 ms when tried)."""
    if xp is numpy:
        numpy.take(src, index, axis=0, out=out, mode="clip")
    else:
        out[...] = xp.take(src, index, axis=0)


def _parents_gradient(level: _Level, flat_child, slices, n_par: int, d_before: int, xp):
    """Gradient ``(n_par, d_before * r0)`` of a per-digit level's parents.

    ``flat_child``: the children's gradient, digit-major ``(n_nodes * d_before, d r1)``.
    Per digit value i, ONE GEMM ``grad_i @ G_k[:, i]^T`` gives its children's parent
    gradients, added to the parents by plain indexed addition: within one digit the
    parents are distinct (siblings differ in digit; "gather" nodes are a permutation).
    (Serial on purpose: split over two threads, these ~40 small gathers and adds per
    level spend more time handing the GIL back and forth than they save; measured
    2.8 -> 4.0 ms on the IMDB batch.)
    """
    r0 = slices.shape[1]
    d_prev = xp.zeros((n_par, d_before * r0), dtype=flat_child.dtype)
    largest = max(b - a for _, a, b in level.spans)
    buffer = xp.empty((largest * d_before, r0), dtype=flat_child.dtype)   # reused: stays in cache
    every_parent = level.mode == "expand" and level.pick is None   # each digit: all parents, in order
    for i, a, b in level.spans:
        term = xp.matmul(flat_child[a * d_before:b * d_before], slices[i].T,
                         out=buffer[:(b - a) * d_before]).reshape(b - a, d_before * r0)
        if every_parent:
            d_prev += term
        else:
            d_prev[level.parent[a:b]] += term
    return d_prev


def _per_digit_forward(level: _Level, partial, slices, xp) -> tuple:
    """A per-digit select level: ``(parents, children)``, the gathered parent partial
    products ``(nodes, d_before, r0)`` and the children ``(nodes * d_before, d r1)``,
    digit by digit: each digit gathers its parents and runs ONE GEMM.

    On NumPy the digits are jobs dealt to the cores when the level's arrays are at most
    twice the last-level cache (measured, 2 cores with 8 MB L3: the IMDB batch's 7 MB
    level 3.5 -> 2.5 ms, a 12 MB level 5.1 -> 4.1 ms; a 31 MB level streams through
    memory and was ~8% slower on two threads than on one).
    """
    n_par, d_before, r0 = partial.shape
    children = xp.empty((level.n_nodes * d_before, slices.shape[2]), dtype=partial.dtype)
    if level.parent is None:     # "gather": the nodes are the previous level's, in order
        parents = partial
    else:
        parents = xp.empty((level.n_nodes, d_before, r0), dtype=partial.dtype)
    flat_parents = parents.reshape(-1, r0)

    def digit_job(i, a, b):
        if level.parent is not None:
            _take_rows(partial, level.parent[a:b], parents[a:b], xp)
        xp.matmul(flat_parents[a * d_before:b * d_before], slices[i], out=children[a * d_before:b * d_before])

    madds = d_before * r0 * slices.shape[2]   # per node
    in_cache = (parents.nbytes + children.nbytes) <= 2 * _last_level_cache_bytes()
    run_jobs([((b - a) * madds, lambda i=i, a=a, b=b: digit_job(i, a, b)) for i, a, b in level.spans],
             min_weight=_parallel_min(xp) if in_cache else math.inf, gemm=True)
    return parents, children


@functools.lru_cache(maxsize=None)
def _last_level_cache_bytes() -> int:
    """Size of the CPU's last-level cache (Linux ``sysconf``), or 8 MiB when unknown."""
    for name in ("SC_LEVEL3_CACHE_SIZE", "SC_LEVEL2_CACHE_SIZE"):
        try:
            size = int(os.sysconf(name))
        except (ValueError, OSError, AttributeError):
            size = 0
        if size > 0:
            return size
    return 8 << 20


def _forward(plan: LookupPlan, cores: list, xp) -> tuple:
    """Partial products per level; returns (rows, (partials, gathered parents of select
    levels, the cores' per-digit slices)) — the second item is what the backward needs."""
    first = cores[0][0]                                 # (v_1, d_1, r_1)
    level0 = plan.levels[0]
    if plan.strategy == "full":   # a copy when it is already the rows (padding zeroes them)
        partial = first.copy() if len(cores) == 1 else first
    else:
        partial = first[level0.digit]
    saved = [partial]
    gathered = {}
    per_digit = {}
    for k in range(1, len(cores)):
        level = plan.levels[k]
        r0, v, d, r1 = cores[k].shape
        slices = per_digit[k] = _per_digit(cores[k])    # (v, r0, d r1)
        n_par, d_before = partial.shape[0], partial.shape[1]
        if level.mode == "expand":
            # all v children of every parent, digit-major: block[i * n_par + p] = child (p, i)
            block = xp.matmul(partial.reshape(n_par * d_before, r0), slices)   # (v, n_par d_before, d r1)
            block = block.reshape(v * n_par, d_before * d * r1)
            partial = block if level.pick is None else xp.take(block, level.pick, axis=0)
        else:
            if level.spans is None:                     # one small matmul per node
                parents = partial if level.parent is None else xp.take(partial, level.parent, axis=0)
                partial = xp.matmul(parents, slices[level.digit])
            else:                                       # nodes sorted by digit: one GEMM per digit value
                parents, partial = _per_digit_forward(level, partial, slices, xp)
            gathered[k] = parents                                              # (nodes, d_before, r0)
        partial = partial.reshape(level.n_nodes, d_before * d, r1)
        saved.append(partial)
    rows = partial.reshape(partial.shape[0], -1)
    return rows, (saved, gathered, per_digit)


def _backward(plan: LookupPlan, cores: list, saved: tuple, d_rows, xp) -> list:
    """Core gradients from the gradient ``d_rows`` of the rows ``_forward`` returned."""
    saved, gathered, per_digit = saved
    n = len(cores)
    d_partial = d_rows
    grads = [None] * n
    for k in range(n - 1, 0, -1):
        level = plan.levels[k]
        r0, v, d, r1 = cores[k].shape
        slices = per_digit[k]                           # (v, r0, d r1)
        prev = saved[k - 1]
        n_par, d_before = prev.shape[0], prev.shape[1]
        if level.mode == "expand":
            d_flat = d_partial.reshape(level.n_nodes, d_before * d * r1)
            if level.pick is None:
                d_block = d_flat
            else:                                        # children are distinct: an assignment
                d_block = xp.zeros((v * n_par, d_before * d * r1), dtype=d_flat.dtype)
                d_block[level.pick] = d_flat
            d_block = d_block.reshape(v, n_par * d_before, d * r1)
            prev_flat = prev.reshape(n_par * d_before, r0)
            d_core = xp.matmul(prev_flat.T, d_block)                       # (v, r0, d r1)
            d_partial = _parents_gradient(level, d_flat.reshape(-1, d * r1), slices, n_par, d_before, xp)
        else:
            parents = gathered[k]                                          # (nodes, d_before, r0)
            d_child = d_partial.reshape(level.n_nodes, d_before, d * r1)
            if level.spans is None:
                d_slices = xp.matmul(parents.transpose(0, 2, 1), d_child)  # (nodes, r0, d r1)
                d_core = scatter_add(level.digit, d_slices, v)             # (v, r0, d r1)
                d_parents = xp.matmul(d_child, slices[level.digit].transpose(0, 2, 1))
                d_partial = (d_parents if level.parent is None
                             else scatter_add(level.parent, d_parents, n_par))
            else:
                # one digit's GEMM sums that digit's core gradient
                flat_parents = parents.reshape(-1, r0)
                flat_child = d_child.reshape(-1, d * r1)
                d_core = xp.zeros((v, r0, d * r1), dtype=d_child.dtype)
                for i, a, b in level.spans:
                    rows_i = slice(a * d_before, b * d_before)
                    xp.matmul(flat_parents[rows_i].T, flat_child[rows_i], out=d_core[i])
                d_partial = _parents_gradient(level, flat_child, slices, n_par, d_before, xp)
        grads[k] = xp.ascontiguousarray(d_core.reshape(v, r0, d, r1).transpose(1, 0, 2, 3))
    first = cores[0]
    v1, d1, r1 = first.shape[1:]
    d_first = d_partial.reshape(-1, d1, r1)
    if plan.strategy == "full":
        grads[0] = d_first.reshape(first.shape)
    else:
        grads[0] = scatter_add(plan.levels[0].digit, d_first, v1).reshape(first.shape)
    return grads


def tt_matrix_rows(cores, ids, row_shape, col_shape, strategy: str = "auto", padding_idx=None,
                   *, mode=None) -> Tensor:
    """Rows ``W[ids]`` of the TT-matrix with ``cores``, differentiable in every core.

    Args:
        cores: N Tensors, core k of shape ``(r_{k-1}, v_k, d_k, r_k)``.
        ids: integer array (or Tensor) of any shape S with values in [0, prod(row_shape)).
        row_shape, col_shape: ``(v_1..v_N)`` and ``(d_1..d_N)``.
        strategy: "auto" (cost model), "gather", "prefix" or "full" (see module doc).
        padding_idx: an id whose row is returned as zeros and sends no gradient.
        mode: for testing, force "select" or "expand" at every level of "prefix".
    Returns:
        Tensor of shape ``S + (D,)`` with the cores' dtype.

    Cost: deduplication O(B log B); then, per level, the select or expand products
    described in the module docstring; the backward costs about twice the forward.
    """
    cores = [c if isinstance(c, Tensor) else Tensor(c) for c in cores]
    row_shape, col_shape = _check_core_shapes(cores, row_shape, col_shape)
    n_rows = math.prod(row_shape)
    padding_idx = _check_lookup_options(strategy, mode, padding_idx, n_rows, "tt_matrix_rows")
    xp = get_xp(*(c.data for c in cores))
    ids = check_ids(ids, n_rows, xp, "tt_matrix_rows")
    return _lookup(cores, ids, row_shape, col_shape, strategy, padding_idx, mode)


def _check_mode(mode) -> None:
    if not (mode is None or (isinstance(mode, str) and mode in ("select", "expand"))):
        raise ValueError(f"mode must be None, 'select' or 'expand', got {mode!r}")


def _check_lookup_options(strategy, mode, padding_idx, n_rows: int, where: str):
    """Check ``strategy``, ``mode`` and ``padding_idx`` (None or an int, NumPy integer or 0-d
    integer array in [0, n_rows)); returns padding_idx as an int or None."""
    if not isinstance(strategy, str) or (strategy != "auto" and strategy not in STRATEGIES):
        raise ValueError(f"strategy must be 'auto' or one of {STRATEGIES}, got {strategy!r}")
    _check_mode(mode)
    if padding_idx is None:
        return None
    pad = as_int(padding_idx)
    if pad is None or not 0 <= pad < n_rows:
        raise ValueError(f"{where}: padding_idx must be None or an int in [0, {n_rows}), got {padding_idx!r}")
    return pad


def _check_core_shapes(cores, row_shape, col_shape) -> tuple:
    """``(row_shape, col_shape)`` as int tuples after checking them against the cores'
    ``(r_{k-1}, v_k, d_k, r_k)`` shapes; ValueError naming the mismatch otherwise."""
    try:
        row_shape, col_shape = tuple(row_shape), tuple(col_shape)
    except TypeError:
        raise TypeError(f"tt_matrix_rows: row_shape and col_shape must be tuples of ints, got {row_shape!r} "
                        f"and {col_shape!r}") from None
    # ranks chain with boundary ranks 1, one floating dtype, one backend (an r_0 > 1 read only
    # the first slice; an r_N > 1 widened every row)
    try:
        check_cores(cores, 4)
    except (ValueError, TypeError) as exc:
        raise type(exc)(f"tt_matrix_rows: {exc}") from None
    want_rows = tuple(int(c.shape[1]) for c in cores)
    want_cols = tuple(int(c.shape[2]) for c in cores)
    if row_shape != want_rows or col_shape != want_cols:
        raise ValueError(f"tt_matrix_rows: row_shape {row_shape} and col_shape {col_shape} must match the cores' "
                         f"mode sizes {want_rows} and {want_cols}")
    return want_rows, want_cols


def rows_of_checked_ids(cores, ids, row_shape, col_shape, strategy: str = "auto", padding_idx=None,
                        *, mode=None) -> Tensor:
    """``tt_matrix_rows`` without validating ``ids`` (a backend integer array already checked
    with ``ops.check_ids``): callers that validated against a tighter bound (the real
    vocabulary of ``TTEmbedding``) skip a second pass over the ids. Every other argument is
    checked as ``tt_matrix_rows`` checks it."""
    cores = [c if isinstance(c, Tensor) else Tensor(c) for c in cores]
    row_shape, col_shape = _check_core_shapes(cores, row_shape, col_shape)
    padding_idx = _check_lookup_options(strategy, mode, padding_idx, math.prod(row_shape), "rows_of_checked_ids")
    return _lookup(cores, ids, row_shape, col_shape, strategy, padding_idx, mode)


def _lookup(cores, ids, row_shape, col_shape, strategy, padding_idx, mode) -> Tensor:
    """The lookup itself, on arguments already checked (``tt_matrix_rows``/``rows_of_checked_ids``)."""
    arrays = [c.data for c in cores]
    xp = get_xp(*arrays)
    d_total = math.prod(col_shape)
    out_shape = tuple(ids.shape) + (d_total,)
    dtype = arrays[0].dtype
    if ids.size == 0:
        return record("tt_rows", xp.zeros(out_shape, dtype=dtype), tuple(cores),
                      tuple((lambda g, a=a: xp.zeros_like(a)) for a in arrays))
    ranks = [1] + [a.shape[3] for a in arrays]
    plan = cached_plan(ids.reshape(-1), tuple(row_shape), tuple(col_shape), ranks, strategy, mode)
    rows, saved = _forward(plan, arrays, xp)
    pad_pos = None if padding_idx is None else plan.row_of(padding_idx)
    if pad_pos is not None:
        rows[pad_pos] = 0
    # two recorded ops: the distinct rows from the cores, then their spread over the batch.
    # A consumer that can work on the distinct rows (the LSTM's input projection) reads
    # them through ``out._gathered`` and sends its gradient to ``distinct`` directly.

    def core_grads(d_rows, wanted):
        # the padding row's gradient is already zero: both consumers of ``distinct`` (the
        # spread below and the LSTM's gathered input) skip it
        return _backward(plan, arrays, saved, d_rows, xp)   # every core's gradient in one pass

    distinct = record("tt_rows", rows, tuple(cores), core_grads)
    inverse = plan.inverse.reshape(ids.shape)

    def spread_grad(g):
        # g is (S, D), maybe a broadcast view (a mean over tokens): read in place
        return scatter_add(inverse, g, rows.shape[0], skip=pad_pos)

    out = record("tt_rows_spread", take_rows(rows, inverse), (distinct,), (spread_grad,))
    out._gathered = (distinct, inverse, pad_pos)     # out.data == distinct.data[inverse]
    return out
