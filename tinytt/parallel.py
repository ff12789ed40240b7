"""Run independent pieces of NumPy work on the CPU's cores at once.

NumPy's ufuncs run on one core, but they release the GIL while they loop, so Python
threads that work on *disjoint* parts of arrays run in parallel. tinytt uses this where
the work splits cleanly and each piece is large enough to pay for a thread hand-off
(tens of microseconds):

- the optimizers' elementwise updates, over chunks of each flat parameter;
- the LSTM (``tinytt/nn/lstm.py``): a worker computes the forward's input projection
  ahead of the recurrence, or (more than two workers) blocks of batch rows run their
  forward recurrences side by side; in the backward a worker computes the weight
  gradients per chunk of steps while the recurrence runs.

Results are bit-identical to a serial run where every element goes through the same
operations in the same order (the optimizers). A BLAS call in a worker would start its own
threads and fight the other workers for the cores, so work with GEMMs runs inside
:func:`tinytt.blas_threads.single_threaded_blas` (NumPy's OpenBLAS on one thread meanwhile);
there a GEMM on a block of rows may round differently from one on all rows.

``TINYTT_NUM_THREADS`` sets the number of workers (default: the cores this process may
use; ``1`` turns all of this off). CuPy arrays never go through here.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait


__all__ = ["num_threads", "map_blocks", "run_blocks", "submit", "split_range"]

_lock = threading.Lock()
_pool = [None, 0]  # executor, its size


def num_threads() -> int:
    """Workers to use: ``TINYTT_NUM_THREADS`` if set (>= 1), else the usable CPU cores."""
    env = os.environ.get("TINYTT_NUM_THREADS", "").strip()
    if env:
        try:
            n = int(env)
        except ValueError:
            raise ValueError(f"TINYTT_NUM_THREADS must be a positive integer, got {env!r}") from None
        if n < 1:
            raise ValueError(f"TINYTT_NUM_THREADS must be a positive integer, got {env!r}")
        return n
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _executor(n: int) -> ThreadPoolExecutor:
    with _lock:
        if _pool[0] is None or _pool[1] != n:
            if _pool[0] is not None:
                _pool[0].shutdown(wait=False)
            _pool[0] = ThreadPoolExecutor(n, thread_name_prefix="tinytt")
            _pool[1] = n
        return _pool[0]


def split_range(n: int, parts: int, min_size: int = 1) -> list:
    """Split ``range(n)`` into at most ``parts`` contiguous ``(start, stop)`` blocks of
    nearly equal size, none smaller than ``min_size`` (except when n itself is smaller)."""
    if n <= 0:
        return []
    parts = max(1, min(parts, n // max(min_size, 1)))
    bounds = [n * k // parts for k in range(parts + 1)]
    return [(bounds[k], bounds[k + 1]) for k in range(parts)]


def map_blocks(fn, n: int, min_size: int = 1) -> list:
    """Call ``fn(start, stop)`` for contiguous blocks covering ``range(n)``, in parallel.

    Args:
        fn: works on the block ``[start, stop)`` only; blocks must not write to shared
            memory outside their own range.
        n: the number of items to split.
        min_size: the smallest block worth a thread.

    Returns:
        the results of ``fn`` in block order. Exceptions from a block are re-raised.
    Cost: the work of ``fn`` divided over ``num_threads()`` cores, plus ~50 us hand-off.
    """
    return run_blocks(fn, split_range(n, num_threads(), min_size))


def run_blocks(fn, blocks) -> list:
    """Call ``fn(start, stop)`` for each ``(start, stop)`` in ``blocks``: inline when there
    is one block, else each on a worker thread at once.

    Returns the results in block order; an exception from a block is re-raised after
    every block has finished (none is left running on shared buffers).
    """
    blocks = list(blocks)
    if len(blocks) <= 1:
        return [fn(a, b) for a, b in blocks]
    pool = _executor(max(num_threads(), len(blocks)))
    futures = [pool.submit(fn, a, b) for a, b in blocks]
    wait(futures)
    return [f.result() for f in futures]


def submit(fn):
    """Start ``fn()`` on a worker thread; returns its ``concurrent.futures.Future``.

    For a producer/consumer pair where the calling thread keeps working (the LSTM's
    input-projection and weight-gradient pipelines). ``fn`` must not itself wait on other
    workers.
    """
    return _executor(num_threads()).submit(fn)
