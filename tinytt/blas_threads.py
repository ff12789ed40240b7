"""Run NumPy's BLAS on one thread for a while, so that Python threads can each run their
own small GEMMs side by side.

Why: an LSTM's recurrence is a chain of small GEMMs (``(B, H) @ (H, 4H)``) each followed by
a dozen elementwise passes. NumPy's ufuncs use one core, so on a 2-core machine half of
the loop leaves a core idle. Splitting the batch rows into blocks and running each block's
whole recurrence in its own thread uses both cores for everything — but only if each
block's GEMMs run on the calling thread: a multi-threaded BLAS call in each worker would
start its own helper threads and fight the other worker for the cores.

NumPy's bundled OpenBLAS has no per-thread limit (``openblas_set_num_threads_local``
changes the count for every thread), so :func:`single_threaded_blas` sets the
process-wide count to 1 for the duration of a ``with`` block and restores the previous
count afterwards (nested and concurrent uses are counted; the last one out restores).
Side effect: BLAS calls from *other* Python threads during that time also use one
thread. Results do not depend on the thread count beyond float rounding in the GEMMs.

When NumPy's BLAS is not an OpenBLAS whose thread count can be set (MKL, Accelerate, a
build without the symbols), :func:`available` is False and callers keep their serial path.

OpenBLAS's helper threads also busy-wait after every multi-threaded call, ``2**28`` cycles
(~0.1 s) unless ``OPENBLAS_THREAD_TIMEOUT`` was set when OpenBLAS loaded. A spinning helper
takes a core from the Python worker threads: measured, the threaded LSTM was then 6-58 %
slower than its serial path instead of ~13 % faster. :func:`cooperative` is True only when
the spin is short (``import tinytt`` before NumPy sets ``OPENBLAS_THREAD_TIMEOUT=20``,
``tinytt/_openblas.py``); callers use threads for BLAS work only then.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import threading

__all__ = ["available", "cooperative", "spin_log2", "single_threaded_blas", "get_num_threads"]

# (getter, setter) symbol pairs, most specific first: NumPy's wheels bundle
# scipy-openblas (64-bit ints, prefixed names); other builds export the plain names.
_SYMBOLS = (
    ("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
    ("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"),
    ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
    ("openblas_get_num_threads", "openblas_set_num_threads"),
)

#: the longest busy-wait of OpenBLAS's helper threads (log2 cycles; 2**22 ~ 2 ms here) with
#: which worker threads that run their own GEMMs still pay off
MAX_SPIN_LOG2 = 22
#: OpenBLAS's default busy-wait when ``OPENBLAS_THREAD_TIMEOUT`` is unset (log2 cycles)
DEFAULT_SPIN_LOG2 = 28

_lock = threading.Lock()
_state = {"controls": None, "searched": False, "depth": 0, "saved": None, "spin": None}


def _candidate_libraries():
    """Paths of OpenBLAS libraries NumPy may have loaded: the wheel's bundled copy first,
    then any OpenBLAS mapped into this process."""
    import numpy  # noqa: PLC0415  (tinytt imports this module lazily, after NumPy)

    root = os.path.dirname(os.path.dirname(os.path.abspath(numpy.__file__)))
    paths = sorted(glob.glob(os.path.join(root, "numpy.libs", "*openblas*")))
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                path = line.split(maxsplit=5)[-1].strip()
                if "openblas" in os.path.basename(path).lower() and path not in paths:
                    paths.append(path)
    except OSError:  # not Linux
        pass
    return paths


def _controls():
    """(get, set) ctypes functions of NumPy's OpenBLAS thread count, or None."""
    with _lock:
        if not _state["searched"]:
            _state["searched"] = True
            for path in _candidate_libraries():
                try:
                    lib = ctypes.CDLL(path)
                except OSError:
                    continue
                for get_name, set_name in _SYMBOLS:
                    getter = getattr(lib, get_name, None)
                    setter = getattr(lib, set_name, None)
                    if getter is not None and setter is not None:
                        getter.restype = ctypes.c_int
                        getter.argtypes = []
                        setter.restype = None
                        setter.argtypes = [ctypes.c_int]
                        _state["controls"] = (getter, setter)
                        _state["spin"] = _read_spin(lib)
                        break
                if _state["controls"] is not None:
                    break
        return _state["controls"]


def _read_spin(lib):
    """log2 of the cycles the helper threads busy-wait: OpenBLAS's value of
    ``OPENBLAS_THREAD_TIMEOUT`` as read at load, clamped like OpenBLAS does (4..30), or
    the default when it was unset; None when the library does not tell."""
    reader = getattr(lib, "openblas_thread_timeout", None)
    if reader is None:
        return None
    reader.restype = ctypes.c_int
    reader.argtypes = []
    value = int(reader())
    return DEFAULT_SPIN_LOG2 if value <= 0 else min(max(value, 4), 30)


def spin_log2():
    """log2 of the cycles NumPy's OpenBLAS threads busy-wait after a call, or None when
    unknown (no OpenBLAS controls found)."""
    _controls()
    return _state["spin"]


def cooperative() -> bool:
    """True when Python threads may run their own GEMMs side by side: the thread count can
    be set (:func:`available`) and OpenBLAS's helper threads spin at most
    ``2**MAX_SPIN_LOG2`` cycles after a call (see the module docstring)."""
    if not available():
        return False
    spin = spin_log2()
    return spin is not None and spin <= MAX_SPIN_LOG2


def available() -> bool:
    """True when NumPy's BLAS thread count can be set (NumPy's bundled OpenBLAS)."""
    return _controls() is not None


def get_num_threads():
    """NumPy's current OpenBLAS thread count, or None when it cannot be read."""
    controls = _controls()
    return None if controls is None else int(controls[0]())


@contextlib.contextmanager
def single_threaded_blas():
    """Context manager: NumPy's OpenBLAS uses one thread inside the block.

    Yields True when the count was set (or already is 1 from an enclosing use), False when
    no control is available (then nothing changes). Restores the count on exit, also on
    error. Cost: two library calls.
    """
    controls = _controls()
    if controls is None:
        yield False
        return
    getter, setter = controls
    with _lock:
        if _state["depth"] == 0:
            _state["saved"] = int(getter())
            if _state["saved"] != 1:
                setter(1)
        _state["depth"] += 1
    try:
        yield True
    finally:
        with _lock:
            _state["depth"] -= 1
            if _state["depth"] == 0 and _state["saved"] not in (None, 1):
                setter(_state["saved"])
