"""Run independent pieces of NumPy work on the CPU's cores at once.

NumPy's ufuncs run on one core, but they release the GIL while they loop, so Python
threads that work on *disjoint* parts of arrays run in parallel. tinytt uses this where
the work splits cleanly and each piece is large enough to pay for a thread hand-off
(tens of microseconds):

- the optimizers' elementwise updates, over chunks of each flat parameter;
- segment sums (``tinytt/segment_sum.py``), large row gathers (``backend.take_rows``) and
  the TT lookup's per-digit forward levels, as jobs dealt to the cores (:func:`run_jobs`);
- the LSTM (``tinytt/nn/lstm.py``): a worker computes the forward's input projection
  ahead of the recurrence, or (more than two workers, or an input read through an
  embedding's distinct rows) blocks of batch rows run their forward recurrences side by
  side; in the backward a worker computes the weight gradients per chunk of steps while
  the recurrence runs.

Results are bit-identical to a serial run where every element goes through the same
operations in the same order (the optimizers). A BLAS call in a worker would start its own
threads and fight the other workers for the cores, so work with GEMMs runs inside
:func:`tinytt.blas_threads.single_threaded_blas` (NumPy's OpenBLAS on one thread meanwhile);
there a GEMM on a block of rows may round differently from one on all rows.

``TINYTT_NUM_THREADS`` sets the number of workers (default: the cores this process may
use; ``1`` turns off the library's use of threads). CuPy arrays never go through here.
"""

from __future__ import annotations

import numbers
import os
import queue
import threading
from concurrent.futures import ThreadPoolExecutor

from . import blas_threads
from ._validate import int_arg


__all__ = ["num_threads", "map_blocks", "run_blocks", "run_tasks", "run_jobs", "deal", "submit", "split_range"]

_lock = threading.Lock()
_pool = [None, 0]  # executor, its size
_WORKER_PREFIX = "tinytt-worker"


def num_threads() -> int:
    """Workers to use: ``TINYTT_NUM_THREADS`` if set (>= 1), else the usable CPU cores
    (the process's affinity mask, read once per process)."""
    env = os.environ.get("TINYTT_NUM_THREADS", "").strip()
    if env:
        try:
            n = int(env)
        except ValueError:
            raise ValueError(f"TINYTT_NUM_THREADS must be a positive integer, got {env!r}") from None
        if n < 1:
            raise ValueError(f"TINYTT_NUM_THREADS must be a positive integer, got {env!r}")
        return n
    if _cores[0] is None:
        try:
            _cores[0] = max(1, len(os.sched_getaffinity(0)))
        except AttributeError:  # not on Linux
            _cores[0] = max(1, os.cpu_count() or 1)
    return _cores[0]


_cores = [None]


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
    nearly equal size, none smaller than ``min_size`` (except when n itself is smaller).
    ``n`` and ``min_size`` are ints >= 0 (a ``min_size`` of 0 counts as 1), ``parts`` an int
    >= 1 (ValueError otherwise)."""
    n = int_arg("split_range", "n", n, low=0)
    parts = int_arg("split_range", "parts", parts)
    min_size = int_arg("split_range", "min_size", min_size, low=0)
    if n == 0:
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


class _Job:
    """One function handed to a lane, with its own completion lock (fresh per call, so a
    result can never be read from another call)."""

    __slots__ = ("fn", "outcome", "finished", "lock")

    def __init__(self, fn):
        self.fn = fn
        self.outcome = (None, None)      # (exception or None, result)
        self.finished = False
        self.lock = threading.Lock()
        self.lock.acquire()              # released by the lane when fn has returned

    def wait(self):
        """Block until the lane has run ``fn``; returns ``(interrupt or None, outcome)``.

        A KeyboardInterrupt (or other exception) raised while waiting does not stop the
        wait -- the task keeps running on shared data -- it is returned for the caller to
        re-raise once every task has finished."""
        interrupt = None
        while not self.finished:
            try:
                self.lock.acquire()
            except BaseException as exc:  # noqa: BLE001 - deferred, see the docstring
                interrupt = exc
        return interrupt, self.outcome


class _Lane:
    """A worker thread that runs the jobs put on its queue, one at a time. The hand-over is
    a queue put and the job's own lock released back (measured on the project's 2-core VM:
    ~25-60 us there and back, ~120-200 us when the thread was asleep, against ~110 / ~310
    us for a ``ThreadPoolExecutor`` round trip with ``wait``; a TT lookup makes several per
    call). Nobody owns a lane: a caller picks idle ones (:func:`_idle_lanes`), so a caller
    interrupted at any point cannot leak one, and two callers that pick the same lane at
    once just have their jobs run one after the other."""

    def __init__(self, number: int):
        self._queue = queue.SimpleQueue()
        self._running = False
        thread = threading.Thread(target=self._loop, name=f"{_WORKER_PREFIX}-lane-{number}", daemon=True)
        thread.start()

    def idle(self) -> bool:
        return not self._running and self._queue.empty()

    def _loop(self) -> None:
        while True:
            job = self._queue.get()
            self._running = True
            try:
                job.outcome = (None, job.fn())
            except BaseException as exc:  # noqa: BLE001 - handed to the caller, re-raised there
                job.outcome = (exc, None)
            job.fn = None
            self._running = False
            job.finished = True
            job.lock.release()

    def start(self, job: _Job) -> None:
        self._queue.put(job)


_all_lanes = []
#: at most this many lanes (only with many threads calling run_tasks at once); tasks
#: beyond the idle lanes then run in the calling thread
_MAX_LANES = 64


def _idle_lanes(k: int) -> list:
    """Up to ``k`` lanes with nothing to do, starting new ones as needed (up to the cap)."""
    with _lock:
        got = [lane for lane in _all_lanes if lane.idle()][:k]
        while len(got) < k and len(_all_lanes) < _MAX_LANES:
            lane = _Lane(len(_all_lanes) + 1)
            _all_lanes.append(lane)
            got.append(lane)
        return got


def _reset_after_fork() -> None:
    """In a forked child none of the parent's threads exist: forget the lanes and the
    executor, and use a fresh lock (the parent may have held it while forking)."""
    global _lock
    _lock = threading.Lock()
    _all_lanes.clear()
    _pool[0], _pool[1] = None, 0
    _cores[0] = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def run_tasks(tasks) -> list:
    """Call each zero-argument function of ``tasks`` at once: the first in the calling
    thread, the others on worker threads; returns their results in order.

    The caller works instead of idling, so two tasks cost one hand-off (see ``_Lane``).
    An exception from a task is re-raised after every task has finished (the caller's own
    first); so is a KeyboardInterrupt that arrives meanwhile. Runs the tasks in turn when
    called from a worker thread itself; tasks beyond the available lanes run in the
    calling thread. It does not read ``TINYTT_NUM_THREADS`` (that costs as much as the
    hand-off here): the library's callers split their work by :func:`num_threads` and so
    pass one task when it is 1.
    """
    tasks = list(tasks)
    if len(tasks) <= 1 or threading.current_thread().name.startswith(_WORKER_PREFIX):
        return [task() for task in tasks]
    lanes = _idle_lanes(len(tasks) - 1)
    jobs = []
    results = [None] * len(tasks)
    error = None
    try:
        for lane, task in zip(lanes, tasks[1:]):
            job = _Job(task)
            lane.start(job)
            jobs.append(job)     # (after the put: a job is never waited for unless it was put)
        try:
            results[0] = tasks[0]()
            for i in range(1 + len(lanes), len(tasks)):   # no lane left for these
                results[i] = tasks[i]()
        except BaseException as exc:  # noqa: BLE001 - re-raised below, after the lanes finished
            error = exc
    finally:
        outcomes = []
        for job in jobs:        # never leave a task running on shared data
            interrupt, outcome = job.wait()
            error = error or interrupt
            outcomes.append(outcome)
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
    (ties keep the jobs' order, so the split is the same on every run). ``n_groups`` is an
    int >= 1."""
    n_groups = int_arg("deal", "n_groups", n_groups)
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
    if isinstance(min_weight, bool) or not isinstance(min_weight, numbers.Real):
        raise TypeError(f"run_jobs: min_weight must be a number, got {min_weight!r}")
    threads = num_threads()
    if (threads < 2 or len(jobs) < 2 or sum(w for w, _ in jobs) < min_weight
            or (gemm and not blas_threads.cooperative())):
        for _, fn in jobs:
            fn()
        return
    # (never more groups than jobs: a huge TINYTT_NUM_THREADS must not allocate that many lists)
    groups = [lambda group=group: [fn() for fn in group] for group in deal(jobs, min(threads, len(jobs)))]
    if gemm:
        with blas_threads.single_threaded_blas():
            run_tasks(groups)
    else:
        run_tasks(groups)


def submit(fn):
    """Start ``fn()`` on a worker thread; returns its ``concurrent.futures.Future``.

    For a producer/consumer pair where the calling thread keeps working (the LSTM's
    input-projection and weight-gradient pipelines). ``fn`` must not itself wait on other
    workers.
    """
    return _executor(num_threads()).submit(fn)
