"""FAKE cupy for CPU: catches NumPy/CuPy mixing the way real CuPy would.

Device arrays are ``cupy.ndarray`` (NOT a numpy.ndarray subclass) wrapping a host array.
- ``numpy.asarray(dev)`` / implicit conversion raises TypeError (``__array__``).
- NumPy ufuncs / NEP-18 functions on device arrays dispatch to this namespace, as CuPy does;
  a host ``numpy.ndarray`` (any ndim) or list in a kernel/ufunc raises TypeError
  ("Unsupported type <class 'numpy.ndarray'>"); only the creation functions (array, asarray,
  asanyarray, copy, *_like), indices (getitem/setitem/take/scatter_add) and advanced-index
  values accept host data.
- reductions and scalar indexing return 0-d device arrays (no numpy scalars).
- out-of-range integer *array* indices wrap around (CuPy semantics); FAKECUPY_NOWRAP=1 disables.
- ``dev[basic] = host_nd`` raises ValueError("non-scalar numpy.ndarray cannot be used for fill").
- cupy.random.Generator cannot be pickled; scatter_add/add.at only for int32/float16/float32/
  float64/uint32/uint64 (CuPy's atomicAdd restriction).
"""
import builtins
import os
import sys
import types

import numpy as _np

__version__ = "13.3.0"
_FAKE = True
_WRAP = os.environ.get("FAKECUPY_NOWRAP", "") != "1"
_PYSCALARS = (bool, int, float, complex)
# Instrument for triage only: FAKECUPY_LENIENT_FROM="/abs/path/tests/:docs/" makes host<->device
# mixing ALLOWED when the innermost caller outside cupy/numpy lives under one of these prefixes
# (test code), so that library defects hidden behind test-side mixing surface.
_LENIENT = tuple(p for p in os.environ.get("FAKECUPY_LENIENT_FROM", "").split(":") if p)
_SKIP_DIRS = (os.path.dirname(os.path.abspath(__file__)), os.path.dirname(_np.__file__))


def _lenient():
    if not _LENIENT:
        return False
    f = sys._getframe(1)
    while f is not None:
        fn = f.f_code.co_filename
        if not fn.startswith(_SKIP_DIRS):
            return fn.startswith(_LENIENT)
        f = f.f_back
    return False


# FAKECUPY_LOG=path: record (how, name, caller file:line) of every NumPy-namespace call that
# dispatched to the fake (numpy.f(device) via __array_function__ / __array_ufunc__) and every
# cupy.* function used, written at exit.
_LOG_PATH = os.environ.get("FAKECUPY_LOG")
_LOG = {}


def _caller():
    f = sys._getframe(2)
    while f is not None and f.f_code.co_filename.startswith(_SKIP_DIRS):
        f = f.f_back
    return "?" if f is None else f"{f.f_code.co_filename}:{f.f_lineno}"


def _log(how, name):
    if _LOG_PATH:
        k = (how, name, _caller())
        _LOG[k] = _LOG.get(k, 0) + 1


if _LOG_PATH:
    import atexit

    @atexit.register
    def _dump():
        with open(_LOG_PATH, "a") as fh:
            for (how, name, where), n in sorted(_LOG.items()):
                fh.write(f"{how}\t{name}\t{where}\t{n}\n")


_IMPLICIT = ("Implicit conversion to a NumPy array is not allowed. "
             "Please use `.get()` to construct a NumPy array explicitly.")

# constants and dtypes borrowed from NumPy (as CuPy does)
for _n in ("e", "euler_gamma", "inf", "nan", "newaxis", "pi", "bool_", "int8", "int16", "int32",
           "int64", "uint8", "uint16", "uint32", "uint64", "intp", "uintp", "intc", "uintc",
           "float16", "float32", "float64", "complex64", "complex128", "longlong", "ulonglong",
           "single", "double", "half", "csingle", "cdouble", "byte", "ubyte", "short", "ushort",
           "int_", "uint", "generic", "number", "integer", "signedinteger", "unsignedinteger",
           "inexact", "floating", "complexfloating", "dtype", "finfo", "iinfo", "issubdtype",
           "promote_types", "min_scalar_type", "isscalar", "errstate", "seterr", "geterr",
           "ndindex", "binary_repr", "base_repr", "typename", "mintypecode"):
    globals()[_n] = getattr(_np, _n)
bool = _np.bool_  # noqa: A001  (cupy.bool is numpy.bool)


class _Unsupported(TypeError):
    pass


def _unsupported(x):
    return TypeError(f"Unsupported type {type(x)}")


# ----------------------------------------------------------------------------- ndarray
class _Flags:
    __slots__ = ("c_contiguous", "f_contiguous", "owndata")

    def __init__(self, a):
        self.c_contiguous = builtins.bool(a.flags.c_contiguous)
        self.f_contiguous = builtins.bool(a.flags.f_contiguous)
        self.owndata = builtins.bool(a.flags.owndata)

    @property
    def fnc(self):
        return self.f_contiguous and not self.c_contiguous

    @property
    def forc(self):
        return self.f_contiguous or self.c_contiguous

    def __getitem__(self, name):
        m = {"C_CONTIGUOUS": "c_contiguous", "F_CONTIGUOUS": "f_contiguous", "OWNDATA": "owndata"}
        if name not in m:
            raise KeyError("%s is not defined for cupy.ndarray.flags" % name)
        return getattr(self, m[name])

    def __repr__(self):
        return "\n".join(f"  {k} : {self[k]}" for k in ("C_CONTIGUOUS", "F_CONTIGUOUS", "OWNDATA"))


class MemoryPointer:
    def __init__(self, ptr):
        self.ptr = ptr
        self.device_id = 0

    def __int__(self):
        return self.ptr


def _should_use_rop(x, y):
    try:
        yu = y.__array_ufunc__
    except AttributeError:
        return getattr(x, "__array_priority__", 0) < getattr(y, "__array_priority__", 0)
    return yu is None


class ndarray:
    """Fake device array (wraps a host numpy array in ``_a``)."""
    __slots__ = ("_a", "__weakref__")
    __array_priority__ = 100

    def __init__(self, shape, dtype=float, memptr=None, strides=None, order="C"):
        self._a = _np.empty(shape, dtype=dtype, order=order)
        _check_dtype(self._a.dtype)

    @classmethod
    def _from(cls, a):
        o = object.__new__(cls)
        o._a = a
        return o

    # --- the CuPy/NumPy boundary
    def __array__(self, dtype=None, copy=None):
        if _lenient():
            return self._a.copy() if dtype is None else self._a.astype(dtype)
        raise TypeError(_IMPLICIT)

    def get(self, stream=None, order="C", out=None, blocking=True):
        if out is not None:
            if not isinstance(out, _np.ndarray):
                raise TypeError("Only numpy.ndarray can be obtained from cupy.ndarray")
            out[...] = self._a
            return out
        return _np.array(self._a, order=order, copy=True)

    def set(self, arr, stream=None):
        if not isinstance(arr, _np.ndarray):
            raise TypeError(f"Only numpy.ndarray can be set to cupy.ndarray (got {type(arr)})")
        if arr.shape != self._a.shape:
            raise ValueError("Shape mismatch")
        self._a[...] = arr

    def __array_ufunc__(self, uf, method, *inputs, **kwargs):
        _log("numpy-ufunc", f"{uf.__name__}.{method}")
        f = _UFUNCS.get(uf.__name__)
        if f is None:
            return NotImplemented
        if "out" in kwargs:
            out = kwargs["out"]
            if isinstance(out, tuple):
                if len(out) != 1:
                    raise ValueError("The 'out' parameter must have exactly one array value")
                kwargs["out"] = out[0]
        if method == "__call__":
            return f(*inputs, **kwargs)
        if method in ("reduce", "accumulate", "outer", "at", "reduceat"):
            return getattr(f, method)(*inputs, **kwargs)
        return NotImplemented

    def __array_function__(self, func, types_, args, kwargs):
        _log("numpy-func", f"{func.__module__}.{func.__name__}")
        mod = sys.modules[__name__]
        for part in func.__module__.split(".")[1:]:
            mod = getattr(mod, part, None)
            if mod is None:
                return NotImplemented
        f = getattr(mod, func.__name__, None)
        if f is None or f is func:
            return NotImplemented
        for t in types_:
            if t not in (ndarray, _np.ndarray):
                return NotImplemented
        return f(*args, **kwargs)

    # --- attributes
    shape = property(lambda s: s._a.shape)

    @shape.setter
    def shape(self, v):
        self._a.shape = v

    dtype = property(lambda s: s._a.dtype)
    ndim = property(lambda s: s._a.ndim)
    size = property(lambda s: s._a.size)
    strides = property(lambda s: s._a.strides)
    itemsize = property(lambda s: s._a.itemsize)
    nbytes = property(lambda s: s._a.nbytes)
    T = property(lambda s: ndarray._from(s._a.T))
    mT = property(lambda s: ndarray._from(s._a.mT))
    flags = property(lambda s: _Flags(s._a))
    data = property(lambda s: MemoryPointer(s._a.ctypes.data))
    device = property(lambda s: cuda.Device(0))
    base = property(lambda s: ndarray._from(s._a.base) if isinstance(s._a.base, _np.ndarray) else None)

    @property
    def real(self):
        return ndarray._from(self._a.real)

    @property
    def imag(self):
        return ndarray._from(self._a.imag)

    @property
    def __cuda_array_interface__(self):
        return {"shape": self.shape, "typestr": self.dtype.str, "data": (self._a.ctypes.data, False),
                "version": 3, "strides": None if self._a.flags.c_contiguous else self.strides}

    # --- python protocol
    def __repr__(self):
        return repr(self._a)

    def __str__(self):
        return str(self._a)

    def __format__(self, spec):
        return format(self._a, spec) if self._a.ndim else format(self._a.item(), spec)

    def __len__(self):
        if self._a.ndim == 0:
            raise TypeError("len() of unsized object")
        return len(self._a)

    def __iter__(self):
        if self._a.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(self._a.shape[0]))

    def __bool__(self):
        return builtins.bool(self._a)

    def __float__(self):
        return float(self._a)

    def __int__(self):
        return int(self._a)

    def __complex__(self):
        return complex(self._a)

    def __reduce__(self):
        return array, (self._a.copy(),)

    def __copy__(self):
        return self.copy()

    def __deepcopy__(self, memo):
        return self.copy()

    def item(self, *args):
        return self._a.item(*args)

    def tolist(self):
        return self._a.tolist()

    def tobytes(self, order="C"):
        return self._a.tobytes(order)

    def fill(self, value):
        if isinstance(value, _np.ndarray):
            if value.shape != ():
                raise ValueError("non-scalar numpy.ndarray cannot be used for fill")
            value = value.item()
        if isinstance(value, ndarray):
            self._a[...] = value._a
            return
        if not isinstance(value, _PYSCALARS + (_np.generic,)):
            raise _unsupported(value)
        self._a.fill(value)

    def sort(self, axis=-1, kind=None):
        self._a.sort(axis=axis)

    def view(self, *args, **kw):
        return ndarray._from(self._a.view(*args, **kw))

    # --- indexing
    def __getitem__(self, key):
        return _wrap(self._a[_key(self._a.shape, key)[0]])

    def __setitem__(self, key, value):
        k, adv = _key(self._a.shape, key)
        if isinstance(value, ndarray):
            value = value._a
        elif isinstance(value, _np.ndarray) and not adv and not _lenient():
            if value.ndim != 0:
                raise ValueError("non-scalar numpy.ndarray cannot be used for fill")
            value = value.item()
        elif isinstance(value, (list, tuple)) and not adv:
            raise _unsupported(value)
        self._a[k] = value

    def scatter_add(self, slices, value):
        _scatter(self, slices, value, _np.add)

    def scatter_max(self, slices, value):
        _scatter(self, slices, value, _np.maximum)

    def scatter_min(self, slices, value):
        _scatter(self, slices, value, _np.minimum)


def _key(shape, key):
    """Convert an index for a device array: device/host/list arrays allowed (CuPy converts them);
    integer arrays wrap around out-of-range values like CuPy. Returns (key, advanced?)."""
    tup = key if isinstance(key, tuple) else (key,)
    items = []
    for k in tup:
        if isinstance(k, ndarray):
            k = k._a
        elif isinstance(k, list):
            k = _np.asarray(k)
            if k.size == 0:
                k = k.astype(_np.int32)
        items.append(k)
    consumed = 0
    for k in items:
        if k is None or k is Ellipsis:
            continue
        consumed += k.ndim if isinstance(k, _np.ndarray) and k.dtype == _np.bool_ else 1
    ndim, ax, out, adv = len(shape), 0, [], False
    for k in items:
        if k is None:
            pass
        elif k is Ellipsis:
            ax += builtins.max(ndim - consumed, 0)
        elif isinstance(k, _np.ndarray) and k.dtype == _np.bool_:
            adv = True
            ax += k.ndim
        elif isinstance(k, _np.ndarray) and k.dtype.kind in "iu":
            adv = True
            if _WRAP and ax < ndim and shape[ax] > 0:
                k = k % shape[ax]
            ax += 1
        elif isinstance(k, _np.ndarray):
            raise IndexError("arrays used as indices must be of integer or boolean type. "
                             f"(actual: {k.dtype.type})")
        else:
            ax += 1
        out.append(k)
    return (tuple(out) if isinstance(key, tuple) else out[0]), adv


_SCATTER_DTYPES = {_np.dtype(t) for t in ("int32", "float16", "float32", "float64", "uint32", "uint64")}


def _scatter(a, slices, value, uf):
    if not isinstance(a, ndarray):
        raise _unsupported(a)
    k, adv = _key(a._a.shape, slices)
    any_device = isinstance(value, ndarray)
    if any_device:
        value = value._a
    if adv:
        is_int = builtins.any(isinstance(x, _np.ndarray) and x.dtype.kind in "iu"
                     for x in (k if isinstance(k, tuple) else (k,)))
        if is_int and uf is _np.add and a.dtype not in _SCATTER_DTYPES:
            raise TypeError("cupy.add.at only supports int32, float16, float32, float64, "
                            "uint32, uint64, as data type")
        uf.at(a._a, k, _np.asarray(value, dtype=a.dtype))
    else:  # basic index: an elementwise kernel on the view (host arrays rejected)
        if not any_device:
            value = _elem(value, {})  # scalars only: host arrays / lists raise
        a._a[k] = uf(a._a[k], value)


# ----------------------------------------------------------------------------- wrapping
def _check_dtype(dt):
    if dt.kind in "OSUVMm":
        raise ValueError(f"Unsupported dtype {dt}")


def _wrap(r, keep=None, scalar0d=True):
    if isinstance(r, _np.ndarray):
        if keep and id(r) in keep:
            return keep[id(r)]
        _check_dtype(r.dtype)
        return ndarray._from(r)
    if isinstance(r, _np.generic) and scalar0d:
        return ndarray._from(_np.asarray(r))
    if isinstance(r, tuple):
        return tuple(_wrap(v, keep, scalar0d) for v in r)
    if isinstance(r, list):
        return [_wrap(v, keep, scalar0d) for v in r]
    return r


def _unwrap(x, keep, host_ok=False):
    if isinstance(x, ndarray):
        keep[id(x._a)] = x
        return x._a
    if isinstance(x, _np.ndarray):
        if host_ok or _lenient():
            return x
        raise _unsupported(x)
    if isinstance(x, (list, tuple)):
        t = [_unwrap(v, keep, host_ok) for v in x]
        return t if type(x) is list else tuple(t) if type(x) is tuple else type(x)(*t)
    return x


def _func(npf, name=None, host_ok=False, scalar0d=True, module="cupy"):
    def f(*args, **kwargs):
        _log("cupy-func", f"{module}.{f.__name__}")
        keep = {}
        a = [_unwrap(x, keep, host_ok) for x in args]
        k = {n: _unwrap(v, keep, host_ok) for n, v in kwargs.items()}
        return _wrap(npf(*a, **k), keep, scalar0d)
    f.__name__ = name or npf.__name__
    f.__qualname__ = f.__name__
    f.__module__ = module
    return f


# ----------------------------------------------------------------------------- ufuncs
def _elem(x, keep):
    if isinstance(x, ndarray):
        keep[id(x._a)] = x
        return x._a
    if isinstance(x, _PYSCALARS + (_np.generic,)) or (isinstance(x, _np.ndarray) and _lenient()):
        return x
    raise _unsupported(x)


class ufunc:
    def __init__(self, npu, name=None):
        self._u = npu
        self.__name__ = name or npu.__name__
        self.nin, self.nout, self.nargs = npu.nin, npu.nout, npu.nargs

    def __repr__(self):
        return f"<ufunc '{self.__name__}'>"

    def _kw(self, kwargs, keep):
        out = kwargs.get("out")
        if isinstance(out, tuple):
            out = out[0] if len(out) == 1 else out
        if out is not None:
            outs = out if isinstance(out, tuple) else (out,)
            for o in outs:
                if not isinstance(o, ndarray):
                    raise TypeError("Output arguments must be cupy.ndarray")
            kwargs["out"] = tuple(_elem(o, keep) for o in outs) if isinstance(out, tuple) else _elem(out, keep)
        if "where" in kwargs and not isinstance(kwargs["where"], builtins.bool):
            kwargs["where"] = _elem(kwargs["where"], keep)
        return kwargs

    def __call__(self, *inputs, **kwargs):
        _log("cupy-ufunc", self.__name__)
        keep = {}
        ins = [_elem(x, keep) for x in inputs]
        return _wrap(self._u(*ins, **self._kw(kwargs, keep)), keep)

    def reduce(self, a, *args, **kwargs):
        keep = {}
        return _wrap(self._u.reduce(_elem(a, keep), *args, **self._kw(kwargs, keep)), keep)

    def accumulate(self, a, *args, **kwargs):
        keep = {}
        return _wrap(self._u.accumulate(_elem(a, keep), *args, **self._kw(kwargs, keep)), keep)

    def outer(self, a, b, **kwargs):
        keep = {}
        return _wrap(self._u.outer(_elem(a, keep), _elem(b, keep), **self._kw(kwargs, keep)), keep)

    def at(self, a, indices, b=None):
        if self._u not in (_np.add, _np.subtract, _np.maximum, _np.minimum):
            raise NotImplementedError(f"{self.__name__}.at is not supported")
        _scatter(a, indices, b, self._u)


_UFUNC_NAMES = """add subtract multiply divide true_divide floor_divide negative positive power float_power
remainder mod fmod divmod absolute fabs rint sign heaviside conj conjugate exp exp2 log log2 log10
expm1 log1p sqrt square cbrt reciprocal gcd lcm sin cos tan arcsin arccos arctan arctan2 hypot sinh
cosh tanh arcsinh arccosh arctanh deg2rad rad2deg degrees radians bitwise_and bitwise_or bitwise_xor
invert bitwise_not left_shift right_shift greater greater_equal less less_equal not_equal equal
logical_and logical_or logical_xor logical_not maximum minimum fmax fmin isfinite isinf isnan signbit
copysign nextafter spacing modf ldexp frexp floor ceil trunc logaddexp logaddexp2 matmul""".split()
_UFUNCS = {}
for _n in _UFUNC_NAMES:
    _UFUNCS[_n] = globals()[_n] = ufunc(getattr(_np, _n), _n)
_UFUNCS["absolute"] = globals()["abs"] = absolute  # noqa: F821
for _alias in ("divide", "true_divide"):
    _UFUNCS[_alias] = globals()[_alias]


def _binop(uf, reflected=False):
    if reflected:
        def op(self, other):
            return uf(other, self)
    else:
        def op(self, other):
            if _should_use_rop(self, other):
                return NotImplemented
            return uf(self, other)
    return op


def _cmpop(uf):
    def op(self, other):
        if isinstance(other, _np.ndarray) and other.ndim == 0:
            other = other.item()
        if _should_use_rop(self, other):
            return NotImplemented
        return uf(self, other)
    return op


def _iop(uf):
    def op(self, other):
        uf(self, other, out=self)
        return self
    return op


for _d, _n in (("add", "add"), ("sub", "subtract"), ("mul", "multiply"), ("truediv", "true_divide"),
               ("floordiv", "floor_divide"), ("mod", "remainder"), ("pow", "power"), ("matmul", "matmul"),
               ("and", "bitwise_and"), ("or", "bitwise_or"), ("xor", "bitwise_xor"),
               ("lshift", "left_shift"), ("rshift", "right_shift"), ("divmod", "divmod")):
    setattr(ndarray, f"__{_d}__", _binop(_UFUNCS[_n]))
    setattr(ndarray, f"__r{_d}__", _binop(_UFUNCS[_n], True))
    if _d != "divmod":
        setattr(ndarray, f"__i{_d}__", _iop(_UFUNCS[_n]))
for _d, _n in (("lt", "less"), ("le", "less_equal"), ("gt", "greater"), ("ge", "greater_equal"),
               ("eq", "equal"), ("ne", "not_equal")):
    setattr(ndarray, f"__{_d}__", _cmpop(_UFUNCS[_n]))
ndarray.__hash__ = None
ndarray.__neg__ = lambda s: negative(s)  # noqa: F821
ndarray.__pos__ = lambda s: positive(s)  # noqa: F821
ndarray.__abs__ = lambda s: absolute(s)  # noqa: F821
ndarray.__invert__ = lambda s: invert(s)  # noqa: F821


# ----------------------------------------------------------------------------- ndarray methods
def _method(name, host_ok=False, wrap_take=False):
    def m(self, *args, **kwargs):
        keep = {id(self._a): self}
        a = [_unwrap(x, keep, host_ok) for x in args]
        k = {n: _unwrap(v, keep, host_ok) for n, v in kwargs.items()}
        if wrap_take:
            k["mode"] = "wrap"
        return _wrap(getattr(self._a, name)(*a, **k), keep)
    m.__name__ = name
    return m


for _n in ("all any argmax argmin argpartition argsort astype choose clip compress conj conjugate copy "
           "cumprod cumsum diagonal dot flatten max mean min nonzero partition prod ravel repeat reshape "
           "round squeeze std sum swapaxes trace transpose var").split():
    setattr(ndarray, _n, _method(_n))


def _take_method(self, indices, axis=None, out=None):
    if isinstance(indices, ndarray):
        indices = indices._a
    keep = {id(self._a): self}
    o = _unwrap(out, keep) if out is not None else None
    idx = _np.asarray(indices)
    if idx.dtype.kind not in "iu":
        raise TypeError("indices must be integers")
    return _wrap(_np.take(self._a, idx, axis=axis, out=o, mode="wrap" if _WRAP else "raise"), keep)


def _put_method(self, indices, values, mode="wrap"):
    if isinstance(indices, ndarray):
        indices = indices._a
    if isinstance(values, ndarray):
        values = values._a
    _np.put(self._a, indices, values, mode=mode)


ndarray.take = _take_method
ndarray.put = _put_method


# ----------------------------------------------------------------------------- module functions
def _to_host_for_array(obj):
    if isinstance(obj, ndarray):
        return obj._a
    if isinstance(obj, (list, tuple)):
        leaves = []

        def walk(o):
            if isinstance(o, (list, tuple)):
                for v in o:
                    walk(v)
            else:
                leaves.append(o)
        walk(obj)
        if builtins.any(isinstance(v, ndarray) for v in leaves):
            if not builtins.all(isinstance(v, ndarray) for v in leaves) or len({v.shape for v in leaves}) != 1:
                raise TypeError(_IMPLICIT)

            def conv(o):
                return _np.stack([conv(v) for v in o]) if isinstance(o, (list, tuple)) else o._a
            return conv(obj)
    return obj


def array(obj, dtype=None, copy=True, order="K", subok=False, ndmin=0, *, blocking=False):
    a = _np.array(_to_host_for_array(obj), dtype=dtype, copy=True if copy else None,
                  order=order, ndmin=ndmin)
    _check_dtype(a.dtype)
    return ndarray._from(a)


def asarray(a, dtype=None, order=None, *, blocking=False):
    if isinstance(a, ndarray):
        r = _np.asarray(a._a, dtype=dtype, order=order)
        return a if r is a._a else ndarray._from(r)
    r = _np.array(_to_host_for_array(a), dtype=dtype, order=order, copy=True)
    _check_dtype(r.dtype)
    return ndarray._from(r)


asanyarray = asarray


def copy(a, order="K"):
    return array(a, order=order, copy=True)


def asnumpy(a, stream=None, order="C", out=None, blocking=True):
    if isinstance(a, ndarray):
        return a.get(stream=stream, order=order, out=out, blocking=blocking)
    r = _np.asarray(a, order=order)
    if out is not None:
        out[...] = r
        return out
    return r


def get_array_module(*args):
    return sys.modules[__name__] if builtins.any(isinstance(a, ndarray) for a in args) else _np


def _like(npf):
    def f(a, *args, **kwargs):
        if isinstance(a, ndarray):
            a = a._a
        elif not isinstance(a, _np.ndarray):
            a = _np.asarray(a)
        return ndarray._from(npf(a, *args, **kwargs))
    f.__name__ = npf.__name__
    return f


empty_like, zeros_like, ones_like = _like(_np.empty_like), _like(_np.zeros_like), _like(_np.ones_like)


def full_like(a, fill_value, dtype=None, order="K", subok=None, shape=None):
    r = empty_like(a, dtype=dtype, order=order, shape=shape)
    r.fill(fill_value)
    return r


def full(shape, fill_value, dtype=None, order="C"):
    if dtype is None:
        dtype = fill_value.dtype if isinstance(fill_value, ndarray) else _np.array(fill_value).dtype
    r = ndarray(shape, dtype, order=order)
    r.fill(fill_value)
    return r


def empty(shape, dtype=float, order="C"):
    return ndarray(shape, dtype, order=order)


def zeros(shape, dtype=float, order="C"):
    r = ndarray(shape, dtype, order=order)
    r._a[...] = 0
    return r


def ones(shape, dtype=float, order="C"):
    r = ndarray(shape, dtype, order=order)
    r._a[...] = 1
    return r


def copyto(dst, src, casting="same_kind", where=None):
    if not isinstance(dst, ndarray):
        raise _unsupported(dst)
    if isinstance(src, _np.ndarray) or isinstance(src, _np.generic):
        if src.size != 1:
            raise ValueError("non-scalar numpy.ndarray cannot be used for copyto")
        src = src.item() if isinstance(src, _np.ndarray) else src
    keep = {}
    s = _elem(src, keep)
    w = None if where is None else _elem(where, keep)
    _np.copyto(dst._a, s, casting=casting, where=True if w is None else w)


def take(a, indices, axis=None, out=None):
    if not isinstance(a, ndarray):
        raise _unsupported(a)
    return a.take(indices, axis=axis, out=out)


def result_type(*arrays_and_dtypes):
    return _np.result_type(*[a.dtype if isinstance(a, ndarray) else a for a in arrays_and_dtypes])


def can_cast(from_, to, casting="safe"):
    return _np.can_cast(from_.dtype if isinstance(from_, ndarray) else from_, to, casting=casting)


def shape(a):
    return a.shape if isinstance(a, ndarray) else _np.shape(a)


def ndim(a):
    return a.ndim if isinstance(a, ndarray) else _np.ndim(a)


def size(a, axis=None):
    return (a.size if axis is None else a.shape[axis]) if isinstance(a, ndarray) else _np.size(a, axis)


def may_share_memory(a, b, max_work=None):
    if not (isinstance(a, ndarray) and isinstance(b, ndarray)):
        return False
    return builtins.bool(_np.may_share_memory(a._a, b._a))


def shares_memory(a, b, max_work=None):
    if not (isinstance(a, ndarray) and isinstance(b, ndarray)):
        return False
    return builtins.bool(_np.shares_memory(a._a, b._a))


def iscomplexobj(x):
    return x.dtype.kind == "c" if isinstance(x, ndarray) else _np.iscomplexobj(x)


def isrealobj(x):
    return not iscomplexobj(x)


def einsum(*operands, **kwargs):
    return _func(_np.einsum)(*operands, **kwargs)


_STRICT = """arange linspace logspace eye identity tri diag diagflat tril triu meshgrid ascontiguousarray
asfortranarray reshape ravel transpose swapaxes moveaxis rollaxis expand_dims squeeze broadcast_to
broadcast_arrays atleast_1d atleast_2d atleast_3d concatenate stack hstack vstack dstack column_stack
split array_split hsplit vsplit repeat tile flip fliplr flipud roll rot90 pad append
take_along_axis put_along_axis choose compress diagonal extract select place put fill_diagonal
sort argsort lexsort partition argpartition argmax argmin nanargmax nanargmin nonzero flatnonzero argwhere
where searchsorted count_nonzero unique bincount histogram digitize
sum prod mean var std nansum nanprod nanmean nanvar nanstd max min amax amin nanmax nanmin ptp median
nanmedian percentile quantile average cumsum cumprod nancumsum nancumprod diff gradient ediff1d
clip around round real imag angle nan_to_num interp convolve cross trapezoid i0 sinc
all any isclose allclose array_equal array_equiv isreal iscomplex isin in1d intersect1d union1d setdiff1d
dot vdot inner outer tensordot kron trace cov corrcoef histogram2d
packbits unpackbits unravel_index ravel_multi_index indices ix_ tril_indices triu_indices
diag_indices fix""".split()
for _n in _STRICT:
    if hasattr(_np, _n):
        globals()[_n] = _func(getattr(_np, _n), _n)


def _submodule(name):
    m = types.ModuleType(f"{__name__}.{name}")
    sys.modules[m.__name__] = m
    globals()[name] = m
    return m


# --- linalg
linalg = _submodule("linalg")
for _n in ("norm qr svd solve inv pinv det slogdet eigh eigvalsh cholesky lstsq matrix_power matrix_rank "
           "tensorsolve tensorinv multi_dot").split():
    setattr(linalg, _n, _func(getattr(_np.linalg, _n), _n, module="cupy.linalg"))
linalg.LinAlgError = _np.linalg.LinAlgError

# --- fft (rarely needed)
fft = _submodule("fft")
for _n in "fft ifft rfft irfft fft2 ifft2 rfft2 irfft2 fftn ifftn rfftn irfftn fftfreq rfftfreq fftshift ifftshift".split():
    setattr(fft, _n, _func(getattr(_np.fft, _n), _n, module="cupy.fft"))

# --- random
random = _submodule("random")


class Generator:
    """Fake cupy.random.Generator: draws on the host with NumPy, returns device arrays."""

    def __init__(self, bit_generator=None):
        if isinstance(bit_generator, _np.random.Generator):
            raise TypeError("cupy.random.Generator cannot take a numpy.random.Generator")
        self._g = _np.random.default_rng(bit_generator)

    def __reduce__(self):
        raise TypeError("cannot pickle 'cupy.random._generator_api.Generator' object")

    @staticmethod
    def _ck(dtype, ok=("float32", "float64")):
        if _np.dtype(dtype).name not in ok:
            raise TypeError(f"Unsupported dtype {_np.dtype(dtype).name}")

    def random(self, size=None, dtype=_np.float64, out=None):
        self._ck(dtype)
        return _wrap(self._g.random(size, dtype=dtype))

    def standard_normal(self, size=None, dtype=_np.float64, out=None):
        self._ck(dtype)
        return _wrap(self._g.standard_normal(size, dtype=dtype))

    def uniform(self, low=0.0, high=1.0, size=None, dtype=_np.float64):
        self._ck(dtype)
        return _wrap((low + (high - low) * self._g.random(size)).astype(dtype))

    def integers(self, low, high=None, size=None, dtype=_np.int64, endpoint=False):
        return _wrap(self._g.integers(low, high, size=size, dtype=dtype, endpoint=endpoint))

    def standard_exponential(self, size=None, dtype=_np.float64, method="inv", out=None):
        return _wrap(self._g.standard_exponential(size, dtype=dtype))


def default_rng(seed=None):
    if isinstance(seed, Generator):
        return seed
    return Generator(seed)


_global_rs = _np.random.RandomState()
random.Generator = Generator
random.default_rng = default_rng
random.seed = lambda seed=None: _global_rs.seed(seed)
for _n in ("rand randn random random_sample uniform normal randint standard_normal permutation "
           "shuffle choice").split():
    setattr(random, _n, _func(getattr(_global_rs, _n), _n, module="cupy.random"))

# --- cuda
cuda = _submodule("cuda")
runtime = types.ModuleType(f"{__name__}.cuda.runtime")
sys.modules[runtime.__name__] = runtime
cuda.runtime = runtime


class CUDARuntimeError(RuntimeError):
    pass


runtime.CUDARuntimeError = CUDARuntimeError
runtime.getDeviceCount = lambda: 1
runtime.getDevice = lambda: 0
runtime.setDevice = lambda d: None
runtime.runtimeGetVersion = lambda: 12040
runtime.driverGetVersion = lambda: 12040
runtime.deviceSynchronize = lambda: None
runtime.is_hip = False
runtime.getDeviceProperties = lambda k: {"name": b"FakeCuPy CPU device", "totalGlobalMem": 80 * 2 ** 30,
                                         "major": 9, "minor": 0, "multiProcessorCount": 132}
runtime.memGetInfo = lambda: (79 * 2 ** 30, 80 * 2 ** 30)


class Device:
    def __init__(self, device=None):
        self.id = 0 if device is None else int(device)
        if self.id != 0:
            raise CUDARuntimeError("cudaErrorInvalidDevice: invalid device ordinal")

    compute_capability = "90"
    mem_info = property(lambda s: runtime.memGetInfo())

    def synchronize(self):
        pass

    def use(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def __eq__(self, other):
        return isinstance(other, Device) and other.id == self.id

    def __hash__(self):
        return self.id

    def __repr__(self):
        return f"<CUDA Device {self.id}>"


class Stream:
    null = None

    def __init__(self, null=False, non_blocking=False, ptds=False):
        self.ptr = 0

    def synchronize(self):
        pass

    def use(self):
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class Event:
    def __init__(self, *a, **k):
        pass

    def record(self, stream=None):
        pass

    def synchronize(self):
        pass


def _elapsed(start, end):
    return 0.0


class MemoryPool:
    def used_bytes(self):
        return 0

    def total_bytes(self):
        return 0

    def free_bytes(self):
        return 0

    def free_all_blocks(self, stream=None):
        pass

    def n_free_blocks(self):
        return 0

    def set_limit(self, size=None, fraction=None):
        pass

    def get_limit(self):
        return 0


_pool, _pinned_pool = MemoryPool(), MemoryPool()
cuda.Device, cuda.Stream, cuda.Event, cuda.MemoryPool, cuda.MemoryPointer = (Device, Stream, Event,
                                                                             MemoryPool, MemoryPointer)
cuda.get_elapsed_time = _elapsed
cuda.is_available = lambda: True
cuda.get_current_stream = lambda device=None: Stream()
cuda.get_device_id = lambda: 0
cuda.CUDARuntimeError = CUDARuntimeError
Stream.null = Stream()
get_default_memory_pool = lambda: _pool  # noqa: E731
get_default_pinned_memory_pool = lambda: _pinned_pool  # noqa: E731
is_available = cuda.is_available


def show_config(*, _full=False):
    print("FakeCuPy (CPU) version", __version__)


def fuse(*args, **kwargs):
    if len(args) == 1 and callable(args[0]) and not kwargs:
        return args[0]
    return lambda f: f
