"""Readers for the on-disk text dataset formats (plain or gzip-compressed).

* :func:`read_tsv` -- ``label<TAB>text`` classification files (SST, MR, IMDB
  in ``/work/shared/data`` layout; see the data README).
* :func:`read_lm_tokens` -- one sentence per line, whitespace-tokenized
  (Penn Treebank ``ptb.*.txt``), with ``<eos>`` appended per line.
* :func:`read_aclimdb` -- the original IMDB ``aclImdb`` directory tree, or the
  ``aclImdb_v1.tar.gz`` tarball read in place with :mod:`tarfile`.

Gzip is detected from the file's magic bytes (``1f 8b``), not its name, without
seeking, so pipes and ``/dev/stdin`` can be read. Line ends are ``\\n``, ``\\r\\n``
or ``\\r`` (as in Python's text mode) and a UTF-8 byte-order mark at the start is
dropped. Malformed input raises ``ValueError`` naming the file and the 1-based
line number; nothing is skipped silently.
"""

from __future__ import annotations

import gzip
import os
import re
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path

__all__ = ["read_tsv", "read_lm_tokens", "read_aclimdb", "MAX_CLASSES"]

#: :func:`read_tsv` accepts labels ``0 .. MAX_CLASSES - 1``: a stray huge label would
#: otherwise build a classifier with that many outputs (or overflow int64)
MAX_CLASSES = 10_000

_GZIP_MAGIC = b"\x1f\x8b"
_LABEL = re.compile(r"[+-]?\d+")


def _as_path(path, where: str) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{where}: path must be a str or os.PathLike, got {type(path).__name__}")
    return Path(path)


def _iter_lines(path: Path, where: str) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, decoded_line_without_line_end)``; errors name file and line.

    Line ends are ``\\r\\n``, ``\\r`` or ``\\n`` (Python's universal newlines); a UTF-8
    byte-order mark at the start of the file is dropped. Gzip is sniffed with ``peek``, so
    non-seekable files (pipes, ``/dev/stdin``) work too.
    """
    raw = open(path, "rb")
    try:
        stream = gzip.GzipFile(fileobj=raw, mode="rb") if raw.peek(2)[:2] == _GZIP_MAGIC else raw
        lineno = 0
        try:
            for line in stream:  # split at b"\n" only: a "\r" inside is a line end of its own
                try:
                    text = line.decode("utf-8")
                except UnicodeDecodeError as e:
                    start = line.rfind(b"\r", 0, e.start) + 1  # of the line (a CR-only file is one chunk)
                    bad = lineno + 1 + line.count(b"\r", 0, start)
                    raise ValueError(f"{where}: {path}, line {bad}: "
                                     f"invalid UTF-8 ({e.reason} at byte {e.start - start})") from None
                if lineno == 0 and text.startswith("\ufeff"):
                    text = text[1:]
                if text.endswith("\n"):
                    text = text[:-1]
                if text.endswith("\r"):
                    text = text[:-1]
                for part in text.split("\r") if "\r" in text else (text,):
                    lineno += 1
                    yield lineno, part
        except (OSError, EOFError, zlib.error) as e:
            raise ValueError(f"{where}: {path}: corrupt or truncated gzip data after line {lineno} ({e})") from e
    finally:
        raw.close()


def read_tsv(path: str | os.PathLike) -> tuple[list[str], list[int]]:
    """Read a ``label<TAB>text`` file, plain or gzip-compressed.

    Parameters
    ----------
    path : str or PathLike
        UTF-8 file with one example per line: an integer label in
        ``0 .. MAX_CLASSES - 1`` (``MAX_CLASSES`` = 10,000), one tab, the text
        (which is kept as is, tabs after the first one included). Line endings
        ``\\n``, ``\\r\\n`` or ``\\r``; a leading UTF-8 byte-order mark is dropped;
        blank lines at the end are ignored. Pipes and other non-seekable files work.

    Returns
    -------
    (texts, labels) : (list[str], list[int])

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        For a line without a tab, a label that is not an integer in
        ``0 .. MAX_CLASSES - 1``, invalid UTF-8, a blank line followed by more
        data, or corrupt gzip data; the message names the file and the 1-based
        line number.
    """
    path = _as_path(path, "read_tsv")
    texts: list[str] = []
    labels: list[int] = []
    first_blank = None
    for lineno, line in _iter_lines(path, "read_tsv"):
        if not line.strip():
            if first_blank is None:
                first_blank = lineno
            continue
        if first_blank is not None:
            raise ValueError(f"read_tsv: {path}, line {first_blank}: blank line inside the data "
                             f"(expected 'label<TAB>text')")
        label, sep, text = line.partition("\t")
        if not sep:
            raise ValueError(f"read_tsv: {path}, line {lineno}: no tab character (expected 'label<TAB>text'), "
                             f"got {line[:60]!r}")
        label = label.strip()
        if not _LABEL.fullmatch(label):
            raise ValueError(f"read_tsv: {path}, line {lineno}: label must be an integer, got {label[:30]!r}")
        # (int() of a digit string longer than 4300 characters is itself a ValueError)
        value = int(label) if len(label.lstrip("+-0")) <= len(str(MAX_CLASSES)) else MAX_CLASSES
        if not 0 <= value < MAX_CLASSES:
            raise ValueError(f"read_tsv: {path}, line {lineno}: label must be an integer in 0..{MAX_CLASSES - 1} "
                             f"(at most MAX_CLASSES = {MAX_CLASSES:,} classes), got {label[:30]!r}")
        labels.append(value)
        texts.append(text)
    return texts, labels


def read_lm_tokens(path: str | os.PathLike, eos: str | None = "<eos>") -> list[str]:
    """Read a whitespace-tokenized language-modelling file (e.g. PTB), plain or gzip.

    Each line is split on whitespace and followed by ``eos`` (the standard PTB
    convention: the line end is a token; an empty line contributes just
    ``eos``). ``eos=None`` adds nothing. Tokens are not lowercased. Line ends
    ``\\n``, ``\\r\\n`` or ``\\r``; a leading UTF-8 byte-order mark is dropped.
    Invalid UTF-8 raises ``ValueError`` naming the file and line.
    """
    path = _as_path(path, "read_lm_tokens")
    if eos is not None and not isinstance(eos, str):
        raise TypeError(f"read_lm_tokens: eos must be a str or None, got {eos!r}")
    tokens: list[str] = []
    for _, line in _iter_lines(path, "read_lm_tokens"):
        tokens.extend(line.split())
        if eos is not None:
            tokens.append(eos)
    return tokens


# ------------------------------------------------------------------- aclImdb
_ACL_MEMBER = re.compile(r"(?:^|/)(train|test)/(pos|neg)/([^/]+)\.txt$")
_ACL_LABELS = {"neg": 0, "pos": 1}
_LINE_BREAKS = re.compile(r"[\t\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


def _acl_sort_key(label: str, stem: str):
    head = stem.split("_", 1)[0]
    return (_ACL_LABELS[label], 0, int(head), stem) if head.isdigit() else (_ACL_LABELS[label], 1, 0, stem)


def _acl_clean(raw: bytes, where: str) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"read_aclimdb: {where}: invalid UTF-8 ({e.reason} at byte {e.start})") from None
    return _LINE_BREAKS.sub(" ", text).strip()


def read_aclimdb(
    path: str | os.PathLike,
    splits: tuple[str, ...] = ("train", "test"),
) -> dict[str, tuple[list[str], list[int]]]:
    """Read the IMDB Large Movie Review dataset in its original layout.

    Parameters
    ----------
    path : str or PathLike
        Either the ``aclImdb`` directory (holding ``train/pos``, ``train/neg``,
        ``test/pos``, ``test/neg`` with ``<id>_<rating>.txt`` files), a
        directory containing ``aclImdb/``, or the ``aclImdb_v1.tar.gz`` (or
        ``.tar``) archive, which is read in place without extracting.
        ``train/unsup`` is ignored.
    splits : tuple of str
        Which of ``"train"``, ``"test"`` to read.

    Returns
    -------
    dict
        ``{split: (texts, labels)}`` with label ``neg`` = 0, ``pos`` = 1; order:
        all ``neg`` files by ascending numeric id, then all ``pos`` files (the
        order of ``/work/shared/data/imdb``). Tabs, line breaks and U+0085 in
        a review are replaced by a space and the text is stripped, so the
        result can be written as TSV. HTML such as ``<br />`` is kept
        (:func:`tokenize` removes it).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist or a directory lacks ``<split>/pos|neg``.
    ValueError
        For an unreadable archive, a split with no reviews in the archive, or
        a review that is not valid UTF-8 (the message names the file).
    """
    path = _as_path(path, "read_aclimdb")
    if isinstance(splits, str) or not all(isinstance(s, str) for s in splits) \
            or not set(splits) <= {"train", "test"} or len(set(splits)) != len(tuple(splits)):
        raise ValueError(f"read_aclimdb: splits must be a tuple of distinct 'train'/'test', got {splits!r}")
    if not path.exists():
        raise FileNotFoundError(f"read_aclimdb: {path} does not exist (expected the aclImdb directory "
                                f"or aclImdb_v1.tar.gz)")
    found: dict[str, list[tuple[tuple, str]]] = {s: [] for s in splits}
    if path.is_dir():
        root = path / "aclImdb" if (path / "aclImdb").is_dir() and not (path / "train").is_dir() else path
        for s in splits:
            for label in ("neg", "pos"):
                d = root / s / label
                if not d.is_dir():
                    raise FileNotFoundError(f"read_aclimdb: missing directory {d} (expected the aclImdb layout "
                                            f"train|test/pos|neg/<id>_<rating>.txt)")
                for f in d.iterdir():
                    if f.suffix == ".txt" and f.is_file():
                        found[s].append((_acl_sort_key(label, f.stem), _acl_clean(f.read_bytes(), str(f))))
    else:
        try:
            tar = tarfile.open(path, mode="r:*")
        except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
            raise ValueError(f"read_aclimdb: {path} is neither a directory nor a readable tar archive ({e})") from e
        try:
            with tar:
                for member in tar:
                    if not member.isfile():
                        continue
                    m = _ACL_MEMBER.search(member.name)
                    if not m or m.group(1) not in found:
                        continue
                    split, label, stem = m.groups()
                    fobj = tar.extractfile(member)
                    raw = fobj.read() if fobj is not None else b""
                    found[split].append((_acl_sort_key(label, stem), _acl_clean(raw, f"{path}:{member.name}")))
        except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
            raise ValueError(f"read_aclimdb: {path}: corrupt or truncated archive ({e})") from e
        for s in splits:
            if not found[s]:
                raise ValueError(f"read_aclimdb: {path} contains no {s}/pos or {s}/neg reviews "
                                 f"(expected members like aclImdb/{s}/pos/0_9.txt)")
    out = {}
    for s in splits:
        items = sorted(found[s], key=lambda kv: kv[0])
        out[s] = ([t for _, t in items], [k[0] for k, _ in items])
    return out
