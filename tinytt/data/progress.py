"""Progress reporting without hard dependencies.

:func:`progress` wraps an iterable, :class:`ProgressBar` is updated by hand
(e.g. per downloaded chunk). The display is chosen per stream:

* stream is a TTY and ``tqdm`` is importable: a ``tqdm`` bar;
* stream is a TTY, no ``tqdm``: a small built-in one-line bar redrawn with ``\\r``;
* stream is not a TTY (log file, CI, pipe): plain lines, at most one every
  ``min_interval`` seconds, plus one final line.

``disable=True`` turns reporting off; ``disable=None``/``False`` means on.
The stream defaults to ``sys.stderr``.
"""

from __future__ import annotations

import numbers
import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, TypeVar

try:  # optional dependency
    from tqdm import tqdm as _tqdm
except ImportError:  # pragma: no cover - depends on the environment
    _tqdm = None

__all__ = ["progress", "ProgressBar"]

T = TypeVar("T")


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _fmt_num(n: float, unit: str) -> str:
    if unit == "B":
        for u in ("B", "KiB", "MiB", "GiB"):
            if abs(n) < 1024 or u == "GiB":
                return f"{n:.0f} {u}" if u == "B" else f"{n:.1f} {u}"
            n /= 1024
    return f"{int(n)}"


class ProgressBar:
    """A progress display updated with :meth:`update`; usable as a context manager.

    Parameters
    ----------
    total : int or None
        Expected number of units (``None`` if unknown: no percentage shown).
    desc : str
        Label printed before the counts.
    disable : bool or None
        ``True`` shows nothing.
    unit : str
        ``"it"`` (default) or ``"B"`` (counts printed as KiB/MiB).
    file : text stream or None
        Where to write (default ``sys.stderr``); the display mode depends on
        ``file.isatty()`` (see module docstring).
    min_interval : float
        Minimum seconds between two plain lines (non-TTY mode); on a terminal the bar
        redraws at most every ``min(min_interval, 0.1)`` seconds.

    ``total`` must be None or a finite number >= 0 and ``min_interval`` a number >= 0 (ValueError
    naming the argument otherwise).
    """

    def __init__(
        self,
        total: int | None = None,
        desc: str = "",
        disable: bool | None = None,
        unit: str = "it",
        file: IO[str] | None = None,
        min_interval: float = 5.0,
    ):
        if total is not None and (isinstance(total, bool) or not isinstance(total, numbers.Real)
                                  or not 0 <= total < float("inf")):
            raise ValueError(f"ProgressBar: total must be None or a number >= 0, got {total!r}")
        if isinstance(min_interval, bool) or not isinstance(min_interval, numbers.Real) or not min_interval >= 0:
            raise ValueError(f"ProgressBar: min_interval must be a number >= 0, got {min_interval!r}")
        self.total = total
        self.desc = desc or ""
        self.unit = unit
        self.n = 0
        self._file = sys.stderr if file is None else file
        self._disabled = bool(disable)
        self._start = time.monotonic()
        self._last = self._start
        self._closed = False
        self._tqdm = None
        self._tty = _isatty(self._file)
        self._min_interval = float(min_interval) if not self._tty else min(float(min_interval), 0.1)
        if not self._disabled and self._tty and _tqdm is not None:
            unit_kw = {"unit": "B", "unit_scale": True, "unit_divisor": 1024} if unit == "B" else {"unit": unit}
            self._tqdm = _tqdm(total=total, desc=self.desc or None, file=self._file, **unit_kw)

    # -------------------------------------------------------------- display
    def _text(self, final: bool = False) -> str:
        elapsed = time.monotonic() - self._start
        done = _fmt_num(self.n, self.unit)
        if self.total:
            frac = min(1.0, self.n / self.total)
            counts = f"{done}/{_fmt_num(self.total, self.unit)}"
            if self._tty:
                width = 24
                fill = int(round(frac * width))
                return f"{self.desc}: {frac:4.0%} |{'#' * fill}{'.' * (width - fill)}| {counts} [{elapsed:.1f}s]"
            return f"{self.desc}: {frac:.0%} ({counts}) [{elapsed:.1f}s]" + (" done" if final else "")
        return f"{self.desc}: {done} {self.unit if self.unit != 'B' else ''}".rstrip() + \
            f" [{elapsed:.1f}s]" + (" done" if final and not self._tty else "")

    def _emit(self, final: bool = False) -> None:
        text = self._text(final)
        if self._tty:
            self._file.write("\r" + text + ("\n" if final else ""))
        else:
            self._file.write(text + "\n")
        self._file.flush()

    # -------------------------------------------------------------- updates
    def update(self, n: int = 1) -> None:
        """Advance by ``n`` units."""
        if self._disabled or self._closed:
            return
        self.n += n
        if self._tqdm is not None:
            self._tqdm.update(n)
            return
        now = time.monotonic()
        if now - self._last >= self._min_interval:
            self._last = now
            self._emit()

    def close(self) -> None:
        """Finish the display (prints the final line); idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._disabled:
            return
        if self._tqdm is not None:
            self._tqdm.close()
        else:
            self._emit(final=True)

    def __enter__(self) -> "ProgressBar":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress(
    iterable: Iterable[T],
    total: int | None = None,
    desc: str = "",
    disable: bool | None = None,
    unit: str = "it",
    file: IO[str] | None = None,
    min_interval: float = 5.0,
) -> Iterator[T]:
    """Yield the items of ``iterable`` while showing progress.

    ``total`` defaults to ``len(iterable)`` when available. Other arguments as
    for :class:`ProgressBar`. The display is closed when the loop ends, breaks
    or raises.
    """
    if total is None:
        try:
            total = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            total = None
    if disable:
        yield from iterable
        return
    bar = ProgressBar(total=total, desc=desc, disable=disable, unit=unit, file=file, min_interval=min_interval)
    try:
        for item in iterable:
            yield item
            bar.update(1)
    finally:
        bar.close()
