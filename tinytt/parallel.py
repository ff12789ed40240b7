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


__all__ = ["num_threads", "map_blocks", "run_blocks", "run_tasks", "run_jobs", "submit", "split_range"]

_lock = threading.Lock()
_pool = [None, 0]  # executor, its size
_WORKER_PREFIX = "tinytt-worker"


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
            _pool[0] = ThreadPoolExecutor(n, thread_name_prefix=_WORKER_PREFIX)
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


def run_tasks(tasks) -> list:
    """Call each zero-argument function of ``tasks`` at once: the first in the calling
    thread, the others on workers; returns their results in order.

    The caller works instead of idling, so two tasks cost one hand-off (~50 us). An
    exception from a task is re-raised after every task has finished. Called from a
    worker thread itself, it runs the tasks in turn (a worker waiting on the pool could
    deadlock it).
    """
    tasks = list(tasks)
    if len(tasks) <= 1 or threading.current_thread().name.startswith(_WORKER_PREFIX):
        return [task() for task in tasks]
    pool = _executor(max(num_threads(), len(tasks) - 1))
    futures = [pool.submit(task) for task in tasks[1:]]
    try:
        first = tasks[0]()
    finally:
        wait(futures)
    return [first] + [f.result() for f in futures]


def deal(jobs, n_groups: int) -> list:
    """Split ``(weight, fn)`` jobs into at most ``n_groups`` non-empty lists of fns with
    nearly equal total weight: largest job first, each to the lightest group so far
    (ties keep the jobs' order, so the split is the same on every run)."""
    groups = [[] for _ in range(n_groups)]
    loads = [0] * n_groups
    for weight, fn in sorted(jobs, key=lambda job: -job[0]):
        g = loads.index(min(loads))
        groups[g].append(fn)
        loads[g] += weight
    return [g for g in groups if g]


def run_jobs(jobs, min_weight=0, gemm: bool = False) -> None:
    """Run independent ``(weight, fn)`` jobs, on all cores when it pays.

    With at least two threads (:func:`num_threads`), two jobs and a total weight of at
    least ``min_weight``, the jobs are dealt into one group per thread (:func:`deal`) and
    the groups run at once (:func:`run_tasks`); otherwise they run in order, inline.
    ``gemm=True``: the jobs call BLAS, so they share the cores only when NumPy's OpenBLAS
    can be held to one thread meanwhile (:func:`tinytt.blas_threads.cooperative`).
    Jobs must write to disjoint memory. Returns nothing; re-raises a job's exception.
    """
    jobs = list(jobs)
    threads = num_threads()
    if threads < 2 or len(jobs) < 2 or sum(w for w, _ in jobs) < min_weight:
        for _, fn in jobs:
            fn()
        return
    if gemm:
        from . import blas_threads  # noqa: PLC0415 - loads NumPy's BLAS controls

        if not blas_threads.cooperative():
            for _, fn in jobs:
                fn()
            return
        with blas_threads.single_threaded_blas():
            run_tasks([_run_all(group) for group in deal(jobs, threads)])
        return
    run_tasks([_run_all(group) for group in deal(jobs, threads)])


def _run_all(fns):
    return lambda: [fn() for fn in fns]


def submit(fn):
    """Start ``fn()`` on a worker thread; returns its ``concurrent.futures.Future``.

    For a producer/consumer pair where the calling thread keeps working (the LSTM's
    input-projection and weight-gradient pipelines). ``fn`` must not itself wait on other
    workers.
    """
    return _executor(num_threads()).submit(fn)
