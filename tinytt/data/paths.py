"""Where datasets live on disk.

The data root is, in order of precedence:

1. the ``data_dir`` argument of a loader;
2. the environment variable ``TINYTT_DATA``;
3. ``$XDG_CACHE_HOME/tinytt/data`` (default ``~/.cache/tinytt/data``), where
   ``download=True`` puts files when nothing else is configured.

Below the root each dataset has its own directory (``sst2/``, ``ptb/``...), as
in ``/work/shared/data`` (see its README).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DATA_ENV_VAR", "data_root", "default_cache_dir"]

DATA_ENV_VAR = "TINYTT_DATA"


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/tinytt/data``, or ``~/.cache/tinytt/data`` (not created)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "tinytt" / "data"


def data_root(data_dir: str | os.PathLike | None = None) -> Path:
    """Resolve the data root: ``data_dir``, else ``$TINYTT_DATA``, else :func:`default_cache_dir`.

    The directory is not required to exist. Raises ``TypeError`` if
    ``data_dir`` is neither ``None``, ``str`` nor ``os.PathLike``.
    """
    if data_dir is not None:
        if not isinstance(data_dir, (str, os.PathLike)):
            raise TypeError(f"data_dir must be None, a str or os.PathLike, got {type(data_dir).__name__}")
        return Path(data_dir).expanduser()
    env = os.environ.get(DATA_ENV_VAR)
    if env:
        return Path(env).expanduser()
    return default_cache_dir()
