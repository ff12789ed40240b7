"""Collect the docstring documents of the embedded corpus (standard library only).

This module imports nothing from tinytt so it can run as a script in a fresh,
isolated interpreter (``python -I -S _stdlib_docs.py`` prints the documents as
JSON): :func:`tinytt.data.corpus.embedded_documents` does that so the result
does not depend on what the calling process has imported or monkeypatched
(e.g. ``functools.total_ordering`` renames shared helper functions, and
``typing_extensions`` replaces private ``typing`` helpers).
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import io
import json
import sys
import warnings

__all__ = ["STDLIB_MODULES", "collect_documents"]

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
    # more submodules
    "asyncio.base_futures", "asyncio.base_subprocess", "asyncio.coroutines", "asyncio.exceptions",
    "asyncio.format_helpers", "asyncio.protocols", "asyncio.runners", "asyncio.selector_events",
    "asyncio.staggered", "asyncio.taskgroups", "asyncio.timeouts", "asyncio.transports", "asyncio.trsock",
    "dbm", "dbm.dumb", "email._encoded_words", "email._header_value_parser", "email._parseaddr",
    "email._policybase", "email.base64mime", "email.quoprimime", "encodings.idna", "encodings.punycode",
    "importlib._bootstrap", "importlib._bootstrap_external", "multiprocessing.heap", "multiprocessing.reduction",
    "multiprocessing.resource_tracker", "multiprocessing.util", "unittest.async_case", "unittest.util",
    "xml.dom.expatbuilder", "xml.dom.minicompat", "xml.etree.ElementPath", "xml.parsers.expat",
    "xml.sax._exceptions", "xml.sax.expatreader", "array", "atexit", "bz2", "cProfile", "fcntl", "lzma",
    "mmap", "posix", "select", "termios", "tomllib", "wave",
    # pure-Python twins and C accelerators of public modules (their docstrings differ or add detail)
    "_collections_abc", "_pydecimal", "_pyio", "_strptime", "_abc", "_ast", "_asyncio", "_bisect",
    "_codecs", "_collections", "_contextvars", "_csv", "_datetime", "_decimal", "_functools", "_heapq",
    "_imp", "_io", "_json", "_locale", "_lsprof", "_operator", "_pickle", "_queue", "_random", "_signal",
    "_socket", "_sre", "_statistics", "_string", "_struct", "_thread", "_tracemalloc", "_warnings",
    "_weakref", "_zoneinfo",
)

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


def collect_documents() -> list[tuple[str, str]]:
    """All ``(key, text)`` documents: pydoc topics (sorted), then module docstrings in list order.

    Texts are cleaned with :func:`inspect.cleandoc`; empty and repeated texts
    are dropped (the first key wins).
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


if __name__ == "__main__":
    _docs = collect_documents()
    sys.stdout.write(json.dumps({"python": sys.version, "documents": _docs}, ensure_ascii=True))
