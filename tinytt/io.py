"""Saving and loading state dicts: one ``.npz`` archive, written atomically, never pickled.

``save(obj, path)`` stores a nested structure of

- dicts with ``str`` keys (a key may not contain ``"/"``, the separator of the
  archive's entry names, nor a NUL character),
- lists and tuples (kept apart: a tuple loads back as a tuple),
- arrays: NumPy or CuPy ``ndarray`` of any dtype without Python objects (CuPy
  arrays are copied to the host with :func:`tinytt.backend.to_numpy`),
- NumPy scalars (``numpy.float32(1.5)``...; they load back as the same NumPy scalar type),
- Python scalars: ``int``, ``float`` (NaN and infinities included), ``bool``, ``str``, ``None``.

Layout of the archive (a plain zip of ``.npy`` members, readable by ``numpy.load``)::

    __tinytt__.npy          uint8 vector: UTF-8 JSON {"format": "tinytt.state", "version": 1,
                            "tree": <structure>}
    arrays/<k1>/<k2>/...npy one member per array, named by its path in the structure

In the JSON tree, scalars are JSON scalars; containers and arrays are one-key objects
``{"dict": [[key, node], ...]}``, ``{"list": [...]}``, ``{"tuple": [...]}``,
``{"array": member}`` and ``{"scalar": member}`` (a NumPy scalar stored as a 0-d array).
Arrays round-trip bit for bit with their dtype, byte order and shape (0-d and
zero-size included). Nothing is ever pickled: object arrays are refused when saving
and loading uses ``allow_pickle=False``.

The write is atomic: the archive goes to a temporary file in the target's
directory, is flushed and ``fsync``-ed, then ``os.replace``-d onto ``path``, so a
crash leaves either the old file or the new one, never half a checkpoint; the
temporary file is removed when anything fails. ``path`` is used exactly as given
(no ``.npz`` is appended); when it is a symbolic link, the file it points to is replaced
and the link kept.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import struct
import zipfile
import zlib

import numpy

from tinytt.backend import is_cupy_array, to_device, to_numpy

__all__ = ["save", "load", "FORMAT_NAME", "FORMAT_VERSION", "SEPARATOR"]

FORMAT_NAME = "tinytt.state"
FORMAT_VERSION = 1
SEPARATOR = "/"

_META = "__tinytt__"
_ARRAYS = "arrays"
_SCALARS = (bool, int, float, str, type(None))


#: a zip entry name holds at most 65,535 bytes; the member adds ".npy"
_MAX_MEMBER_BYTES = 65535 - 4
#: the temporary file's name is ".<name>.<12 hex digits>.tmp": the name part is cut so the
#: whole stays within the 255-byte file-name limit of common file systems
_TMP_NAME_BYTES = 255 - 18


def _utf8_ok(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _where(path: tuple) -> str:
    """Human-readable location of a node, e.g. ``obj['model']['w'][2]``."""
    return "obj" + "".join(f"[{p!r}]" for p in path)


def _member(path: tuple) -> str:
    return SEPARATOR.join((_ARRAYS,) + tuple(str(p) for p in path))


def _encode(obj, path: tuple, arrays: dict, active: set):
    """Turn ``obj`` into a JSON-able tree, collecting arrays into ``arrays`` (member -> ndarray)."""
    if isinstance(obj, numpy.ma.MaskedArray):
        raise TypeError(f"{_where(path)} is a masked array; tinytt.io.save would lose its mask: save "
                        "its .data and numpy.ma.getmaskarray(...) as two arrays instead")
    if isinstance(obj, numpy.generic) or isinstance(obj, numpy.ndarray) or is_cupy_array(obj):
        arr = to_numpy(obj)
        if arr.dtype.hasobject:
            raise TypeError(
                f"{_where(path)} is an array of dtype {arr.dtype} holding Python objects; "
                "tinytt.io.save stores only arrays of numbers, booleans, bytes or strings "
                "(it never pickles)"
            )
        name = _member(path)
        if len(name.encode("utf-8")) > _MAX_MEMBER_BYTES:
            where = _where(path)
            where = where if len(where) <= 200 else where[:200] + "..."
            raise ValueError(f"{where}: the keys leading to this array are too long for a zip entry name "
                             f"({len(name.encode('utf-8'))} bytes of UTF-8, at most {_MAX_MEMBER_BYTES})")
        arrays[name] = numpy.asarray(arr)
        return {"scalar" if isinstance(obj, numpy.generic) else "array": name}
    if isinstance(obj, _SCALARS):
        return obj  # json writes int/float/str subclasses (IntEnum...) as their base value
    if isinstance(obj, (dict, list, tuple)):
        if id(obj) in active:
            raise ValueError(f"{_where(path)} contains itself; tinytt.io.save needs a tree, not a cycle")
        active.add(id(obj))
        try:
            if isinstance(obj, dict):
                items = []
                for key, value in obj.items():
                    if not isinstance(key, str):
                        raise TypeError(
                            f"dict keys must be str, got {type(key).__name__} key {key!r} "
                            f"in {_where(path)}"
                        )
                    if not _utf8_ok(key):
                        raise ValueError(
                            f"dict key {key!r} in {_where(path)} is not valid Unicode (a lone surrogate, "
                            "as os.fsdecode gives for bytes that are not UTF-8); keys must encode as UTF-8"
                        )
                    if SEPARATOR in key or "\x00" in key:
                        raise ValueError(
                            f"dict key {key!r} in {_where(path)} contains {SEPARATOR!r} or a NUL "
                            f"character; keys may not contain {SEPARATOR!r} (the separator of the "
                            "archive's entry names) or NUL"
                        )
                    items.append([key, _encode(value, path + (key,), arrays, active)])
                return {"dict": items}
            tag = "list" if isinstance(obj, list) else "tuple"
            return {tag: [_encode(v, path + (i,), arrays, active) for i, v in enumerate(obj)]}
        finally:
            active.discard(id(obj))
    raise TypeError(
        f"{_where(path)} has unsupported type {type(obj).__module__}.{type(obj).__qualname__}; "
        "tinytt.io.save stores nested dicts (str keys), lists and tuples of arrays (NumPy or "
        "CuPy), NumPy scalars, int, float, bool, str and None"
    )


def save(obj, path) -> None:
    """Write ``obj`` (a nested dict/list/tuple of arrays and scalars) to ``path`` atomically.

    Args:
        obj: the structure to store, typically a state dict such as
            ``{"model": {"w": array (V, D)}, "optim": optimizer.state_dict(), "epoch": 3}``.
            Arrays may live on the GPU: they are copied to the host first.
        path: ``str`` or ``os.PathLike``; written exactly as given (no suffix added). Its
            directory must exist.

    Raises:
        TypeError: an unsupported value, a non-``str`` dict key, or an object array
            (the message names where in ``obj`` it is).
        ValueError: a dict key containing ``"/"`` or NUL or that is not valid Unicode, keys
            too long for a zip entry name (64 KiB), a structure containing itself, or one
            nested deeper than Python's recursion limit.
        FileNotFoundError: the directory of ``path`` does not exist.
        IsADirectoryError: ``path`` is a directory (nothing is written).

    Cost: one host copy of every CuPy array, plus writing the arrays' bytes (stored
    uncompressed) and one ``fsync``. The previous file at ``path``, if any, stays intact
    until the new one is complete.
    """
    try:
        path = os.fspath(path)
    except TypeError:
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}") from None
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if os.path.islink(path):
        # a link to a checkpoint stays a link: the new file replaces the link's target
        path = os.path.realpath(path)
    arrays: dict = {}
    try:
        tree = _encode(obj, (), arrays, set())  # all validation happens before touching the disk
        meta = json.dumps(
            {"format": FORMAT_NAME, "version": FORMAT_VERSION, "tree": tree},
            ensure_ascii=True,
            allow_nan=True,
        ).encode("ascii")
    except RecursionError:
        raise ValueError("obj is nested too deeply for tinytt.io.save (Python's recursion limit); "
                         "flatten the structure") from None

    if os.path.isdir(path):
        raise IsADirectoryError(f"cannot save to {path!r}: it is a directory; give a file path such as "
                                f"{os.path.join(path, 'checkpoint.npz')!r}")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"cannot save to {path!r}: directory {directory!r} does not exist")
    base = os.path.basename(path)
    # (cut by bytes; os.fsdecode keeps a cut multi-byte character as surrogate escapes,
    # which os.open turns back into the same bytes)
    base = os.fsdecode(os.fsencode(base)[:_TMP_NAME_BYTES])
    while True:
        tmp = os.path.join(directory, f".{base}.{secrets.token_hex(6)}.tmp")
        try:
            # mode 0o666 filtered by the umask, like an ordinary open(path, "wb")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        except FileExistsError:
            continue
        break
    try:
        with os.fdopen(fd, "wb") as f:
            with zipfile.ZipFile(f, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
                members = [(_META, numpy.frombuffer(meta, dtype=numpy.uint8))] + list(arrays.items())
                for name, arr in members:
                    with zf.open(name + ".npy", mode="w", force_zip64=True) as member:
                        numpy.lib.format.write_array(member, arr, allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_directory(directory)


def _fsync_directory(directory: str) -> None:
    """Make the rename durable (POSIX); silently skipped where directories cannot be opened."""
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


class _Corrupt(Exception):
    """Internal: the archive is readable as zip but its content is not a valid checkpoint."""


def _read_member(zf: zipfile.ZipFile, member: str):
    """One ``.npy`` member as an array, read to its end (so the zip's CRC is checked) and
    with its header checked against the member's size: a damaged header must not yield a
    shorter array, a huge allocation or a parser error (each raises _Corrupt)."""
    size = zf.getinfo(member).file_size
    with zf.open(member) as fh:
        try:
            version = numpy.lib.format.read_magic(fh)
            header = (numpy.lib.format.read_array_header_1_0 if version == (1, 0)
                      else numpy.lib.format.read_array_header_2_0)(fh)
        except Exception as exc:  # noqa: BLE001 - ValueError, SyntaxError, tokenize.TokenError, ...
            raise _Corrupt(f"array member {member!r} has an unreadable header: {type(exc).__name__}: {exc}") \
                from None
        shape, _, dtype = header
        offset = fh.tell()
        if dtype.hasobject:
            raise _Corrupt(f"array member {member!r} holds Python objects (pickled data is never loaded)")
        expected = math.prod(shape) * dtype.itemsize
        if offset + expected != size:
            raise _Corrupt(f"array member {member!r}: its header says shape {shape} of {dtype} "
                           f"({expected} bytes) but it holds {size - offset}")
        fh.seek(0)
        arr = numpy.lib.format.read_array(fh, allow_pickle=False)
        if fh.read(1):
            raise _Corrupt(f"array member {member!r} has data past its array")
    return arr


def _decode(node, zf: zipfile.ZipFile, names: set, to_dev: bool):
    if node is None or isinstance(node, (bool, int, float, str)):
        return node
    if isinstance(node, dict) and len(node) == 1:
        (tag, value), = node.items()
        if tag == "dict" and isinstance(value, list):
            out = {}
            for item in value:
                if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)):
                    raise _Corrupt("malformed dict entry in the structure")
                out[item[0]] = _decode(item[1], zf, names, to_dev)
            return out
        if tag in ("list", "tuple") and isinstance(value, list):
            seq = [_decode(v, zf, names, to_dev) for v in value]
            return seq if tag == "list" else tuple(seq)
        if tag in ("array", "scalar") and isinstance(value, str):
            member = value + ".npy"
            if member not in names:
                raise _Corrupt(f"array member {member!r} is missing")
            arr = _read_member(zf, member)
            if tag == "scalar":
                if arr.ndim != 0:
                    raise _Corrupt(f"scalar member {member!r} is not 0-d")
                return arr[()]
            # only numeric and bool arrays of the dtypes CuPy has go to the device (no strings,
            # datetimes or long doubles there), in native byte order
            if not (to_dev and arr.dtype.kind in "biufc" and arr.dtype.char in "?bhilqBHILQefdFD"):
                return arr
            return to_device(arr if arr.dtype.isnative else arr.astype(arr.dtype.newbyteorder("=")))
    raise _Corrupt(f"unrecognised node {str(node)[:80]!r} in the structure")


def load(path, to_device: bool = False):
    """Read a structure written by :func:`save`.

    Args:
        path: ``str`` or ``os.PathLike`` of a file written by :func:`save`.
        to_device: when True, arrays are moved to the default backend
            (:func:`tinytt.backend.to_device`); by default they are NumPy arrays and the
            caller moves them. NumPy scalars always stay NumPy scalars.

    Returns:
        the structure as saved: dicts (key order kept), lists, tuples, arrays with
        their dtype and shape, NumPy scalars and Python scalars.

    Raises:
        FileNotFoundError: nothing at ``path``.
        ValueError: ``path`` is not a zip archive, is truncated or corrupted, is an
            ``.npz`` not written by tinytt, holds an object (pickled) array, or was written
            by a newer format version. The message names the path.
    """
    try:
        path = os.fspath(path)
    except TypeError:
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}") from None
    with open(path, "rb") as f:  # FileNotFoundError / IsADirectoryError / PermissionError as is
        try:
            zf = zipfile.ZipFile(f, mode="r")
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, struct.error) as exc:
            raise ValueError(
                f"{path!r} is not a tinytt checkpoint: not a readable .npz/zip archive "
                f"(truncated, corrupted, or another kind of file): {exc}"
            ) from exc
        with zf:
            names = set(zf.namelist())
            if _META + ".npy" not in names:
                raise ValueError(
                    f"{path!r} is a zip/.npz archive but not a tinytt checkpoint "
                    f"(no {_META!r} entry); it was not written by tinytt.io.save"
                )
            try:
                raw = _read_member(zf, _META + ".npy")
                if raw.dtype != numpy.uint8 or raw.ndim != 1:
                    raise _Corrupt(f"metadata entry has dtype {raw.dtype} and shape {raw.shape}")
                meta = json.loads(raw.tobytes().decode("utf-8"))
                if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
                    raise ValueError(
                        f"{path!r} is not a tinytt checkpoint (format "
                        f"{meta.get('format') if isinstance(meta, dict) else None!r}, "
                        f"expected {FORMAT_NAME!r})"
                    )
                version = meta.get("version")
                if not isinstance(version, int) or isinstance(version, bool) or version < 1:
                    raise _Corrupt(f"invalid format version {version!r}")
                if version > FORMAT_VERSION:
                    raise ValueError(
                        f"{path!r} was written in tinytt checkpoint format version {version}, "
                        f"newer than this tinytt reads ({FORMAT_VERSION}); upgrade tinytt to load it"
                    )
                if "tree" not in meta:
                    raise _Corrupt("metadata has no 'tree'")
                return _decode(meta["tree"], zf, names, to_device)
            except ValueError as exc:
                if str(exc).startswith(repr(path)):
                    raise
                raise ValueError(f"{path!r} is not a valid tinytt checkpoint: {exc}") from exc
            except (
                _Corrupt,
                zipfile.BadZipFile,
                EOFError,
                KeyError,
                UnicodeDecodeError,
                struct.error,
                zlib.error,
                NotImplementedError,
                RecursionError,
            ) as exc:
                raise ValueError(
                    f"{path!r} is not a valid tinytt checkpoint (truncated or corrupted?): "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
