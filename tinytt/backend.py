"""Array backends: NumPy (CPU, the default) and CuPy (GPU).

This is the only module that knows CuPy exists. Everything else asks it for the
array namespace ``xp`` (``numpy`` or ``cupy``) and calls ``xp.*`` on its data, so
one code path runs on both.

The default backend is NumPy, or the one named by the environment variable
``TINYTT_BACKEND`` ("numpy" or "cupy") when tinytt is imported; ``set_backend``
changes it at run time. New arrays (parameters, random tensors) are created on
the default backend; operations on existing arrays follow the arrays
(``get_xp``), and mixing NumPy and CuPy arrays in one operation is an error.
"""

from __future__ import annotations

import os
import sys

import numpy

from . import parallel
from .segment_sum import _accumulator, segment_sum

__all__ = [
    "set_backend",
    "get_backend",
    "get_xp",
    "is_cupy_array",
    "is_tensor",
    "to_numpy",
    "to_device",
    "asarray",
    "from_python",
    "scatter_add",
    "take_rows",
    "index_add",
    "svd",
    "qr",
    "default_rng",
    "synchronize",
    "cupy_available",
    "gpu_info",
]

_BACKENDS = ("numpy", "cupy")
_state = {"name": "numpy", "xp": numpy}
_NDARRAY = numpy.ndarray
_SCALARS = (int, float, bool, complex)


def _import_cupy():
    """Import CuPy and check that a GPU is usable; raise RuntimeError with the reason otherwise."""
    try:
        import cupy  # noqa: PLC0415 - optional dependency, imported only on request
    except Exception as exc:  # ImportError, or a CUDA library failing to load
        raise RuntimeError(
            "backend 'cupy' requested but CuPy cannot be imported "
            f"({type(exc).__name__}: {exc}); install it with pip install 'tinytt[gpu]' "
            "on a machine with an NVIDIA GPU, or use the 'numpy' backend"
        ) from exc
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        raise RuntimeError(
            f"backend 'cupy' requested but no usable GPU was found ({type(exc).__name__}: {exc})"
        ) from exc
    if count < 1:
        raise RuntimeError("backend 'cupy' requested but no GPU is present")
    return cupy


def cupy_available() -> bool:
    """True when CuPy imports and at least one GPU is visible."""
    try:
        _import_cupy()
    except RuntimeError:
        return False
    return True


def gpu_info() -> dict:
    """What ``tinytt info`` reports about the GPU: CuPy's version (None when it does not
    import, with the reason), the visible devices (id, name, memory in GiB) and the CUDA
    runtime version. Never raises."""
    try:
        import cupy  # noqa: PLC0415 - optional dependency, imported only on request
    except Exception as exc:  # noqa: BLE001 - absent or broken install
        return {"cupy": None, "reason": f"CuPy not importable ({type(exc).__name__})"}
    out = {"cupy": cupy.__version__}
    try:
        n = cupy.cuda.runtime.getDeviceCount()
        devices = []
        for k in range(n):
            props = cupy.cuda.runtime.getDeviceProperties(k)
            name = props.get("name", b"")
            devices.append({"id": k, "name": name.decode() if isinstance(name, bytes) else str(name),
                            "memory_gib": round(props.get("totalGlobalMem", 0) / 2 ** 30, 1)})
        out["devices"] = devices
        out["cuda_runtime"] = cupy.cuda.runtime.runtimeGetVersion()
    except Exception as exc:  # noqa: BLE001 - no driver / no GPU
        out["devices"] = []
        out["reason"] = f"{type(exc).__name__}: {exc}"
    return out


def set_backend(name: str) -> None:
    """Select the default backend for newly created arrays: ``"numpy"`` or ``"cupy"``.

    Raises ValueError for an unknown name and RuntimeError when CuPy or a GPU is missing.
    """
    if not isinstance(name, str) or name.lower() not in _BACKENDS:
        raise ValueError(f"backend name must be one of {_BACKENDS}, got {name!r}")
    name = name.lower()
    _state["xp"] = _import_cupy() if name == "cupy" else numpy
    _state["name"] = name


def get_backend() -> str:
    """Name of the default backend: ``"numpy"`` or ``"cupy"``."""
    return _state["name"]


def is_tensor(x) -> bool:
    """True for a ``tinytt.Tensor`` or a subclass (``Parameter``), without importing tensor.py."""
    return any(cls.__name__ == "Tensor" and cls.__module__ == "tinytt.tensor" for cls in type(x).__mro__)


def is_cupy_array(x) -> bool:
    """True for a ``cupy.ndarray``; never imports CuPy to find out."""
    cupy = sys.modules.get("cupy")
    return cupy is not None and isinstance(x, cupy.ndarray)


def is_cupy_generator(x) -> bool:
    """True for a ``cupy.random.Generator`` (CuPy's generators cannot be serialised); never
    imports CuPy to find out."""
    cupy = sys.modules.get("cupy")
    generator = getattr(getattr(cupy, "random", None), "Generator", None)
    return isinstance(generator, type) and isinstance(x, generator)


def get_xp(*arrays):
    """The array namespace (``numpy`` or ``cupy``) of the given arrays (or Tensors).

    Python scalars and None are ignored; with no arrays the default backend's
    namespace is returned. Raises TypeError when NumPy and CuPy arrays are mixed.
    """
    found = None
    for a in arrays:
        if isinstance(a, (_NDARRAY, numpy.generic)):  # numpy.float64 is also a Python float
            module = numpy
        elif a is None or isinstance(a, _SCALARS):
            continue
        else:
            if is_tensor(a):
                a = a.data
            if is_cupy_array(a):
                module = sys.modules["cupy"]
            elif isinstance(a, (_NDARRAY, numpy.generic)):
                module = numpy
            else:
                continue
        if found is None:
            found = module
        elif found is not module:
            raise TypeError(
                "arrays from different backends (NumPy and CuPy) were mixed in one operation; "
                "move them to one backend first with tinytt.to_device or tinytt.to_numpy"
            )
    return _state["xp"] if found is None else found


def to_numpy(x) -> numpy.ndarray:
    """``x`` (a Tensor, a CuPy or NumPy array, or a scalar) as a NumPy array on the host: a copy from the GPU, the same array (no copy) for NumPy data."""
    if is_tensor(x):
        x = x.data
    if is_cupy_array(x):
        return x.get()
    return numpy.asarray(x)


def to_device(x, dtype=None):
    """Move ``x`` to the default backend (a copy only when it lives elsewhere)."""
    if is_tensor(x):
        x = x.data
    xp = _state["xp"]
    if xp is numpy:
        return to_numpy(x) if dtype is None else to_numpy(x).astype(dtype, copy=False)
    return xp.asarray(x, dtype=dtype)


def asarray(x, dtype=None, xp=None):
    """``xp.asarray`` on the given namespace (default backend when None)."""
    return (xp or _state["xp"]).asarray(x, dtype=dtype)


def from_python(data, xp, dtype=None):
    """``xp.asarray(data, dtype)`` for data that is not yet a backend array (Python scalars,
    lists, NumPy data for CuPy), read by NumPy first when ``xp`` is CuPy: a string or object
    then comes back as a NumPy array of that dtype for the caller's dtype check to refuse
    with a TypeError (CuPy raises ValueError "Unsupported dtype" for it), and a ragged list
    raises NumPy's ValueError on both backends."""
    if xp is numpy or is_cupy_array(data):
        return xp.asarray(data, dtype=dtype)
    try:
        host = numpy.asarray(data, dtype=dtype)
    except TypeError:     # a list holding device arrays (no implicit conversion): CuPy reads it
        return xp.asarray(data, dtype=dtype)
    if host.dtype.kind not in "biufc":
        return host
    return xp.asarray(host)


def index_add(target, index, values) -> None:
    """In place ``target[index] += values`` where repeated indices all accumulate.

    NumPy: ``numpy.add.at``; CuPy: ``cupyx.scatter_add`` (atomic adds, so the
    float summation order is not fixed on the GPU). ``index`` may be any basic or
    advanced index. Used by the general ``getitem`` backward; hot paths use
    ``scatter_add``.
    """
    if is_cupy_array(target):
        import cupyx  # noqa: PLC0415

        if target.dtype.kind == "c":   # cupyx.scatter_add has no complex kernels
            xp = sys.modules["cupy"]
            values = xp.asarray(values, dtype=target.dtype)
            parts = []
            for part in (xp.real, xp.imag):
                acc = xp.zeros(target.shape, dtype=target.real.dtype)
                cupyx.scatter_add(acc, index, part(values))
                parts.append(acc)
            target += parts[0] + 1j * parts[1]
        else:
            cupyx.scatter_add(target, index, values)
    else:
        numpy.add.at(target, index, values)


def sum_dtype(dtype):
    """The dtype that sums of ``dtype`` values run in: float32 for float16 (a float16 sum
    stalls, 5,000 x 0.01 stops growing at 32, and passes 65504 long before a mean
    would), else ``dtype`` itself (``segment_sum``, ``scatter_add``, the softmax family)."""
    return _accumulator(dtype)


def scatter_add(indices, values, num_rows: int, skip=None):
    """Segment sum of rows: ``out[i] = sum of values[k] over k with indices[k] == i``.

    Args:
        indices: integer array of any shape S, each in [0, num_rows).
        values: array of shape S + rest (any strides: a broadcast array is read in
            place, not copied).
        num_rows: number of output rows.
        skip: None or a row left at zero whatever its indices carry (an embedding's
            padding row); NumPy does not even sum it.
    Returns:
        array of shape (num_rows, *rest) with ``values.dtype``.

    NumPy: ``tinytt.segment_sum`` -- deterministic (a stable sort by index, then
    padded power-of-two buckets summed in a fixed order, dealt to the CPU's cores),
    several times faster than ``numpy.add.at``; cost O(K) to O(K log K) for the sort
    plus at most ~2K gathered rows for K indices. CuPy uses ``cupyx.scatter_add``
    (atomic adds: the summation order is not fixed there).
    """
    xp = get_xp(indices, values)
    lead = tuple(indices.shape)
    if tuple(values.shape[:len(lead)]) != lead:
        raise ValueError(f"scatter_add: values of shape {tuple(values.shape)} must start with the "
                         f"indices' shape {lead}")
    rest = tuple(values.shape[len(lead):])
    if indices.size == 0 or xp is not numpy:
        # float16 sums run in float32, as segment_sum's do (float16 atomic adds stall:
        # 5,000 x 0.01 sums to 32)
        acc = sum_dtype(values.dtype)
        out = xp.zeros((num_rows,) + rest, dtype=acc)
        if indices.size and values.size:   # (rows of width 0: nothing to add, and no (-1, 0) reshape)
            index_add(out, indices.reshape(-1), values.reshape((-1,) + rest).astype(acc, copy=False))
        if skip is not None:
            out[skip] = 0
        return out.astype(values.dtype, copy=False)
    return segment_sum(indices, values, num_rows, skip)


#: ``take_rows`` splits a NumPy gather over the cores from this many bytes gathered on
#: (a 13 MB gather of 12,800 rows of 1 KB: 1.65 -> 1.0 ms on two cores)
_PARALLEL_TAKE_BYTES = 1 << 20


def take_rows(src, index, out=None):
    """Rows ``src[index]`` for an integer ``index`` of any shape S: ``S + src.shape[1:]``.

    ``xp.take(src, index, axis=0)``; on NumPy, large gathers are split into contiguous
    blocks of ``index`` gathered by all cores at once (``tinytt.parallel``; NumPy releases
    the GIL while it copies). Negative or out-of-range indices behave exactly as in
    ``numpy.take`` (the split path runs only when every index is in ``[0, len(src))``);
    on CuPy, whose ``take`` wraps every index around, they are not checked (a device sync
    per call): callers pass checked ids (``ops.check_ids``).
    ``out``: an optional C-contiguous array of the result's shape and dtype to write into
    (returned). Cost: one read of each selected row and one write of the result.
    """
    xp = get_xp(src, index)   # (a NumPy/CuPy mix raises here, as everywhere)
    if out is not None:
        shape = tuple(numpy.shape(index)) + tuple(src.shape[1:])
        if not all(hasattr(out, a) for a in ("shape", "dtype", "flags")):
            raise TypeError(f"take_rows: out must be None or an array, got {type(out).__name__}")
        if tuple(out.shape) != shape or out.dtype != src.dtype or not out.flags.c_contiguous:
            raise ValueError(f"take_rows: out must be a C-contiguous array of shape {shape} and dtype "
                             f"{src.dtype}, got shape {tuple(out.shape)}, dtype {out.dtype}, "
                             f"C-contiguous {bool(out.flags.c_contiguous)}")
    if xp is not numpy:
        if out is None:
            return xp.take(src, index, axis=0)
        out[...] = xp.take(src, index, axis=0)
        return out
    index = numpy.asarray(index)
    small = (src.ndim == 0 or index.size == 0 or parallel.num_threads() < 2
             or index.size * src[:1].nbytes < _PARALLEL_TAKE_BYTES)
    if small and out is None:
        return numpy.take(src, index, axis=0)
    flat = index.reshape(-1)
    if (src.ndim == 0 or flat.size == 0 or int(flat.min()) < 0 or int(flat.max()) >= src.shape[0]
            or (out is not None and numpy.may_share_memory(out, src))):
        # numpy's own wrap-around / IndexError, and its copy when out overlaps src
        return numpy.take(src, index, axis=0, out=out)
    if out is None:
        out = numpy.empty(index.shape + src.shape[1:], dtype=src.dtype)
    rows = out.reshape((flat.shape[0],) + src.shape[1:])    # a view: out is C-contiguous
    # mode="clip" (the indices are valid here): with the default mode NumPy buffers take's
    # output (IMDB LSTM input, 12,800 rows of 2 KB: 13.5 vs 4.9 ms on one core)
    if small:
        numpy.take(src, flat, axis=0, out=rows, mode="clip")
    else:
        parallel.map_blocks(lambda a, b: numpy.take(src, flat[a:b], axis=0, out=rows[a:b], mode="clip"),
                            flat.shape[0])
    return out


def svd(a):
    """Thin SVD ``a = u @ diag(s) @ vt`` with ``full_matrices=False`` on the array's backend.

    a: (m, n) -> u (m, k), s (k,), vt (k, n) with k = min(m, n); cost O(m n k).
    """
    xp = get_xp(a)
    return xp.linalg.svd(a, full_matrices=False)


def qr(a):
    """Reduced QR ``a = q @ r`` on the array's backend: (m, n) -> q (m, k), r (k, n), k = min(m, n)."""
    xp = get_xp(a)
    return xp.linalg.qr(a, mode="reduced")


def default_rng(seed=None):
    """A random generator on the default backend (``numpy.random.default_rng`` or CuPy's).

    ``seed`` may be None, an int or a NumPy Generator; CuPy cannot take a NumPy Generator,
    so there an int seed is drawn from it first."""
    xp = _state["xp"]
    if xp is not numpy and isinstance(seed, numpy.random.Generator):
        seed = int(seed.integers(0, 2**63 - 1))
    return xp.random.default_rng(seed)


def synchronize(x=None) -> None:
    """Wait for queued GPU work (a no-op on NumPy); benchmarks call it around timings."""
    if _state["name"] == "cupy" or is_cupy_array(x):
        sys.modules["cupy"].cuda.Device().synchronize()


def _init_from_env() -> None:
    """Apply ``TINYTT_BACKEND`` at import. A bad value fails the import (naming the variable)
    rather than running on NumPy when CuPy was asked for."""
    name = os.environ.get("TINYTT_BACKEND", "").strip()
    if name:
        try:
            set_backend(name)
        except (ValueError, RuntimeError) as exc:
            raise type(exc)(f"TINYTT_BACKEND={name!r}: {exc}") from None


_init_from_env()
