"""LSTM: a fused sequence op with hand-written backpropagation through time, and a
reference built from primitive ops (for tests).

Parameter layout (per layer and direction; gate order i, f, g, o like PyTorch)::

    W_ih  (in, 4H)   columns [i | f | g | o]      == torch weight_ih_l{k}.T
    W_hh  (H, 4H)    columns [i | f | g | o]      == torch weight_hh_l{k}.T
    b     (4H,)                                   == torch bias_ih_l{k} + bias_hh_l{k}

    z_t = x_t @ W_ih + h_{t-1} @ W_hh + b
    i, f, o = sigmoid(z[i]), sigmoid(z[f]), sigmoid(z[o]);  g = tanh(z[g])
    c_t = f * c_{t-1} + i * g;   h_t = o * tanh(c_t)

Padding (``lengths``): for ``t >= lengths[b]`` the state is carried unchanged and the
output is zero; the reverse direction starts at each sequence's last real token. So
appending padding never changes the outputs at real positions, the final states or
the gradients.

The fused op (``lstm_layer``) records ONE node per layer and direction with VJPs for
``x``, ``W_ih``, ``W_hh``, ``b``, ``h0`` and ``c0``:

- forward: one GEMM ``(B*T, in) @ (in, 4H)`` for the input projection, then one
  ``(B, H) @ (H, 4H)`` GEMM per step. On NumPy with two workers
  (``tinytt.parallel.num_threads()``), a worker computes the input projection chunk by
  chunk while the recurrence runs on the calling thread (``_ProjectionPipeline``; it also
  makes each chunk's time-major copy of x and adds the bias, so neither is on the
  recurrence's path: forward ~4 ms faster, four interleaved process pairs); with
  more, the batch rows are split into blocks that run their recurrences in parallel
  threads (``_row_blocks``; rows never interact). Either way each GEMM then runs on one
  BLAS thread (:mod:`tinytt.blas_threads`). Forward at 64 x 200 x 256 -> 128 on 2 cores:
  139 ms serial, 118 ms in row blocks, 0.90x that with the pipeline. Gate
  nonlinearities in preallocated arrays
  (the i, f, o weight columns are pre-scaled by -1, so ``1 / (1 + exp(z'))`` is
  sigmoid(z) with no negation pass, and an overflow of ``exp`` to inf gives the exact
  limit 0; g is ``tanh(z)`` itself: ``2 sigmoid(2z) - 1``, cheaper in NumPy, loses the
  relative accuracy of small g to cancellation, 1.7e-4 at z = 1e-4 in float32).
  The backward's gate derivatives are the factored ``a (1 - a)`` and ``(1 - g)(1 + g)``,
  accurate also for a saturated gate (``1/4 - (a - 1/2)^2`` was 28 % off at
  sigmoid(-17) in float32).
- backward: one GEMM per step for ``dh_{t-1} = dz_t @ W_hh^T``; the per-step ``dz_t``
  are kept, and ``dW_ih``, ``dW_hh``, ``dx`` are each ONE large GEMM at the end. On
  NumPy with several cores those products are instead computed per chunk of steps by a
  worker thread while the recurrence still runs (``_WeightGradPipeline``; partial sums
  added in chunk order, so the result does not depend on timing): backward 190 -> 170 ms
  at 64 x 200 x 256 -> 128 on 2 cores. ``dx`` is finished first; the weight gradients go
  back to the engine as ``tensor.Deferred`` and the worker keeps summing them while the
  engine runs the VJPs below the LSTM (the embedding's backward).
- input from an embedding lookup (NumPy): when x is the output of ``Embedding`` or
  ``TTEmbedding`` (``Tensor._gathered``: x = source[index]) and the batch has few distinct
  ids (at most ``GATHERED_MAX_FRACTION`` per position, as in real text), the layer works on
  the distinct rows (``_GatheredInput``): the projection is one GEMM over them, gathered to
  the positions; with the projection that cheap, two cores run the recurrence in row blocks
  instead of the projection pipeline (IMDB batch forward 116 -> 92 ms, interleaved A/B);
  the backward sums dz per distinct row and gets ``dW_ih``
  and the source rows' gradient from two GEMMs over those rows, so neither ``dx`` nor the
  embedding's own segment sum is formed, and the node records the source ("R") in place
  of x (then the weight pipeline is finished before those
  two GEMMs, so they get both BLAS threads). On a 64 x 200 IMDB batch (2,351 distinct ids)
  the LSTM training steps take 0.72-0.77x the time.
- denormals: when the loss reads only the final state, ``dh``/``dc`` decay through time
  into the subnormal range, which makes x86 arithmetic many times slower. Every 8 steps
  of the backward, entries with ``|v| < tiny`` (1e-30 in float32, 1e-300 in float64)
  are set to zero with one multiply by a mask. This changes each gradient entry by less
  than ``tiny`` in absolute terms (a few ``tiny`` per entry after the products). The
  thresholds sit ~8 orders of magnitude above the smallest normal number, as headroom for
  8 steps of decay, so a loss whose whole gradient is that small (e.g. one scaled by
  1e-31 in float32) loses its gradient through time: scale such a loss up first.

The op takes and returns batch-major ``(B, T, ...)`` arrays but works time-major
inside: ``x`` is copied once to ``(T, B, in)`` (``_TimeMajorInput``, chunk by chunk),
so the input GEMM writes the gate
pre-activations as ``(T, B, 4H)`` and every per-step array (gates, states, ``dz``) is
one contiguous block; batch-major per-step slices span B pages and made the step
loops ~15 % slower. ``dx`` comes back as a ``(B, T, in)`` view of the time-major GEMM
result (no copy; the embedding's segment sum reads it in place).
"""

from __future__ import annotations

import math
import numbers
import threading

import numpy

from .. import blas_threads, ops
from ..backend import get_xp, is_cupy_array, scatter_add, take_rows, to_numpy
from ..parallel import num_threads, run_blocks, split_range, submit
from ..tensor import Deferred, Tensor, is_grad_enabled, record
from . import init as _init
from .module import Module, Parameter

__all__ = ["LSTM", "lstm_layer", "reference_lstm_layer", "reference_lstm", "check_lengths",
           "FLUSH_EVERY"]

#: the backward zeroes tiny values of dh and dc every this many steps
FLUSH_EVERY = 8
_TINY = {numpy.dtype("float32"): 1e-30, numpy.dtype("float64"): 1e-300}


def check_lengths(lengths, batch: int, time: int, xp):
    """Validate ``lengths``: integers, shape (batch,), 1 <= len <= time. Returns a host int64 array."""
    if isinstance(lengths, Tensor):
        lengths = lengths.data
    lengths_np = to_numpy(lengths) if (is_cupy_array(lengths) or isinstance(lengths, numpy.ndarray)) \
        else numpy.asarray(lengths)
    if lengths_np.dtype.kind not in "iu":
        raise TypeError(f"LSTM: lengths must be integers, got dtype {lengths_np.dtype}")
    if lengths_np.shape != (batch,):
        raise ValueError(f"LSTM: lengths must have shape ({batch},), got {lengths_np.shape}")
    if batch and (lengths_np.min() < 1 or lengths_np.max() > time):
        raise ValueError(f"LSTM: lengths must lie in [1, {time}], got values in "
                         f"[{int(lengths_np.min())}, {int(lengths_np.max())}]")
    return lengths_np.astype(numpy.int64)


def _gate_constants(h: int, dtype, xp):
    """Column constants over the 4H gate columns [i | f | g | o].

    colscale: the weights are pre-multiplied by it, -1 for i, f, o (so that
    ``1 / (1 + exp(z'))`` gives sigmoid(z)) and 1 for g (``tanh(z)``).
    offset: the backward's derivative ``(1 - a)(a + offset)`` is a(1 - a) for the sigmoid
    gates (offset 0) and (1 - g)(1 + g) = 1 - g^2 for g (offset 1). Factored, it keeps its
    relative accuracy when a gate saturates: ``1 - a`` is exact for a >= 1/2, and a + 0
    and 1 + g (exact for g <= -1/2) are accurate where the other factor is small.
    """
    colscale = numpy.full(4 * h, -1.0)
    colscale[2 * h:3 * h] = 1.0
    offset = numpy.zeros(4 * h)
    offset[2 * h:3 * h] = 1.0
    return tuple(xp.asarray(a, dtype=dtype) for a in (colscale, offset))


#: a block of batch rows gets its own thread only with at least this many (rows x H)
#: state entries: below it the per-step Python overhead of two threads outweighs the gain
#: (measured on 2 cores: 4,096 per block ~0.75x the serial loop, 2,048 per block ~1.0x)
MIN_BLOCK_ENTRIES = 4096
#: the pipelines hand a worker chunks of about this many rows (steps x batch): input
#: projections in the forward (``_ProjectionPipeline``), products in the backward
#: (``_WeightGradPipeline``)
PIPELINE_CHUNK_ROWS = 512
#: ... when the batch has at least this many (rows x H) state entries
PIPELINE_MIN_ENTRIES = 4096


def _pipeline_chunk(T: int, B: int, H: int, xp) -> int:
    """Steps per chunk of the forward's projection pipeline and the backward's
    weight-gradient pipeline, or 0 for none: CuPy, one worker, too little work, or a BLAS
    that cannot share the cores (:func:`tinytt.blas_threads.cooperative`: its thread count
    cannot be set, or its helper threads busy-wait long after each call because NumPy was
    imported before tinytt without ``OPENBLAS_THREAD_TIMEOUT``). The forward uses it only on
    exactly two workers and not for an input read through an embedding's distinct rows
    (``_forward_kernel`` runs row blocks then)."""
    if xp is not numpy or num_threads() < 2 or B * H < PIPELINE_MIN_ENTRIES or T < 2:
        return 0
    if not blas_threads.cooperative():
        return 0
    return max(1, min(-(-PIPELINE_CHUNK_ROWS // B), -(-T // 4)))


def _row_blocks(B: int, H: int, xp) -> list:
    """Contiguous blocks of batch rows whose recurrences run side by side (NumPy only).

    Each block runs its whole recurrence (GEMMs included) in its own thread, with NumPy's
    BLAS on one thread (:mod:`tinytt.blas_threads`); rows never interact, so the split
    changes nothing but float rounding in the per-step GEMMs.
    """
    if xp is not numpy:
        return [(0, B)]
    min_rows = max(2, -(-MIN_BLOCK_ENTRIES // H))
    blocks = split_range(B, num_threads(), min_rows)
    if len(blocks) > 1 and not blas_threads.cooperative():
        return [(0, B)]
    return blocks


def _run_row_blocks(fn, blocks) -> None:
    """fn(b0, b1) for every block: inline for one block, else in threads with 1-thread BLAS."""
    if len(blocks) == 1:
        fn(*blocks[0])
        return
    with blas_threads.single_threaded_blas():
        run_blocks(fn, blocks)


def _time_spans(lengths_np, b0: int, b1: int, T: int):
    """(t_eff, t_full): steps to run (the longest row of the WHOLE batch, so that every
    block fills every step the backward reads), and steps where rows b0:b1 are all real."""
    if lengths_np is None:
        return T, T
    return int(lengths_np.max()), int(lengths_np[b0:b1].min())


def _forward_kernel(x_tm, W_ih, W_hh, b, h0, c0, lengths_np, xp):
    """Run the recurrence over x in processing order: a ``_TimeMajorInput`` (filled chunk
    by chunk as the projection needs it), a time-major (T, B, in) array, or a
    ``_GatheredInput`` (x given as rows of a table). Returns (Y, saved); ``saved["x_tm"]``
    is the complete (T, B, in) array, or the ``_GatheredInput``.

    Y (B, T+2, H): outputs at [:, :T], final h at [:, T], final c at [:, T+1]. The gate,
    state and gradient arrays of step t are contiguous (B, ...) blocks.
    """
    T, B = x_tm.shape[:2]
    H = W_hh.shape[0]
    G = 4 * H
    dtype = W_hh.dtype
    colscale, offset = _gate_constants(H, dtype, xp)
    mask = None
    if lengths_np is not None:
        mask = xp.asarray((numpy.arange(T)[None, :] < lengths_np[:, None]).astype(dtype))  # (B, T)
    Wih_s = W_ih * colscale
    b_s = b * colscale
    gathered = isinstance(x_tm, _GatheredInput)
    # acts = x W_ih' + b', written chunk by chunk (by the worker when there is a pipeline)
    project = x_tm.projector(Wih_s, b_s, xp) if gathered else _DenseProjector(x_tm, Wih_s, b_s, xp)
    Whh_s = W_hh * colscale
    Y = xp.empty((B, T + 2, H), dtype=dtype)
    Hs = xp.empty((T, B, H), dtype=dtype)  # Hs[t] = h_{t-1}, the state fed to step t
    Cs = xp.empty((T, B, H), dtype=dtype)  # Cs[t] = c_{t-1}
    Tc = xp.empty((T, B, H), dtype=dtype)  # tanh(c_new) at step t (before masking)
    Hs[0] = h0
    Cs[0] = c0
    # the pipeline pays when the projection is a big GEMM that the worker overlaps with the
    # recurrence; a gathered input's projection is a small GEMM over the distinct rows plus
    # a gather, so there the recurrence itself is split into row blocks on both cores
    # (IMDB batch, 2 cores: forward 116 -> 92 ms, interleaved A/B)
    chunk = _pipeline_chunk(T, B, H, xp) if num_threads() == 2 and not gathered else 0
    if chunk:
        # two cores: a worker computes the input projection chunk by chunk while the
        # recurrence runs on this thread (each on one BLAS thread)
        acts = xp.empty((T, B, G), dtype=dtype)
        first = min(chunk, T)
        project(0, first, acts[:first])
        pipeline = _ProjectionPipeline(project, T, acts, first, chunk)
        try:
            _forward_rows(acts, Hs, Cs, Tc, Y, mask, _time_spans(lengths_np, 0, B, T), Whh_s, xp,
                          ready=pipeline.wait_until)
        finally:
            pipeline.close()
    else:
        # ONE GEMM for the input projection of every step; the buffer then holds the gate
        # activations [i, f, g, o] step by step.
        acts = xp.empty((T, B, G), dtype=dtype)
        project(0, T, acts)

        def rows(b0, b1):
            _forward_rows(acts[:, b0:b1], Hs[:, b0:b1], Cs[:, b0:b1], Tc[:, b0:b1], Y[b0:b1],
                          None if mask is None else mask[b0:b1], _time_spans(lengths_np, b0, b1, T),
                          Whh_s, xp)

        _run_row_blocks(rows, _row_blocks(B, H, xp))
    if isinstance(x_tm, _TimeMajorInput):
        x_tm = x_tm.complete()       # steps the recurrence never needed (all padding) too
    saved = dict(x_tm=x_tm, acts=acts, Hs=Hs, Cs=Cs, Tc=Tc, mask=mask, lengths_np=lengths_np,
                 offset=offset)
    return Y, saved


class _TimeMajorInput:
    """x (B, T, in) copied to a time-major (T, B, in) array in processing order, one range of
    steps at a time (``fill``), with padded positions zeroed (NaN or inf padding times the
    0 of the mask would still be NaN). The forward's projection worker copies each chunk
    just before projecting it, so the copy (3.4 ms at 64 x 200 x 256) is off the
    recurrence's path. ``perm_x``: the reverse direction's (rows, steps) index, or None."""

    def __init__(self, x_data, perm_x, pad, xp):
        B, T, n_in = x_data.shape
        self.shape = (T, B, n_in)
        self.array = xp.empty(self.shape, dtype=x_data.dtype)
        self.x_data, self.perm_x, self.pad, self.xp = x_data, perm_x, pad, xp
        self.filled = 0

    def fill(self, hi: int) -> None:
        """Copy steps [filled, hi) (called in step order, one thread at a time)."""
        lo = self.filled
        if hi <= lo:
            return
        if self.perm_x is None:
            self.array[lo:hi] = self.x_data[:, lo:hi].transpose(1, 0, 2)
        else:   # step k of row b reads x[b, perm[b, k]]
            rows, steps = self.perm_x
            self.array[lo:hi] = self.x_data[rows.T, steps.T[lo:hi]]
        if self.pad is not None:
            if self.xp is numpy:   # (a mask assignment: 0.8 ms against copyto's 2.2 here)
                self.array[lo:hi][self.pad[lo:hi]] = 0
            else:                  # (copyto: a boolean-mask assignment syncs on CuPy)
                self.xp.copyto(self.array[lo:hi], 0, where=self.pad[lo:hi, :, None])
        self.filled = hi

    def complete(self):
        """The whole (T, B, in) array."""
        self.fill(self.shape[0])
        return self.array


class _DenseProjector:
    """``project(lo, hi, out)``: out (hi - lo, B, 4H) = x_t @ W_ih' + b' for the steps
    [lo, hi) of x (a ``_TimeMajorInput``, filled up to hi first, or a (T, B, in) array):
    one GEMM and one broadcast add."""

    def __init__(self, x_tm, Wih_s, b_s, xp):
        self.x_tm, self.Wih_s, self.b_s, self.xp = x_tm, Wih_s, b_s, xp

    def __call__(self, lo: int, hi: int, out) -> None:
        x = self.x_tm
        if isinstance(x, _TimeMajorInput):
            x.fill(hi)
            x = x.array
        rows = (hi - lo) * x.shape[1]
        flat = out.reshape(rows, -1)
        if self.xp is numpy:
            numpy.matmul(x[lo:hi].reshape(rows, -1), self.Wih_s, out=flat)
        else:   # (CuPy: no ``out=`` needed, the path the GPU suite has always run)
            flat[...] = self.xp.matmul(x[lo:hi].reshape(rows, -1), self.Wih_s)
        flat += self.b_s


class _GatheredInput:
    """The input x = source[index] of an LSTM layer (an embedding lookup's output), seen
    through its U distinct source rows: the input projection ``x_t @ W_ih`` is computed
    once per distinct row and gathered to the positions; in the backward, with ``dp`` the
    sums of ``dz`` over each row's positions, ``dW_ih = rows^T dp`` and the source rows'
    gradient is ``dp W_ih^T``: the three GEMMs (the projection, ``x^T dZ``, ``dx = dZ W_ih^T``)
    run over U rows instead of all B*T positions, plus the 4H-wide segment sum ``dp``. Real
    text repeats words: 2,351 distinct ids among the 12,800 tokens of a 64 x 200 IMDB batch.

    labels (T, B): position -> distinct row (``source_rows[labels]`` is the index); padded
    positions get the extra label U, whose projection is zero (as the dense path zeroes
    padded inputs).
    """

    def __init__(self, source, index_tm, x_data, perm, pad_tm, skip):
        """index_tm (T, B): source rows in processing order; x_data (B, T, in) the looked-up
        vectors; perm (B, T) or None: processing step k of row b is x_data[b, perm[b, k]]."""
        T, B = index_tm.shape
        uniq, first, inverse = numpy.unique(index_tm.reshape(-1), return_index=True, return_inverse=True)
        self.shape = (T, B)
        self.source, self.skip = source, skip
        self.n_rows = int(uniq.shape[0])
        self.labels = inverse.reshape(T, B)
        self.source_rows = uniq                   # label -> row of source
        # the rows come from x itself (its first occurrence of each id), not from the source:
        # an optimizer may have updated the table in place since the lookup
        step, row = numpy.divmod(first, B)
        self.rows = x_data[row, step if perm is None else perm[row, step]]    # (U, in)
        # ... and x must still be source[index] at every position read: compare each
        # position's row with its id's through a fixed random projection (the same
        # products and sums of the same floats when x is untouched; an edit, even one that
        # keeps a row's plain sum, or a NaN anywhere fails it, and then the dense path
        # runs). A check, not a licence: the contract stays "do not edit x in place".
        probe = _probe_vector(x_data.shape[-1], x_data.dtype)
        x_keys = numpy.einsum("btd,d->bt", x_data, probe)                     # (B, T)
        x_keys = (x_keys.T if perm is None else x_keys[numpy.arange(B)[:, None], perm].T)
        agree = x_keys == numpy.einsum("ud,d->u", self.rows, probe)[self.labels]
        if pad_tm is not None:
            agree |= pad_tm
            self.labels[pad_tm] = self.n_rows
            # a row seen only in padding is never read; zero it so that NaN or inf there
            # cannot reach dW_ih = rows^T dp through 0 * nan
            seen = numpy.bincount(self.labels.reshape(-1), minlength=self.n_rows + 1)[:self.n_rows] > 0
            if not seen.all():
                self.rows[~seen] = 0
        self.matches_input = bool(agree.all())

    def projector(self, Wih_s, b_s, xp):
        """``project(lo, hi, out)`` like ``_DenseProjector``: the distinct rows' projections
        (one GEMM, made here) gathered to the positions of steps [lo, hi)."""
        G = Wih_s.shape[1]
        proj = xp.empty((self.n_rows + 1, G), dtype=Wih_s.dtype)
        xp.matmul(self.rows, Wih_s, out=proj[:self.n_rows])
        proj[:self.n_rows] += b_s
        proj[self.n_rows] = b_s                    # padding: a zero input

        def project(lo: int, hi: int, out) -> None:
            labels = self.labels[lo:hi].reshape(-1)
            if out.dtype == proj.dtype:
                take_rows(proj, labels, out=out.reshape(-1, G))
            else:   # W_ih wider than the state's dtype: cast on the way in, as the dense path does
                out.reshape(-1, G)[...] = take_rows(proj, labels)

        return project

    def gradients(self, dZ, W_ih, need: set, xp) -> dict:
        """The gradients of ``W_ih`` and of the source (name "R") that are in ``need``,
        from dZ (T, B, 4H)."""
        d_proj = scatter_add(self.labels, dZ, self.n_rows + 1)[:self.n_rows]   # label U: padding
        out = {}
        if "W_ih" in need:
            out["W_ih"] = xp.matmul(self.rows.T, d_proj)
        if "R" in need:
            d_rows = xp.matmul(d_proj, W_ih.T)                                 # (U, in)
            n_src = self.source.shape[0]
            if self.n_rows == n_src:
                # every source row occurs (always for a TT lookup's distinct rows): the sorted
                # distinct rows are 0..n_src-1, so d_rows is already in source order
                d_src = d_rows
            else:
                d_src = xp.zeros((n_src,) + d_rows.shape[1:], dtype=d_rows.dtype)
                d_src[self.source_rows] = d_rows
            if self.skip is not None:
                d_src[self.skip] = 0
            out["R"] = d_src
        return out


#: an LSTM layer reads an embedding lookup's output through its distinct rows
#: (``_GatheredInput``, NumPy only) when there are at most this fraction as many as
#: positions. Its backward work (a segment sum of dz, two GEMMs over the distinct rows)
#: starts only after the recurrence, while the dense path's three GEMMs over all positions
#: overlap it, so the gain shrinks as the fraction grows. Training steps with the path on /
#: off (``benchmarks/lstm_gathered_input.py --force``, 64 x 200 -> LSTM(256, 128), 2 cores):
#: 0.18 distinct per position (IMDB text) 0.72-0.77x, 0.23: 0.76-0.78x, 0.36: 0.84x,
#: 0.50: 0.93-0.98x, 0.81: 1.08-1.10x (session 8, with the row-block forward; session 7,
#: with the pipeline: 0.81-0.83x at 0.18, 0.93-0.94x at 0.50, 0.98-1.02x at 0.62)
GATHERED_MAX_FRACTION = 0.5


class _BlasWorker:
    """Base of the two pipelines: one worker thread running ``self._worker`` while NumPy's
    BLAS runs on one thread per Python thread; ``_join`` waits for the worker (re-raising
    its error) and always restores the BLAS thread count."""

    def _start(self) -> None:
        self._blas = blas_threads.single_threaded_blas()
        self._blas.__enter__()
        try:
            self.future = submit(self._worker)
        except BaseException:
            self._blas.__exit__(None, None, None)
            raise

    def _join(self) -> None:
        try:
            self.future.result()
        finally:
            self._blas.__exit__(None, None, None)


class _ProjectionPipeline(_BlasWorker):
    """A worker computes acts[t] = x_t @ W_ih' + b' chunk by chunk (``project``: with the
    chunk's time-major copy of x), in step order, ahead
    of the recurrence; ``wait_until(t)`` blocks until step t's projection is there and returns
    the first step not yet computed. BLAS runs on one thread per Python thread meanwhile."""

    def __init__(self, project, T: int, acts, start: int, chunk: int):
        self.project, self.T, self.acts, self.chunk = project, T, acts, chunk
        self.ready = start
        self.stop = False
        self.cond = threading.Condition()
        self._start()

    def _worker(self) -> None:
        lo = self.ready
        try:
            while lo < self.T and not self.stop:
                hi = min(lo + self.chunk, self.T)
                self.project(lo, hi, self.acts[lo:hi])
                with self.cond:
                    self.ready = hi
                    self.cond.notify()
                lo = hi
        finally:
            with self.cond:  # wake a waiting recurrence also when this fails
                self.cond.notify_all()

    def wait_until(self, t: int) -> int:
        with self.cond:
            while self.ready <= t:
                if self.future.done():
                    self.future.result()  # re-raise the worker's error
                    raise RuntimeError("LSTM: the input-projection worker stopped early")
                self.cond.wait(0.05)
            return self.ready

    def close(self) -> None:
        """Stop the worker (after its current chunk) and restore BLAS threads."""
        with self.cond:
            self.stop = True
        self._join()


def _forward_rows(acts, Hs, Cs, Tc, Y, mask, spans, Whh_s, xp, ready=None) -> None:
    """The forward recurrence for one block of n batch rows, in place.

    acts (T, n, 4H): input projections (bias included) in, gate activations out; Hs, Cs, Tc (T, n, H);
    Y (n, T+2, H); mask (n, T) or None; spans = (t_eff, t_full) of these rows.
    """
    T, B, G = acts.shape
    H = G // 4
    t_eff, t_full = spans
    dtype = acts.dtype
    z = xp.empty((B, G), dtype=dtype)
    tmp = xp.empty((B, H), dtype=dtype)
    cn = xp.empty((B, H), dtype=dtype)
    hn = xp.empty((B, H), dtype=dtype)
    h_last = Y[:, T]
    c_last = Y[:, T + 1]
    one = dtype.type(1)
    known = T if ready is None else 0  # steps below this have their input projection
    with numpy.errstate(over="ignore"):  # exp(large) = inf gives the exact limit 0
        for t in range(t_eff):
            if t >= known:
                known = ready(t)
            a = acts[t]
            xp.matmul(Hs[t], Whh_s, out=z)
            z += a
            # i, f and o: 1 / (1 + exp(-z)) (columns pre-scaled by -1), computed over all four
            # gates in one contiguous pass (cheaper than two column slices); then g = tanh(z)
            # over the g columns' result (z there is not scaled)
            xp.exp(z, out=a)
            a += one
            xp.reciprocal(a, out=a)
            xp.tanh(z[:, 2 * H:3 * H], out=a[:, 2 * H:3 * H])
            i, f, g, o = a[:, :H], a[:, H:2 * H], a[:, 2 * H:3 * H], a[:, 3 * H:]
            c_prev, h_prev = Cs[t], Hs[t]
            last = t == t_eff - 1
            c_next = c_last if last else Cs[t + 1]
            h_next = h_last if last else Hs[t + 1]
            y = Y[:, t]
            tc = Tc[t]
            if t < t_full:
                xp.multiply(f, c_prev, out=c_next)
                xp.multiply(i, g, out=tmp)
                c_next += tmp
                xp.tanh(c_next, out=tc)
                xp.multiply(o, tc, out=h_next)
                y[...] = h_next
            else:
                m = mask[:, t:t + 1]
                xp.multiply(f, c_prev, out=cn)
                xp.multiply(i, g, out=tmp)
                cn += tmp
                xp.tanh(cn, out=tc)
                xp.multiply(o, tc, out=hn)
                # state carried where masked: s = prev + m * (new - prev)
                xp.subtract(cn, c_prev, out=c_next)
                c_next *= m
                c_next += c_prev
                xp.subtract(hn, h_prev, out=h_next)
                h_next *= m
                h_next += h_prev
                xp.multiply(hn, m, out=y)
    if t_eff < T:
        Y[:, t_eff:T] = 0
        Hs[t_eff:] = 0  # paired with dz = 0 in the weight GEMMs


class _StepRangeGrads:
    """The backward's large products, over all steps or over ranges of steps:

        dW_hh = sum_t h_{t-1}^T dz_t,   dW_ih = sum_t x_t^T dz_t,   db = sum_t dz_t,
        dx_t = dz_t W_ih^T

    from dZ (T, B, 4H), Hs (T, B, H), x_tm (T, B, in) (None for a gathered input, whose
    W_ih and source gradients ``_GatheredInput.gradients`` computes). ``add_x(lo, hi)`` writes the rows of
    dx for steps [lo, hi); ``add_w(lo, hi)`` keeps that range's partial weight sums;
    ``weights(starts)`` adds the partials in the given order (fixed: the result does not
    depend on which thread computed which range).
    """

    def __init__(self, dZ, Hs, x_tm, W_ih, need, xp):
        self.dZ, self.Hs, self.x_tm, self.W_ih, self.need, self.xp = dZ, Hs, x_tm, W_ih, need, xp
        self.weight_names = [n for n in ("W_hh", "W_ih", "b") if n in need]
        self.parts = {}
        self.dx = None

    def _rows(self, lo, hi):
        T, B, G = self.dZ.shape
        rows = (hi - lo) * B
        return rows, self.dZ[lo:hi].reshape(rows, G)

    def _weight_products(self, lo, hi) -> dict:
        xp = self.xp
        rows, dz = self._rows(lo, hi)
        part = {}
        if "W_hh" in self.need:
            part["W_hh"] = xp.matmul(self.Hs[lo:hi].reshape(rows, -1).T, dz)
        if "W_ih" in self.need:
            part["W_ih"] = xp.matmul(self.x_tm[lo:hi].reshape(rows, -1).T, dz)
        if "b" in self.need:
            part["b"] = dz.sum(axis=0)
        return part

    def whole(self) -> dict:
        """All steps at once (one GEMM per product)."""
        T, B, _ = self.dZ.shape
        out = self._weight_products(0, T)
        if "x" in self.need:
            out["x"] = self.xp.matmul(self._rows(0, T)[1], self.W_ih.T).reshape(T, B, -1).transpose(1, 0, 2)
        return out

    def start(self) -> None:
        """Allocate dx (before any ``add_x``)."""
        T, B, _ = self.dZ.shape
        if "x" in self.need:
            self.dx = self.xp.empty((T, B, self.x_tm.shape[2]), dtype=self.dZ.dtype)

    def add_x(self, lo: int, hi: int) -> None:
        rows, dz = self._rows(lo, hi)
        self.xp.matmul(dz, self.W_ih.T, out=self.dx[lo:hi].reshape(rows, -1))

    def add_w(self, lo: int, hi: int) -> None:
        self.parts[lo] = self._weight_products(lo, hi)

    def weights(self, starts) -> dict:
        out = {}
        for lo in starts:
            for name, value in self.parts.get(lo, {}).items():  # no weight tasks: no parts
                if name in out:
                    out[name] += value
                else:
                    out[name] = value
        return out


class _ThreadPipelines(threading.local):
    """Per Python thread: backward pipelines whose weight sums may still be running (see
    ``_WeightGradPipeline``). Per thread, so one thread never waits on (or inherits the
    errors of) another thread's LSTM."""

    def __init__(self):
        self.items = []


_PIPELINES = _ThreadPipelines()


class _WeightGradPipeline(_BlasWorker):
    """Overlap the backward's big GEMMs with its recurrence (NumPy, >= 2 cores).

    The recurrence runs backwards in time on the calling thread and is a chain of small
    GEMMs and short elementwise calls that keeps one core busy. Its output dZ is final
    for steps >= t once step t is done, so dx and the weight gradients of those steps can
    be computed meanwhile: the steps are cut into fixed chunks, and a worker thread takes
    the tasks "dx of a chunk" and "weight sums of a chunk" as soon as the chunk is
    complete, dx tasks first. After the recurrence the calling thread helps with the dx
    tasks (``finish_x``) and hands dx back; the weight tasks may go on in the worker while
    the rest of the graph's backward runs on the calling thread (the weight gradients are
    then ``tensor.Deferred``), until ``finish_w`` takes the remaining tasks too, waits for the
    worker and sums the partials in chunk order (the result does not depend on timing).
    BLAS runs on one thread per Python thread until then
    (:func:`tinytt.blas_threads.single_threaded_blas`).
    """

    def __init__(self, grads: _StepRangeGrads, T: int, t_eff: int, chunk: int):
        # one pipeline with work in flight at a time: an earlier LSTM's deferred weight sums
        # (the other direction, the next layer) are finished first, so that its worker does
        # not compete with this recurrence for the cores (BiLSTM step 0.83 -> 0.85-0.94 s
        # when they overlapped)
        for earlier in list(_PIPELINES.items):
            earlier.finish_w()
        self.grads = grads
        self.chunks = [(max(0, hi - chunk), hi) for hi in range(T, 0, -chunk)]
        kinds = (["x"] if "x" in grads.need else []) + (["w"] if grads.weight_names else [])
        self.tasks = [(kind, k) for kind in kinds for k in range(len(self.chunks))]
        self.next_free = 0          # tasks before this index are all taken
        self.taken = [False] * len(self.tasks)
        self.x_left = len(self.chunks) if "x" in kinds else 0   # dx tasks not yet completed
        self.ready_low = t_eff      # steps >= ready_low are final (dZ beyond t_eff is zero)
        self.cond = threading.Condition()
        self.result = None
        self._finishing = threading.Lock()
        self.grads.start()
        self._start()
        _PIPELINES.items.append(self)

    def steps_done(self, t: int) -> None:
        """The recurrence has finished step t (and every later one)."""
        with self.cond:
            self.ready_low = t
            self.cond.notify()

    def _take(self, wait: bool, kinds=("x", "w")):
        """The first free task of ``kinds`` whose steps are final (dx tasks come first), or
        None when none is free (without ``wait``) or none is left at all."""
        with self.cond:
            while True:
                left = False
                for i in range(self.next_free, len(self.tasks)):
                    if self.taken[i]:
                        continue
                    kind, k = self.tasks[i]
                    if kind not in kinds:
                        continue
                    left = True
                    if self.chunks[k][0] >= self.ready_low:
                        self.taken[i] = True
                        while self.next_free < len(self.tasks) and self.taken[self.next_free]:
                            self.next_free += 1
                        return kind, self.chunks[k]
                if not left or not wait:
                    return None
                self.cond.wait()

    def _run(self, task) -> None:
        kind, (lo, hi) = task
        if kind == "x":
            self.grads.add_x(lo, hi)
            with self.cond:
                self.x_left -= 1
                self.cond.notify_all()
        else:
            self.grads.add_w(lo, hi)

    def _worker(self) -> None:
        while (task := self._take(wait=True)) is not None:
            self._run(task)

    def abort(self) -> None:
        """The recurrence failed: stop the worker after its current task, restore BLAS."""
        with self.cond:
            self.taken = [True] * len(self.tasks)
            self.next_free = len(self.tasks)
            self.cond.notify_all()
        with self._finishing:
            self._discard()
            self._join()

    def finish_x(self):
        """After the recurrence: do the remaining dx tasks here too and wait until every dx
        task is done; returns dx as a (B, T, in) view (None when x needs no gradient)."""
        with self.cond:
            self.ready_low = 0
            self.cond.notify_all()
        try:
            while (task := self._take(wait=False, kinds=("x",))) is not None:
                self._run(task)
            with self.cond:
                while self.x_left > 0:
                    if self.future.done():
                        self.future.result()  # the worker failed: raise its error
                    self.cond.wait(0.05)
        except BaseException:
            self.abort()
            raise
        return None if self.grads.dx is None else self.grads.dx.transpose(1, 0, 2)

    def finish_w(self) -> dict:
        """Do the remaining weight tasks here too, wait for the worker, restore BLAS threads;
        returns the weight gradients (cached: safe to call again)."""
        with self._finishing:  # once, even when called from two threads
            if self.result is None:
                self._discard()
                try:
                    while (task := self._take(wait=False)) is not None:
                        self._run(task)
                finally:
                    self._join()
                self.result = self.grads.weights([lo for lo, _ in self.chunks])
        return self.result

    def _discard(self) -> None:
        try:
            _PIPELINES.items.remove(self)
        except ValueError:
            pass


def _backward_kernel(gY, W_ih, W_hh, saved, need, xp, defer: bool = False):
    """BPTT. gY (B, T+2, H) -> dict of gradients for the names in ``need`` (``x`` as a
    (B, T, in) view of a time-major array; for a gathered input "R", the source's gradient,
    in place of ``x``). With ``defer`` the weight gradients may come
    back as ``tensor.Deferred`` (still being summed by a worker thread, see
    ``_WeightGradPipeline``)."""
    acts, Hs, Cs, Tc = saved["acts"], saved["Hs"], saved["Cs"], saved["Tc"]
    mask, offset = saved["mask"], saved["offset"]
    T, B = acts.shape[:2]
    gathered = saved["x_tm"] if isinstance(saved["x_tm"], _GatheredInput) else None
    if gathered is not None:   # W_ih and the source rows: from the per-row sums of dz, below
        need, need_gathered = need - {"W_ih", "R"}, need & {"W_ih", "R"}
        x_tm = None
    else:
        x_tm = saved["x_tm"]
    # the recurrence runs on this thread for all rows (no row blocks): its step is a dozen
    # ufuncs of a few microseconds each, and two threads running it spent their time handing
    # the GIL back and forth (measured at 64 x 128: 55 ms on one thread, 64 ms in two blocks)
    t_eff, t_full = _time_spans(saved["lengths_np"], 0, B, T)
    H = W_hh.shape[0]
    G = 4 * H
    dtype = W_hh.dtype
    tiny = _TINY.get(numpy.dtype(dtype), 0.0)
    dZ = xp.empty((T, B, G), dtype=dtype)
    if t_eff < T:
        dZ[t_eff:] = 0
    WhhT = xp.ascontiguousarray(W_hh.T)
    chunk = _pipeline_chunk(T, B, H, xp)
    dh = xp.array(gY[:, T], dtype=dtype, copy=True)
    dc = xp.array(gY[:, T + 1], dtype=dtype, copy=True)
    tmp = xp.empty((B, H), dtype=dtype)
    t4 = xp.empty((B, G), dtype=dtype)
    carry_h = xp.empty((B, H), dtype=dtype)
    carry_c = xp.empty((B, H), dtype=dtype)
    one = dtype.type(1)
    step = 0
    pipeline = None
    # everything from the pipeline's start to the hand-over of its Deferreds is covered: an
    # exception (KeyboardInterrupt, a signal handler's SystemExit) arriving after the loop but
    # before finish_x lowered ready_low left the worker waiting forever (the thread's next
    # backward then hung in finish_w, and so did interpreter exit)
    try:
        if chunk:
            pipeline = _WeightGradPipeline(_StepRangeGrads(dZ, Hs, x_tm, W_ih, need, xp),
                                           T, t_eff, chunk)
        for t in range(t_eff - 1, -1, -1):
            a = acts[t]
            i, f, g, o = a[:, :H], a[:, H:2 * H], a[:, 2 * H:3 * H], a[:, 3 * H:]
            dz = dZ[t]
            dzi, dzf, dzg, dzo = dz[:, :H], dz[:, H:2 * H], dz[:, 2 * H:3 * H], dz[:, 3 * H:]
            tc = Tc[t]
            partial = t >= t_full
            if partial:
                m = mask[:, t:t + 1]
                xp.subtract(one, m, out=tmp[:, :1])
                xp.multiply(dh, tmp[:, :1], out=carry_h)
                xp.multiply(dc, tmp[:, :1], out=carry_c)
                dh += gY[:, t]
                dh *= m
                dc *= m
            else:
                dh += gY[:, t]
            # h = o * tanh(c):  do = dh * tanh(c);  dc += dh * o * (1 - tanh(c)^2)
            xp.multiply(dh, tc, out=dzo)
            xp.multiply(tc, tc, out=tmp)
            xp.subtract(one, tmp, out=tmp)
            tmp *= o
            tmp *= dh
            dc += tmp
            # c = f * c_prev + i * g
            xp.multiply(dc, g, out=dzi)
            xp.multiply(dc, i, out=dzg)
            xp.multiply(dc, Cs[t], out=dzf)
            dc *= f
            # through the nonlinearities: sigmoid' = (1 - a) a, tanh' = (1 - g)(1 + g)
            xp.subtract(one, a, out=t4)
            dz *= t4
            xp.add(a, offset, out=t4)
            dz *= t4
            xp.matmul(dz, WhhT, out=dh)
            if partial:
                dh += carry_h
                dc += carry_c
            step += 1
            if tiny and step % FLUSH_EVERY == 0:
                xp.abs(dh, out=tmp)
                dh *= tmp >= tiny
                xp.abs(dc, out=tmp)
                dc *= tmp >= tiny
            if pipeline is not None and (T - t) % chunk == 0:
                pipeline.steps_done(t)
        if pipeline is None:
            out = _StepRangeGrads(dZ, Hs, x_tm, W_ih, need, xp).whole()
        else:
            dx = pipeline.finish_x()
            out = {} if dx is None else {"x": dx}
            if not pipeline.grads.weight_names:  # nothing deferred: end the pipeline (worker, BLAS) now
                pipeline.finish_w()
            for name in pipeline.grads.weight_names:
                if defer and gathered is None:
                    out[name] = Deferred(lambda name=name: pipeline.finish_w()[name])
                else:
                    out[name] = pipeline.finish_w()[name]
    except BaseException:
        if pipeline is not None and pipeline.result is None:
            try:
                pipeline.abort()   # (a second time after finish_x's own: a no-op then)
            except BaseException:  # noqa: BLE001,S110  (the worker's error: the original one is raised)
                pass
        raise
    if gathered is not None and need_gathered:
        out.update(gathered.gradients(dZ, W_ih, need_gathered, xp))
    out["h0"] = dh
    out["c0"] = dc
    return out


def _reverse_index(lengths_np, B: int, T: int):
    """perm (B, T): processing step k of row b reads time position perm[b, k] (an involution)."""
    steps = numpy.arange(T)[None, :]
    if lengths_np is None:
        return numpy.broadcast_to(T - 1 - steps, (B, T))
    ln = lengths_np[:, None]
    return numpy.where(steps < ln, ln - 1 - steps, steps)


def _probe_vector(n: int, dtype):
    """A fixed vector of n values in [0.5, 1.5) (seeded), the fingerprint of a row."""
    return numpy.random.default_rng(0x5EED).uniform(0.5, 1.5, n).astype(dtype)


def _gathered_input(x, perm_x, pad_tm):
    """A ``_GatheredInput`` for x when x is a row gather (``x._gathered``: an embedding
    lookup's output) on NumPy with at most ``GATHERED_MAX_FRACTION`` distinct rows per
    position; else None. ``perm_x``: the reverse direction's (rows, steps) index;
    ``pad_tm``: None or the (T, B) host mask of padded positions in processing order."""
    src = getattr(x, "_gathered", None)
    if src is None or not isinstance(x.data, numpy.ndarray):
        return None
    source, index, skip = src
    # the layer will record ``source`` instead of x: only valid when every gradient x would
    # get goes to the source through the lookup (not for a leaf the caller made
    # differentiable, nor from a lookup done without recording)
    if x.requires_grad:
        parents = getattr(x, "_parents", ())
        if len(parents) != 1 or parents[0] is not source:
            return None
    elif source.requires_grad and is_grad_enabled():
        return None     # (under no_grad nothing is recorded, so evaluation may use the path)
    index = numpy.asarray(index)
    if index.ndim != 2 or index.shape != tuple(x.shape[:2]) or not isinstance(source.data, numpy.ndarray):
        return None
    # distinct ids: a count of present rows (~50 us at 12,800 ids into 30,000 rows; the sort
    # in _GatheredInput runs only when the path is taken)
    n_distinct = int(numpy.count_nonzero(numpy.bincount(index.reshape(-1), minlength=source.shape[0])))
    if n_distinct > GATHERED_MAX_FRACTION * index.size:
        return None
    index_tm = index[perm_x[0].T, perm_x[1].T] if perm_x is not None else index.T
    gathered = _GatheredInput(source, numpy.ascontiguousarray(index_tm), x.data,
                              None if perm_x is None else numpy.asarray(perm_x[1]), pad_tm, skip)
    return gathered if gathered.matches_input else None


def _checked_layer_inputs(x, W_ih, W_hh, b, h0, c0) -> tuple:
    """``(x, W_ih, W_hh, b, h0, c0)`` as Tensors (states may stay None) after the checks both
    ``lstm_layer`` and ``reference_lstm_layer`` make: x real and (B, T, in); weights floating
    with shapes (in, 4H), (H, 4H), (4H,); states real and (B, H). TypeError/ValueError naming
    the argument otherwise."""
    x, W_ih, W_hh, b = (ops.as_tensor(t) for t in (x, W_ih, W_hh, b))
    if x.ndim != 3:
        raise ValueError(f"LSTM: x must have shape (batch, time, features), got {x.shape}")
    if x.dtype.kind not in "fiub":
        raise TypeError(f"LSTM: x must be a real (float, int or bool) array, got dtype {x.dtype}")
    for name, w in (("W_ih", W_ih), ("W_hh", W_hh), ("b", b)):
        if w.dtype.kind != "f":
            raise TypeError(f"LSTM: {name} must be a floating array, got dtype {w.dtype}")
    B, T, n_in = x.shape
    H = W_hh.shape[0] if W_hh.ndim == 2 else -1
    if W_ih.shape != (n_in, 4 * H) or W_hh.shape != (H, 4 * H) or b.shape != (4 * H,):
        raise ValueError(f"LSTM: weight shapes {W_ih.shape}, {W_hh.shape}, {b.shape} do not fit "
                         f"input size {n_in} and hidden size {H} (expected ({n_in}, {4 * H}), "
                         f"({H}, {4 * H}), ({4 * H},))")
    states = []
    for name, s in (("h0", h0), ("c0", c0)):
        if s is not None:
            s = ops.as_tensor(s)
            if s.shape != (B, H):
                raise ValueError(f"LSTM: {name} must have shape ({B}, {H}), got {s.shape}")
            if s.dtype.kind not in "fiub":
                raise TypeError(f"LSTM: {name} must be a real array, got dtype {s.dtype}")
        states.append(s)
    return (x, W_ih, W_hh, b, *states)


def lstm_layer(x, W_ih, W_hh, b, h0=None, c0=None, lengths=None, reverse: bool = False):
    """One LSTM layer in one direction as a single fused, differentiable op.

    Args:
        x: (B, T, in) Tensor.
        W_ih (in, 4H), W_hh (H, 4H), b (4H,): Tensors, gate order i, f, g, o.
        h0, c0: optional (B, H) initial state (zeros when None).
        lengths: optional int array (B,), 1 <= len <= T: real length of each row.
        reverse: run from each sequence's last real token back to its first.

    Returns:
        (outputs (B, T, H), h_n (B, H), c_n (B, H)); outputs are zero at padded positions.

    Cost: forward 2BT(in + H)4H flops, backward twice that; memory O(B T H).
    """
    x, W_ih, W_hh, b, h0, c0 = _checked_layer_inputs(x, W_ih, W_hh, b, h0, c0)
    # (the states too: a host h0 for a device LSTM is the mixing TypeError here, not a failed copy)
    xp = get_xp(x.data, W_ih.data, W_hh.data, b.data, *(s.data for s in (h0, c0) if s is not None))
    B, T, n_in = x.shape
    H = W_hh.shape[0]
    if T == 0:
        raise ValueError("LSTM: the sequence must have at least one time step")
    dtype = W_hh.dtype
    if x.dtype != dtype:
        x = ops.astype(x, dtype)
    lengths_np = None if lengths is None else check_lengths(lengths, B, T, xp)
    if lengths_np is not None and (lengths_np.size == 0 or int(lengths_np.min()) == T):
        lengths_np = None   # every row full (or no rows): the plain path
    inputs = [x, W_ih, W_hh, b]
    names = ["x", "W_ih", "W_hh", "b"]
    states = []
    for name, s in (("h0", h0), ("c0", c0)):
        if s is None:
            states.append(xp.zeros((B, H), dtype=dtype))
        else:
            if s.dtype != dtype:
                s = ops.astype(s, dtype)
            inputs.append(s)
            names.append(name)
            states.append(s.data)
    if B == 0:   # an empty batch: nothing to fuse (the kernels' reshapes need rows)
        given = dict(zip(names[4:], inputs[4:]))
        return reference_lstm_layer(x, W_ih, W_hh, b, given.get("h0"), given.get("c0"),
                                    lengths=lengths, reverse=reverse)
    # the kernels work time-major: ONE copy of x to (T, B, in), in processing order,
    # made chunk by chunk by the projection (``_TimeMajorInput``)
    perm_x = None
    if reverse:
        perm = _reverse_index(lengths_np, B, T)
        rows = numpy.arange(B)[:, None]
        perm_x = (xp.asarray(rows), xp.asarray(perm))
    # (T, B) True at padded positions, in processing order (both directions pad at the end)
    pad = None if lengths_np is None else numpy.arange(T)[:, None] >= lengths_np[None, :]
    x_tm = _gathered_input(x, perm_x, pad)
    if x_tm is not None:           # x = source[index] with few distinct rows: work on those
        inputs[0], names[0] = x_tm.source, "R"
    else:
        x_tm = _TimeMajorInput(x.data, perm_x, None if pad is None else xp.asarray(pad), xp)
    Y, saved = _forward_kernel(x_tm, W_ih.data, W_hh.data, b.data, states[0], states[1], lengths_np, xp)
    if reverse:
        Yo = xp.empty_like(Y)
        Yo[:, T:] = Y[:, T:]
        Yo[(perm_x[0], perm_x[1])] = Y[:, :T]
        Y = Yo
    def grads(g, wanted):
        # the inputs that want a gradient in THIS backward: a weight frozen after the forward
        # must not get a Deferred nobody resolves
        need = {n for n, w in zip(names, wanted) if w}
        gk = g
        if reverse:
            gk = xp.empty_like(g)
            gk[:, T:] = g[:, T:]
            gk[:, :T] = g[perm_x]
        res = _backward_kernel(gk, W_ih.data, W_hh.data, saved, need, xp, defer=True)
        if reverse and "x" in res:
            dx = xp.empty_like(res["x"])
            dx[perm_x] = res["x"]
            res["x"] = dx
        return [res.get(n) if n in need else None for n in names]

    packed = record("lstm", Y, tuple(inputs), grads)
    return packed[:, :T], packed[:, T], packed[:, T + 1]


def reference_lstm_layer(x, W_ih, W_hh, b, h0=None, c0=None, lengths=None, reverse: bool = False):
    """Same contract as ``lstm_layer``, built step by step from primitive ops (matmul,
    sigmoid, tanh, where) for testing. Slow: O(T) small graph nodes."""
    x, W_ih, W_hh, b, h0, c0 = _checked_layer_inputs(x, W_ih, W_hh, b, h0, c0)
    xp = get_xp(x.data)
    B, T, _ = x.shape
    H = W_hh.shape[0]
    if T == 0:
        raise ValueError("LSTM: the sequence must have at least one time step")
    h = h0 if h0 is not None else Tensor(xp.zeros((B, H), dtype=W_hh.dtype))
    c = c0 if c0 is not None else Tensor(xp.zeros((B, H), dtype=W_hh.dtype))
    lengths_np = None if lengths is None else check_lengths(lengths, B, T, xp)
    outs = [None] * T
    zero = Tensor(xp.zeros((B, H), dtype=W_hh.dtype))
    order = range(T - 1, -1, -1) if reverse else range(T)
    zero_x = None if lengths_np is None else Tensor(xp.zeros((B, x.shape[2]), dtype=x.dtype))
    for t in order:
        x_t = x[:, t]
        if lengths_np is not None:
            # padded inputs are zeroed first, as in the fused kernel: NaN or inf padding
            # would otherwise reach dW_ih through x_t^T dz (0 * NaN) although dz is 0 there
            x_t = ops.where(xp.asarray((t < lengths_np)[:, None]), x_t, zero_x)
        z = x_t @ W_ih + h @ W_hh + b
        i = ops.sigmoid(z[:, :H])
        f = ops.sigmoid(z[:, H:2 * H])
        g = ops.tanh(z[:, 2 * H:3 * H])
        o = ops.sigmoid(z[:, 3 * H:])
        c_new = f * c + i * g
        h_new = o * ops.tanh(c_new)
        if lengths_np is None:
            h, c, outs[t] = h_new, c_new, h_new
        else:
            m = xp.asarray((t < lengths_np)[:, None])
            h = ops.where(m, h_new, h)
            c = ops.where(m, c_new, c)
            outs[t] = ops.where(m, h_new, zero)
    return ops.stack(outs, axis=1), h, c


def _run_stack(layer_fn, x, weights, num_layers, bidirectional, lengths, h0, c0, dropout_fn):
    """Shared multi-layer/bidirectional driver. weights[(layer, dir)] = (W_ih, W_hh, b)."""
    n_dir = 2 if bidirectional else 1
    hs, cs = [], []
    inp = x
    for layer in range(num_layers):
        outs = []
        for d in range(n_dir):
            k = layer * n_dir + d
            W_ih, W_hh, b = weights[k]
            y, h, c = layer_fn(inp, W_ih, W_hh, b,
                               None if h0 is None else h0[k], None if c0 is None else c0[k],
                               lengths=lengths, reverse=bool(d))
            outs.append(y)
            hs.append(h)
            cs.append(c)
        inp = outs[0] if n_dir == 1 else ops.concat(outs, axis=-1)
        if layer < num_layers - 1 and dropout_fn is not None:
            inp = dropout_fn(inp)
    return inp, (ops.stack(hs, axis=0), ops.stack(cs, axis=0))


def reference_lstm(x, weights, num_layers=1, bidirectional=False, lengths=None, h0=None, c0=None):
    """Multi-layer reference LSTM from primitives; ``weights`` is a list of (W_ih, W_hh, b)
    in the order layer 0 forward, layer 0 reverse, layer 1 forward, ..."""
    return _run_stack(reference_lstm_layer, ops.as_tensor(x), weights, num_layers, bidirectional,
                      lengths, h0, c0, None)


class LSTM(Module):
    """Multi-layer, optionally bidirectional LSTM over batch-major input.

    Args:
        input_size, hidden_size: feature sizes.
        num_layers: stacked layers; layer k > 0 reads layer k-1's outputs.
        bidirectional: add a reverse direction per layer (outputs concatenated: forward first).
        dropout: dropout probability on the outputs of every layer except the last
            (training mode only).
        dtype: parameter dtype (float32 by default).
        seed: initialisation/dropout seed.
        fused: use the fused op (default); False runs ``reference_lstm_layer`` (slow, tests).

    Parameters (per layer k, suffix ``_reverse`` for the reverse direction), with the
    mapping to ``torch.nn.LSTM``::

        weight_ih_l{k}  (in_k, 4H)  = torch weight_ih_l{k}.T
        weight_hh_l{k}  (H, 4H)     = torch weight_hh_l{k}.T
        bias_l{k}       (4H,)       = torch bias_ih_l{k} + bias_hh_l{k}

    Initialisation: weights U(-1/sqrt(H), 1/sqrt(H)) like PyTorch; biases zero except the
    forget gate, which starts at 1.0.

    ``forward(x, lengths=None, state=None)``: x (B, T, input_size); lengths optional int
    (B,) with 1 <= len <= T; state optional (h0, c0) each (num_layers * num_directions, B, H).
    Returns ``outputs`` (B, T, H * num_directions) (zero at padded positions) and
    ``(h_n, c_n)`` each (num_layers * num_directions, B, H) (PyTorch's layout), the state
    at each sequence's last real token (forward) / first token (reverse).
    """

    def __init__(self, input_size, hidden_size, num_layers: int = 1, bidirectional: bool = False,
                 dropout: float = 0.0, dtype="float32", seed=None, fused: bool = True):
        for name, v in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
                raise ValueError(f"LSTM: {name} must be a positive int, got {v!r}")
        if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"LSTM: dropout must be in [0, 1), got {dropout!r}")
        for name, v in (("bidirectional", bidirectional), ("fused", fused)):
            if not isinstance(v, (bool, numpy.bool_)):
                raise TypeError(f"LSTM: {name} must be a bool, got {v!r}")
        self.input_size, self.hidden_size = int(input_size), int(hidden_size)
        self.num_layers = int(num_layers)
        self.bidirectional = bool(bidirectional)
        self.dropout = float(dropout)
        self.fused = bool(fused)
        rng = _init.make_rng(seed)
        H = self.hidden_size
        bound = 1.0 / math.sqrt(H)
        n_dir = 2 if bidirectional else 1
        self._names = []
        for layer in range(self.num_layers):
            n_in = self.input_size if layer == 0 else H * n_dir
            for d in range(n_dir):
                sfx = f"l{layer}" + ("_reverse" if d else "")
                bias = numpy.zeros(4 * H)
                bias[H:2 * H] = 1.0
                setattr(self, f"weight_ih_{sfx}", Parameter(_init.uniform((n_in, 4 * H), -bound, bound, dtype, rng)))
                setattr(self, f"weight_hh_{sfx}", Parameter(_init.uniform((H, 4 * H), -bound, bound, dtype, rng)))
                setattr(self, f"bias_{sfx}", Parameter(_init._finish(bias, dtype)))
                self._names.append(sfx)
        from ..backend import default_rng
        # a stream of its own: seed + k would collide with the seeds the models give their
        # other dropout generators (seed + 2 was both this and the classifier's Dropout)
        # (a Generator seed gives the dropout stream a seed drawn from it after the weights, so a
        # seeded Generator makes the dropout masks reproducible too)
        if seed is None:
            drop_seed = None
        elif isinstance(seed, numpy.random.Generator):
            drop_seed = int(rng.integers(0, 2**63 - 1))
        else:
            drop_seed = int(numpy.random.SeedSequence([int(seed), 0x157]).generate_state(1)[0])
        self._rng = default_rng(drop_seed)

    @property
    def num_directions(self) -> int:
        """2 for a bidirectional LSTM, else 1."""
        return 2 if self.bidirectional else 1

    def layer_weights(self):
        """[(W_ih, W_hh, b)] in the order l0, l0_reverse, l1, ..."""
        return [(getattr(self, f"weight_ih_{s}"), getattr(self, f"weight_hh_{s}"), getattr(self, f"bias_{s}"))
                for s in self._names]

    def forward(self, x, lengths=None, state=None):
        """Run the stack over a batch of sequences.

        Args:
            x: ``(B, T, input_size)``.
            lengths: None or ``(B,)`` ints in [1, T]; steps at or beyond a row's length carry
                the state unchanged and output zeros (see the module docstring).
            state: None (zeros) or ``(h0, c0)``, each ``(num_layers * num_directions, B, H)``.
        Returns:
            ``(outputs, (h_n, c_n))``: outputs ``(B, T, H * num_directions)`` of the last
            layer; ``h_n``, ``c_n`` ``(num_layers * num_directions, B, H)``, each direction's
            final state (forward: after each row's last real token; reverse: after its first
            token), layer-major with forward before reverse, like PyTorch.

        Cost per layer and direction: ``O(B T (in + H) 4H)`` in GEMMs, one fused op
        (:func:`lstm_layer`) with hand-written backpropagation through time.
        """
        x = ops.as_tensor(x)
        if x.ndim != 3 or x.shape[-1] != self.input_size:
            raise ValueError(f"LSTM: expected x of shape (batch, time, {self.input_size}), got {x.shape}")
        h0 = c0 = None
        if state is not None:
            if isinstance(state, (str, bytes)) or not hasattr(state, "__len__") or len(state) != 2:
                raise ValueError(f"LSTM: state must be None or a pair (h0, c0), got {type(state).__name__}"
                                 + (f" of length {len(state)}" if hasattr(state, "__len__") else ""))
            h0, c0 = (ops.as_tensor(s) for s in state)
            want = (self.num_layers * self.num_directions, x.shape[0], self.hidden_size)
            if h0.shape != want or c0.shape != want:
                raise ValueError(f"LSTM: state must be (h0, c0) each of shape {want}, got {h0.shape}, {c0.shape}")
        if self.dropout and self.training:
            from ..functional import dropout as _dropout

            def drop(t):
                return _dropout(t, self.dropout, training=True, rng=self._rng)
        else:
            drop = None
        fn = lstm_layer if self.fused else reference_lstm_layer
        return _run_stack(fn, x, self.layer_weights(), self.num_layers, self.bidirectional,
                          lengths, h0, c0, drop)

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, "
                f"bidirectional={self.bidirectional}, dropout={self.dropout}")
