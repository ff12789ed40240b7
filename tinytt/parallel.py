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
from concurrent.futures import ThreadPoolExecutor


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
    """Call ``fn(start, stop)`` for each ``(start, stop)`` in ``blocks`` at once: the first
    block in the calling thread, the others on workers (:func:`run_tasks`).

    Returns the results in block order; an exception from a block is re-raised after
    every block has finished (none is left running on shared buffers).
    """
    return run_tasks([lambda a=a, b=b: fn(a, b) for a, b in blocks])


class _Lane:
    """A worker thread that runs one function at a time. The hand-over is two plain locks
    (~20 us there and back here, ~50 us when the thread was asleep), where a
    ``ThreadPoolExecutor`` round trip with ``wait`` took ~110 us (~330 us asleep) on the
    project's 2-core VM: with a few hand-offs per TT lookup that was a millisecond."""

    def __init__(self, number: int):
        self._go = threading.Lock()
        self._go.acquire()
        self._done = threading.Lock()
        self._done.acquire()
        self._fn = None
        self._outcome = (None, None)
        thread = threading.Thread(target=self._loop, name=f"{_WORKER_PREFIX}-lane-{number}", daemon=True)
        thread.start()

    def _loop(self) -> None:
        while True:
            self._go.acquire()
            try:
                self._outcome = (None, self._fn())
            except BaseException as exc:  # noqa: BLE001 - handed to the caller, re-raised there
                self._outcome = (exc, None)
            self._fn = None
            self._done.release()

    def start(self, fn) -> None:
        self._fn = fn
        self._go.release()

    def join(self) -> tuple:
        """Wait for the function; returns ``(exception or None, result)``."""
        self._done.acquire()
        outcome, self._outcome = self._outcome, (None, None)
        return outcome


_lanes = {"idle": [], "count": 0}
#: more lanes than this (only with many threads calling run_tasks at once): the extra
#: tasks run in the calling thread instead
_MAX_LANES = 64


def _take_lanes(k: int) -> list:
    with _lock:
        idle = _lanes["idle"]
        got = [idle.pop() for _ in range(min(k, len(idle)))]
        while len(got) < k and _lanes["count"] < _MAX_LANES:
            _lanes["count"] += 1
            got.append(_Lane(_lanes["count"]))
        return got


def _forget_lanes_after_fork() -> None:
    _lanes["idle"], _lanes["count"] = [], 0   # the child process has none of the threads


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_lanes_after_fork)


def run_tasks(tasks) -> list:
    """Call each zero-argument function of ``tasks`` at once: the first in the calling
    thread, the others on worker threads; returns their results in order.

    The caller works instead of idling, so two tasks cost one hand-off (~20-50 us, see
    ``_Lane``). An exception from a task is re-raised after every task has finished (the
    caller's own first). Called from a worker thread itself, it runs the tasks in turn.
    """
    tasks = list(tasks)
    if len(tasks) <= 1 or threading.current_thread().name.startswith(_WORKER_PREFIX):
        return [task() for task in tasks]
    lanes = _take_lanes(len(tasks) - 1)
    results = [None] * len(tasks)
    error = None
    started = []
    try:
        for lane, task in zip(lanes, tasks[1:]):
            lane.start(task)
            started.append(lane)
        try:
            results[0] = tasks[0]()
            for i in range(1 + len(lanes), len(tasks)):   # no lane left for these
                results[i] = tasks[i]()
        except BaseException as exc:  # noqa: BLE001 - re-raised below, after the lanes finished
            error = exc
    finally:
        outcomes = [lane.join() for lane in started]   # never leave a task running on shared data
        with _lock:
            _lanes["idle"].extend(lanes)
    if error is not None:
        raise error
    for i, (exc, result) in enumerate(outcomes, start=1):
        if exc is not None:
            raise exc
        results[i] = result
    return results


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
