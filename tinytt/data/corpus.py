"""A language-modelling corpus built from Python's own documentation.

:func:`load_embedded_corpus` needs no download: it collects

* every topic of ``pydoc_data.topics.topics`` (the language reference text
  behind ``help("if")`` etc.), and
* the docstrings of a fixed list of standard-library modules
  (:data:`STDLIB_MODULES`): the module docstring, and the docstrings of the
  classes and functions defined in the module and of the methods defined in
  those classes (walked in sorted name order),

tokenizes each document with :func:`tinytt.data.tokenize`, cuts documents
longer than about 1,000 tokens at paragraph boundaries into parts of at least
1,000 tokens (so a few long pydoc topics don't unbalance the split), appends
``<eos>`` to each part, and assigns parts 90/5/5 to train/valid/test by a
stable hash of the part key (``zlib.crc32(key) % 20``: 0 -> test, 1 -> valid,
else train). The key is ``"topic:<name>"`` or ``"<module>:<qualname>"``, with
``"#<i>"`` appended for parts after the first; identical docstrings are kept
once (first key). Within a split, parts keep build order.

The module list avoids modules with import side effects (``antigravity``,
``this``), GUI and test packages (``tkinter``, ``turtle``, ``idlelib``,
``test``) and modules deprecated for removal. The modules are imported in a
separate, isolated interpreter (``python -I -S``, see
:mod:`tinytt.data._stdlib_docs`) with warnings silenced and output swallowed,
so the calling process is not affected and its own imports or monkeypatches
cannot change the result; a module that fails to import is skipped. The
corpus is therefore deterministic for a given Python version and platform.

Size on CPython 3.11 / Linux: about 398,000 tokens (352k / 22k / 23k) and
12,000 distinct tokens (see :func:`corpus_stats`). Building takes one to two
seconds; the result is cached in memory per process (callers get copies).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zlib
from pathlib import Path

from ._stdlib_docs import STDLIB_MODULES, collect_documents
from .tokenizer import tokenize

__all__ = ["STDLIB_MODULES", "EOS", "load_embedded_corpus", "embedded_documents", "corpus_stats"]

EOS = "<eos>"

_CACHE: dict[str, object] = {}
_CHUNK_TOKENS = 1000
_PARAGRAPH = re.compile(r"\n[ \t]*\n")


def embedded_documents() -> list[tuple[str, str]]:
    """All ``(key, text)`` documents of the corpus, in build order (see module docstring).

    The documents are collected by :mod:`tinytt.data._stdlib_docs` run in a
    fresh ``python -I -S`` subprocess, so they don't depend on modules the
    calling process imported or patched; if that subprocess cannot run, they
    are collected in-process instead (then the result may differ slightly).
    Texts are cleaned with :func:`inspect.cleandoc`; empty and repeated
    docstrings are dropped. Cost: about a second (cached in memory).
    """
    if "documents" not in _CACHE:
        _CACHE["documents"] = _collect_isolated()
    return list(_CACHE["documents"])  # type: ignore[arg-type]


def _collect_isolated() -> list[tuple[str, str]]:
    script = Path(__file__).with_name("_stdlib_docs.py")
    if sys.executable:
        try:
            res = subprocess.run([sys.executable, "-I", "-S", str(script)], capture_output=True, timeout=120,
                                 stdin=subprocess.DEVNULL, check=True)
            payload = json.loads(res.stdout.decode("ascii"))
            if payload.get("python") == sys.version:
                return [(k, t) for k, t in payload["documents"]]
        except (OSError, subprocess.SubprocessError, ValueError, KeyError, TypeError):
            pass
    return collect_documents()


def _split_of(key: str) -> str:
    r = zlib.crc32(key.encode("utf-8")) % 20
    return "test" if r == 0 else "valid" if r == 1 else "train"


def _chunks(text: str) -> list[list[str]]:
    """Tokenize ``text``; cut at paragraph ends into parts of >= ``_CHUNK_TOKENS`` tokens (the last may be shorter)."""
    parts: list[list[str]] = []
    cur: list[str] = []
    for para in _PARAGRAPH.split(text):
        cur.extend(tokenize(para))
        if len(cur) >= _CHUNK_TOKENS:
            parts.append(cur)
            cur = []
    if cur or not parts:
        parts.append(cur)
    return parts


def _build() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {"train": [], "valid": [], "test": []}
    for key, text in embedded_documents():
        for i, toks in enumerate(_chunks(text)):
            split = out[_split_of(key if i == 0 else f"{key}#{i}")]
            split.extend(toks)
            split.append(EOS)
    return out


def load_embedded_corpus() -> dict[str, list[str]]:
    """Language-modelling corpus from the Python standard library's documentation.

    Returns ``{"train": tokens, "valid": tokens, "test": tokens}``: lists of
    lowercase token strings (:func:`tinytt.data.tokenize` rules), each document
    followed by ``"<eos>"``; split about 90/5/5 by document (see module
    docstring). Deterministic for a given Python version and platform. The
    first call takes about a second; later calls return copies of the cached
    lists.
    """
    if "corpus" not in _CACHE:
        _CACHE["corpus"] = _build()
    corpus = _CACHE["corpus"]
    return {k: list(v) for k, v in corpus.items()}  # type: ignore[union-attr]


def corpus_stats(corpus: dict[str, list[str]] | None = None) -> dict[str, int]:
    """Token and type counts of a corpus dict (default: the embedded corpus).

    Returns ``{"train_tokens", "valid_tokens", "test_tokens", "tokens", "types"}``
    where ``types`` counts distinct tokens over all splits (a split the dict lacks counts
    0 tokens). TypeError for anything but a dict of token lists with those keys.
    """
    corpus = load_embedded_corpus() if corpus is None else corpus
    if not isinstance(corpus, dict) or not set(corpus) <= {"train", "valid", "test"} \
            or any(isinstance(v, (str, bytes)) for v in corpus.values()):
        raise TypeError("corpus_stats: corpus must be a dict of token lists with keys among 'train', 'valid', "
                        f"'test', got {type(corpus).__name__}")
    stats = {f"{k}_tokens": len(corpus.get(k, ())) for k in ("train", "valid", "test")}
    stats["tokens"] = sum(len(v) for v in corpus.values())
    stats["types"] = len(set().union(*map(set, corpus.values())))
    return stats
