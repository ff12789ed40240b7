"""A language-modelling corpus built from Python's own documentation.

:func:`load_embedded_corpus` needs no download: it collects

* every topic of ``pydoc_data.topics.topics`` (the language reference text
  behind ``help("if")`` etc.), and
* the docstrings of a fixed list of standard-library modules
  (:data:`STDLIB_MODULES`): the module docstring, and the docstrings of the
  classes and functions defined in the module and of the methods defined in
  those classes (walked in sorted name order),

tokenizes each document with :func:`tinytt.data.tokenize`, appends ``<eos>``
to each document, and splits documents 90/5/5 into train/valid/test by a
stable hash of the document key (``zlib.crc32(key) % 20``: 0 -> test,
1 -> valid, else train). The key is ``"topic:<name>"`` or
``"<module>:<qualname>"``; identical docstrings are kept once (first key).

The module list avoids modules with import side effects (``antigravity``,
``this``), GUI and test packages (``tkinter``, ``turtle``, ``idlelib``,
``test``), modules deprecated for removal and platform-only modules. Imports
happen with warnings silenced and stdout/stderr swallowed; a module that fails
to import is skipped, so the corpus is deterministic for a given Python
version and platform. It is about half a million tokens (see
:func:`corpus_stats`); building takes about a second and the result is cached
in memory per process (the returned lists are copies).
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import io
import warnings
import zlib

from .tokenizer import tokenize

__all__ = ["STDLIB_MODULES", "EOS", "load_embedded_corpus", "embedded_documents", "corpus_stats"]

EOS = "<eos>"

#: Standard-library modules whose docstrings enter the corpus (pure-Python or
#: always-built modules, available on every CPython 3.10+ build).
STDLIB_MODULES: tuple[str, ...] = (
    "abc", "argparse", "ast", "asyncio.base_events", "asyncio.events", "asyncio.futures", "asyncio.locks",
    "asyncio.queues", "asyncio.streams", "asyncio.subprocess", "asyncio.tasks", "base64", "bdb", "binascii",
    "bisect", "builtins", "calendar", "cmath", "cmd", "code", "codecs", "codeop", "collections", "collections.abc",
    "colorsys", "compileall", "concurrent.futures", "concurrent.futures._base", "concurrent.futures.process",
    "concurrent.futures.thread", "configparser", "contextlib", "contextvars", "copy", "copyreg", "csv",
    "dataclasses", "datetime", "decimal", "difflib", "dis", "doctest", "email", "email.charset", "email.contentmanager",
    "email.encoders", "email.feedparser", "email.generator", "email.header", "email.headerregistry",
    "email.iterators", "email.message", "email.mime.base", "email.mime.multipart", "email.mime.text",
    "email.parser", "email.policy", "email.utils", "encodings", "enum", "errno", "faulthandler", "filecmp",
    "fileinput", "fnmatch", "fractions", "ftplib", "functools", "gc", "genericpath", "getopt", "getpass",
    "gettext", "glob", "graphlib", "gzip", "hashlib", "heapq", "hmac", "html", "html.entities", "html.parser",
    "http", "http.client", "http.cookiejar", "http.cookies", "http.server", "imaplib", "importlib",
    "importlib.abc", "importlib.machinery", "importlib.metadata", "importlib.resources", "importlib.util",
    "inspect", "io", "ipaddress", "itertools", "json", "json.decoder", "json.encoder", "json.scanner",
    "keyword", "linecache", "locale", "logging", "logging.config", "logging.handlers", "mailbox", "marshal",
    "math", "mimetypes", "modulefinder", "multiprocessing", "multiprocessing.connection",
    "multiprocessing.context", "multiprocessing.managers", "multiprocessing.pool", "multiprocessing.process",
    "multiprocessing.queues", "multiprocessing.shared_memory", "multiprocessing.synchronize", "netrc",
    "ntpath", "numbers", "opcode", "operator", "optparse", "os", "pathlib", "pdb", "pickle", "pickletools",
    "pkgutil", "platform", "plistlib", "poplib", "posixpath", "pprint", "profile", "pstats", "py_compile",
    "pyclbr", "pydoc", "queue", "quopri", "random", "re", "reprlib", "runpy", "sched", "secrets",
    "selectors", "shelve", "shlex", "shutil", "signal", "site", "smtplib", "socket", "socketserver",
    "stat", "statistics", "string", "stringprep", "struct", "subprocess", "symtable", "sys", "sysconfig",
    "tabnanny", "tarfile", "tempfile", "textwrap", "threading", "time", "timeit", "token", "tokenize",
    "trace", "traceback", "tracemalloc", "types", "typing", "unicodedata", "unittest", "unittest.case",
    "unittest.loader", "unittest.main", "unittest.mock", "unittest.result", "unittest.runner",
    "unittest.suite", "urllib.error", "urllib.parse", "urllib.request", "urllib.response",
    "urllib.robotparser", "uuid", "warnings", "weakref", "wsgiref.handlers", "wsgiref.headers",
    "wsgiref.simple_server", "wsgiref.util", "wsgiref.validate", "xml.dom", "xml.dom.minidom",
    "xml.dom.pulldom", "xml.etree.ElementTree", "xml.sax", "xml.sax.handler", "xml.sax.saxutils",
    "xml.sax.xmlreader", "xmlrpc.client", "xmlrpc.server", "zipapp", "zipfile", "zipimport", "zlib",
    "zoneinfo",
)

_CACHE: dict[str, object] = {}


def _import_quietly(name: str):
    sink = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        warnings.simplefilter("ignore")
        try:
            return importlib.import_module(name)
        except Exception:  # noqa: BLE001 - any failure means "skip this module"
            return None


def _docstrings(module) -> list[tuple[str, str]]:
    """(qualname, doc) pairs for a module, its classes/functions and their methods, sorted by name."""
    out = []
    mname = module.__name__
    doc = module.__doc__
    if isinstance(doc, str):
        out.append(("", doc))
    for name in sorted(vars(module)):
        obj = vars(module)[name]
        if not (inspect.isclass(obj) or inspect.isroutine(obj)):
            continue
        if getattr(obj, "__module__", None) != mname or getattr(obj, "__name__", None) != name:
            continue  # re-exports and aliases
        d = getattr(obj, "__doc__", None)
        if isinstance(d, str):
            out.append((name, d))
        if inspect.isclass(obj):
            members = vars(obj)
            for attr in sorted(members):
                member = members[attr]
                if isinstance(member, (staticmethod, classmethod)):
                    member = member.__func__
                if isinstance(member, property):
                    member = member.fget
                if not inspect.isroutine(member):
                    continue
                d = getattr(member, "__doc__", None)
                if isinstance(d, str):
                    out.append((f"{name}.{attr}", d))
    return out


def embedded_documents() -> list[tuple[str, str]]:
    """All ``(key, text)`` documents of the corpus, in build order (see module docstring).

    Texts are cleaned with :func:`inspect.cleandoc`; empty and repeated
    docstrings are dropped. Cost: imports the modules of :data:`STDLIB_MODULES`
    once (about a second on first call).
    """
    import pydoc_data.topics as topics_mod

    docs: list[tuple[str, str]] = []
    seen: set[str] = set()

    def add(key: str, text: str) -> None:
        text = inspect.cleandoc(text)
        if text and text not in seen:
            seen.add(text)
            docs.append((key, text))

    topics = topics_mod.topics
    for name in sorted(topics):
        add(f"topic:{name}", topics[name])
    for mod_name in STDLIB_MODULES:
        module = _import_quietly(mod_name)
        if module is None:
            continue
        for qual, text in _docstrings(module):
            add(f"{mod_name}:{qual}", text)
    return docs


def _split_of(key: str) -> str:
    r = zlib.crc32(key.encode("utf-8")) % 20
    return "test" if r == 0 else "valid" if r == 1 else "train"


def _build() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {"train": [], "valid": [], "test": []}
    for key, text in embedded_documents():
        toks = out[_split_of(key)]
        toks.extend(tokenize(text))
        toks.append(EOS)
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
    where ``types`` counts distinct tokens over all splits.
    """
    corpus = load_embedded_corpus() if corpus is None else corpus
    stats = {f"{k}_tokens": len(v) for k, v in corpus.items()}
    stats["tokens"] = sum(len(v) for v in corpus.values())
    stats["types"] = len(set().union(*map(set, corpus.values())))
    return stats
