"""Opt-in tuning of the C allocator for training loops (glibc only).

A training step allocates and frees the same large arrays (tens of MB) every step.
With glibc's default settings, freeing them can shrink the heap, so the next step's
arrays land on fresh pages and every 4 KiB page is faulted in again. On the project's
benchmark VM a minor page fault costs about 4.5 us: the MLP + TT-embedding step of
``benchmarks/train_step.py`` faulted 4,600 pages (18 MiB) per step, 60 ms per step
against 38 ms without the faults.

``keep_freed_memory(pad)`` calls ``mallopt(M_TOP_PAD, pad)`` and
``mallopt(M_TRIM_THRESHOLD, max(pad, 128 KiB))``: the heap then keeps up to ``pad`` bytes of
freed memory instead of returning it to the OS, so steady-state steps reuse pages that are
already mapped. Any of these ``mallopt`` settings also switches off glibc's *dynamic* mmap
threshold (which otherwise rises to the size of the largest array freed, up to 32 MiB),
leaving it at 128 KiB: every array above 128 KiB would then be a fresh ``mmap`` whose pages
fault in on every step (measured: the dense MLP step went from 0 to 3,483 faults and
32.8 -> 41.6 ms). So it also sets ``M_MMAP_THRESHOLD`` to 32 MiB (the dynamic threshold's own
ceiling on 64-bit, accepted by every glibc build): arrays up to that size come from the kept
heap (both MLP steps then fault <= 62 pages per step). It changes nothing about results,
only how much memory the process holds (up to ``pad`` more). It is process-wide, so the library never
calls it on import; the ``tinytt`` command calls it for ``train`` and ``demo`` (set
``TINYTT_KEEP_FREED_MEMORY=0`` to skip that).
"""

from __future__ import annotations

import ctypes
import os
import sys

from ._validate import as_int

__all__ = ["keep_freed_memory", "kept_bytes"]

_M_TRIM_THRESHOLD = -1   # glibc <malloc.h>
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
#: 32 MiB is the dynamic threshold's ceiling on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX); smaller
#: ones are tried in turn where a build rejects it (32-bit)
_MMAP_THRESHOLDS = (32 << 20, 16 << 20, 4 << 20, 512 << 10)
_state = {"pad": None}


def keep_freed_memory(pad_bytes: int = 256 << 20) -> bool:
    """Ask glibc's malloc to keep up to ``pad_bytes`` of freed heap memory mapped.

    Args:
        pad_bytes: int >= 0 (0: no padding; glibc's own default is 128 KiB).
    Returns:
        True when the setting was applied, False where it does not exist (not Linux/glibc).
    Raises:
        TypeError / ValueError for a pad that is not a non-negative int below 2**31.
    Cost: one C call; afterwards the process may hold up to ``pad_bytes`` more memory.
    """
    pad_bytes = as_int(pad_bytes)
    if pad_bytes is None:
        raise TypeError("keep_freed_memory: pad_bytes must be an int")
    if not 0 <= pad_bytes < 1 << 31:
        raise ValueError(f"keep_freed_memory: pad_bytes must lie in [0, 2**31), got {pad_bytes}")
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl without mallopt)
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    ok = bool(mallopt(_M_TOP_PAD, pad_bytes))
    if ok:
        mallopt(_M_TRIM_THRESHOLD, max(pad_bytes, 128 << 10))
        # M_TOP_PAD froze the mmap threshold at 128 KiB: raise it, or every larger array
        # is a fresh mapping again (see the module docstring)
        for threshold in _MMAP_THRESHOLDS:
            if mallopt(_M_MMAP_THRESHOLD, threshold):
                break
        _state["pad"] = pad_bytes
    return ok


def kept_bytes():
    """The pad set by ``keep_freed_memory`` in this process (or from ``MALLOC_TOP_PAD_`` in
    the environment), or None when glibc's default applies."""
    if _state["pad"] is not None:
        return _state["pad"]
    env = os.environ.get("MALLOC_TOP_PAD_")
    try:
        return int(env) if env is not None else None
    except ValueError:
        return None
