"""Shared helpers for the benchmark scripts: timing, JSON lines, peak memory, CLI flags.

- ``time_call(fn)``: warm-up calls, then repeats timed with ``time.perf_counter`` between
  ``tinytt.backend.synchronize()`` calls (so queued CuPy work is counted); returns the
  median, the minimum and the number of repeats. Repeats continue while the timed total
  stays under a budget (at least ``min_repeats``, at most ``max_repeats``).
- ``emit(row)``: one JSON object per line to stdout, and appended to ``--out FILE`` when given.
  Every row gets ``backend``, ``malloc`` (``malloc_mode()``: "top_pad=N" after
  ``tinytt.allocator.keep_freed_memory``, else "default", "retain" or "mmap>=N" from glibc's
  ``MALLOC_MMAP_THRESHOLD_``) and ``load1`` (1-minute load average when the row was written);
  the caller sets ``bench``.
- Peak memory, two methods (each row states which):
  ``tracemalloc_peak(fn)``: the increase of the peak of NumPy/Python allocations during one
  call (NumPy reports its data buffers to tracemalloc; torch and CuPy do not);
  ``rss_peak(fn)``: the increase of the resident-set high-water mark (``VmHWM``, reset by
  writing 5 to ``/proc/self/clear_refs``) over the RSS before the call -- meant to run in a
  fresh subprocess (see ``benchmarks/lookup.py``), Linux only.
- ``add_common_args(parser)``: ``--quick`` (fewer repeats, smaller budget) and ``--out FILE``.
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import sys
import time
import tracemalloc

from tinytt import backend

__all__ = [
    "add_common_args",
    "configure",
    "time_call",
    "emit",
    "tracemalloc_peak",
    "rss_peak",
    "rss_supported",
    "malloc_mode",
    "load_average",
]

_state = {"out": None, "quick": False}


def add_common_args(parser) -> None:
    """Add ``--quick`` and ``--out FILE`` to an argparse parser."""
    parser.add_argument("--quick", action="store_true", help="fewer repeats and smaller time budget")
    parser.add_argument("--out", metavar="FILE", default=None,
                        help="also append the JSON lines to FILE")


def configure(args) -> None:
    """Remember ``--quick`` / ``--out`` from parsed ``args`` for ``time_call`` and ``emit``."""
    _state["quick"] = bool(getattr(args, "quick", False))
    _state["out"] = getattr(args, "out", None)


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask; ``os.cpu_count()`` elsewhere): the
    PyTorch baselines get this many threads, as tinytt's own workers and OpenBLAS do."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def malloc_mode() -> str:
    """"retain" when glibc was told to keep large blocks in the heap (env), "top_pad=N" when
    freed heap memory is kept (``tinytt.allocator.keep_freed_memory`` or ``MALLOC_TOP_PAD_``),
    else "default"."""
    from tinytt.allocator import kept_bytes  # noqa: PLC0415

    if kept_bytes():
        return f"top_pad={kept_bytes()}"
    thr = os.environ.get("MALLOC_MMAP_THRESHOLD_")
    try:
        return "retain" if thr is not None and int(thr) >= 1 << 28 else ("default" if thr is None else f"mmap>={thr}")
    except ValueError:
        return "default"


def load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def time_call(fn, *, warmup: int = 2, min_repeats: int = 5, max_repeats: int = 50, budget_s: float = 2.0,
              setup=None) -> dict:
    """Median wall time of ``fn()``.

    ``setup()`` (optional) runs before every call, outside the timed region (e.g. clearing
    gradients). Returns ``{"median_s", "min_s", "repeats"}``.
    """
    if _state["quick"]:
        warmup, min_repeats, max_repeats, budget_s = min(warmup, 1), min(min_repeats, 3), min(max_repeats, 5), 0.3
    for _ in range(warmup):
        if setup is not None:
            setup()
        fn()
    backend.synchronize()
    times = []
    total = 0.0
    while len(times) < max_repeats and (len(times) < min_repeats or total < budget_s):
        if setup is not None:
            setup()
        backend.synchronize()
        t0 = time.perf_counter()
        fn()
        backend.synchronize()
        dt = time.perf_counter() - t0
        times.append(dt)
        total += dt
    return {"median_s": statistics.median(times), "min_s": min(times), "repeats": len(times)}


def time_interleaved(calls: dict, *, rounds: int = 5, reps: int = 3, pause_s: float = 0.01) -> dict:
    """Median wall times of several calls measured in turn, so a drift of the machine's speed
    hits all of them alike.

    ``calls``: ``{key: (fn, setup or None)}``. Each of ``rounds`` rounds runs every call once
    as a warm-up and then ``reps`` timed times, in the keys' order (reversed every other
    round). Before each call the thread sleeps ``pause_s``, outside the timed region, so
    threads that another library leaves spinning after its call (PyTorch's OpenMP pool spins
    for milliseconds) are idle again: no call pays for the previous one. Returns
    ``{key: {"median_s", "min_s", "repeats", "round_medians_s"}}`` (median over all rounds).
    """
    if _state["quick"]:
        rounds, reps = min(rounds, 2), min(reps, 2)
    times = {key: [] for key in calls}
    per_round = {key: [] for key in calls}
    keys = list(calls)
    for r in range(rounds):
        for key in (keys if r % 2 == 0 else keys[::-1]):
            fn, setup = calls[key]
            this_round = []
            for k in range(reps + 1):
                if setup is not None:
                    setup()
                backend.synchronize()
                time.sleep(pause_s)
                t0 = time.perf_counter()
                fn()
                backend.synchronize()
                if k:   # the first call of each round is the warm-up
                    this_round.append(time.perf_counter() - t0)
            times[key] += this_round
            per_round[key].append(statistics.median(this_round))
    return {key: {"median_s": statistics.median(v), "min_s": min(v), "repeats": len(v),
                  "round_medians_s": per_round[key]} for key, v in times.items()}


def emit(row: dict, **extra) -> dict:
    """Print ``row`` (plus standard fields) as one JSON line; append it to ``--out`` if set."""
    full = dict(row)
    full.update(extra)
    full.setdefault("backend", backend.get_backend())
    full.setdefault("malloc", malloc_mode())
    full.setdefault("load1", load_average())
    line = json.dumps(full, default=_json_default)
    print(line, flush=True)
    if _state["out"]:
        with open(_state["out"], "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
    return full


def _json_default(obj):
    try:
        import numpy  # noqa: PLC0415

        if isinstance(obj, numpy.generic):
            return obj.item()
        if isinstance(obj, numpy.ndarray):
            return obj.tolist()
    except ImportError:  # pragma: no cover
        pass
    return str(obj)


def tracemalloc_peak(fn, setup=None) -> int:
    """Bytes by which traced (Python + NumPy) allocations peak above their level before ``fn()``.

    ``setup()`` runs first, untraced. Does not see torch or CuPy device allocations.
    """
    if setup is not None:
        setup()
    gc.collect()
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        result = fn()
        _, peak = tracemalloc.get_traced_memory()
        del result
    finally:
        if started:
            tracemalloc.stop()
    return max(peak - before, 0)


def rss_supported() -> bool:
    return sys.platform.startswith("linux") and os.access("/proc/self/clear_refs", os.W_OK)


def _status_kib(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def rss_peak(fn, setup=None) -> int:
    """Bytes by which the RSS high-water mark during ``fn()`` exceeds the RSS just before it.

    Resets the high-water mark through ``/proc/self/clear_refs`` (Linux). Meaningful in a
    fresh process whose allocator returns large blocks to the OS (the caller sets
    ``MALLOC_MMAP_THRESHOLD_``), so earlier calls do not hide this one's allocations.
    """
    if setup is not None:
        setup()
    gc.collect()
    before = _status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
        fh.write("5")
    result = fn()
    backend.synchronize()
    peak = _status_kib("VmHWM")
    del result
    return max(peak - before, 0) * 1024
