"""The autodiff engine: ``Tensor``, graph recording and reverse-mode ``backward``.

A ``Tensor`` wraps a backend array (``.data``). When an operation runs with
gradients enabled and any input requires a gradient, the result remembers its
inputs and one vector-Jacobian product (VJP) per input: a function that maps the
gradient of the result to the gradient of that input. ``backward`` visits the
graph once in reverse topological order (found iteratively, so graphs of any
depth work), calls each VJP and sums gradients that reach a node along several
paths. Leaves (tensors created by the user with ``requires_grad=True``) receive
their gradient in ``.grad``, a plain backend array of the leaf's shape and dtype.

Operations themselves live in ``ops.py``, ``einsum.py`` and ``functional.py``;
they call ``record`` to attach their VJPs. A VJP may return a ``Deferred`` (a gradient a
worker thread is still computing); for a leaf, ``backward`` collects it after the rest of
the graph.
"""

from __future__ import annotations

import functools
import threading

import numpy

from .backend import from_python, get_xp, is_cupy_array, to_numpy

_NDARRAY = numpy.ndarray

__all__ = ["Tensor", "Deferred", "no_grad", "enable_grad", "is_grad_enabled", "record"]

_grad_state = threading.local()


def is_grad_enabled() -> bool:
    """False inside a ``no_grad()`` block, True otherwise."""
    return getattr(_grad_state, "enabled", True)


class _GradMode:
    """``with`` block (or decorator) that sets gradient recording to ``flag`` and restores the
    previous state on exit, exceptions included. Reusable and re-entrant, as ``torch.no_grad()``:
    the previous states are kept per thread, one stack per object."""

    __slots__ = ("_flag", "_saved")

    def __init__(self, flag: bool):
        self._flag = flag
        self._saved = threading.local()

    def __enter__(self):
        stack = getattr(self._saved, "stack", None)
        if stack is None:
            stack = self._saved.stack = []
        stack.append(is_grad_enabled())
        _grad_state.enabled = self._flag
        return None

    def __exit__(self, *exc_info):
        _grad_state.enabled = self._saved.stack.pop()
        return False

    def __call__(self, fn):
        flag = self._flag

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with _GradMode(flag):
                return fn(*args, **kwargs)
        return wrapper


def no_grad():
    """Context manager: operations inside record no graph and return tensors without gradients."""
    return _GradMode(False)


def enable_grad():
    """Context manager that turns recording back on inside a ``no_grad()`` block."""
    return _GradMode(True)


def _is_float_dtype(dtype) -> bool:
    return dtype.kind in "fc"


class Tensor:
    """An array with an optional gradient.

    Args:
        data: an array of the current backend (NumPy or CuPy), a ``Tensor``, or
            anything ``xp.asarray`` accepts (lists, scalars). Arrays are used
            without copying; their dtype is kept.
        requires_grad: record operations on this tensor so ``backward`` can
            fill ``.grad``. Only floating-point (real or complex) tensors can require
            gradients; complex VJPs are plain transposes, JAX's convention, not PyTorch's
            conjugate (docs/autodiff.md).
        dtype: optional dtype to convert ``data`` to.

    Raises TypeError for non-numeric data (strings, objects, dates) and for
    ``requires_grad=True`` on non-floating data.

    Attributes:
        data: the backend array.
        grad: None, or after ``backward`` an array of ``data``'s shape and dtype.
    """

    # _gathered: None, or (source Tensor, index array, skip row) when ``data`` is
    # ``source.data[index]`` from a row gather (an embedding lookup): lets the LSTM project
    # the distinct source rows instead of every position (``tinytt/nn/lstm.py``)
    __slots__ = ("data", "grad", "requires_grad", "_parents", "_vjps", "_op", "_gathered", "__weakref__")
    # make NumPy defer `ndarray + Tensor` to Tensor.__radd__ instead of looping over elements
    __array_ufunc__ = None

    def __init__(self, data, requires_grad: bool = False, dtype=None):
        if isinstance(data, Tensor):
            data = data.data
        xp = get_xp(data)
        if dtype is not None or not isinstance(data, xp.ndarray):
            data = from_python(data, xp, dtype=dtype)   # (strings get the TypeError below on CuPy too)
        if data.dtype.kind not in "biufc":
            raise TypeError(f"Tensor: data must be a numeric array (bool, integer, floating or complex), "
                            f"got dtype {data.dtype}")
        self.data = data
        self.grad = None
        self._parents = ()
        self._vjps = ()
        self._op = None
        self._gathered = None
        if not isinstance(requires_grad, (bool, numpy.bool_)):
            raise TypeError(f"Tensor: requires_grad must be a bool, got {requires_grad!r}")
        requires_grad = bool(requires_grad)
        if requires_grad and not _is_float_dtype(data.dtype):
            raise TypeError(
                f"requires_grad=True needs a floating-point tensor, got dtype {data.dtype}; "
                "integer and boolean tensors never get gradients"
            )
        self.requires_grad = requires_grad

    # --- array-like properties -------------------------------------------------------------
    @property
    def shape(self) -> tuple:
        """The array's shape, a tuple of ints."""
        return tuple(self.data.shape)

    @property
    def dtype(self):
        """The array's dtype."""
        return self.data.dtype

    @property
    def ndim(self) -> int:
        """Number of dimensions."""
        return self.data.ndim

    @property
    def size(self) -> int:
        """Number of elements."""
        return int(self.data.size)

    @property
    def is_leaf(self) -> bool:
        """True when no recorded operation produced this tensor (``backward`` fills the
        ``.grad`` of leaves that require it)."""
        return not self._parents

    def __bool__(self) -> bool:
        if self.data.size != 1:
            raise ValueError(f"the truth value of a tensor of shape {tuple(self.data.shape)} is ambiguous; "
                             "use .any() or .all() on .data")
        return bool(self.data.reshape(-1)[0])

    def __len__(self) -> int:
        if self.data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.data.shape[0]

    def __iter__(self):
        """The sub-tensors along axis 0 (``self[0]``, ``self[1]``, ...), as NumPy iterates."""
        if self.data.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self.data.shape[0]))

    def __repr__(self) -> str:
        grad = ", requires_grad=True" if self.requires_grad else ""
        op = f", op={self._op}" if self._op else ""
        return f"Tensor({to_numpy(self.data)!r}{grad}{op})"

    def __array__(self, dtype=None, copy=None):
        """``numpy.asarray(tensor)``: the NumPy data itself (no copy unless ``dtype`` or
        ``copy=True`` asks for one), so NumPy functions see the values and not an object
        array of 0-d tensors. A tensor on the GPU raises TypeError, as CuPy arrays do: move
        it explicitly with ``.numpy()``."""
        data = self.data
        if not isinstance(data, numpy.ndarray):
            raise TypeError("a Tensor whose data is not a NumPy array (CuPy: on the GPU) is not converted to "
                            "NumPy implicitly; use tensor.numpy()")
        if dtype is not None and numpy.dtype(dtype) != data.dtype:
            if copy is False:
                raise ValueError(f"converting a {data.dtype} tensor to {numpy.dtype(dtype)} needs a copy, "
                                 f"but copy=False")
            return data.astype(dtype)
        return data.copy() if copy else data

    def __float__(self) -> float:
        """``float(t)`` of a one-element real tensor (``item()``; a device sync on CuPy)."""
        if self.data.size != 1:
            raise TypeError(f"float() needs a tensor with one element, got shape {self.shape}")
        return float(self.item())

    def __int__(self) -> int:
        """``int(t)`` of a one-element tensor, truncated toward zero as ``int(float)``."""
        if self.data.size != 1:
            raise TypeError(f"int() needs a tensor with one element, got shape {self.shape}")
        return int(self.item())

    def numpy(self):
        """The data as a NumPy array on the host (``to_numpy``): a copy from the GPU, but on
        NumPy the tensor's own array, so copy it before writing into it."""
        return to_numpy(self.data)

    def item(self):
        """The value of a one-element tensor as a Python scalar (a device sync on CuPy)."""
        if self.data.size != 1:
            raise ValueError(f"item() needs a tensor with one element, got shape {self.shape}")
        return self.data.reshape(-1)[0].item()

    def detach(self) -> "Tensor":
        """The same data (not copied) as a new tensor outside the graph."""
        return Tensor(self.data)

    def requires_grad_(self, flag: bool = True) -> "Tensor":
        """Set ``requires_grad`` in place on a leaf and return self."""
        if not self.is_leaf:
            raise RuntimeError("requires_grad_ can only be changed on a leaf tensor")
        if not isinstance(flag, (bool, numpy.bool_)):
            raise TypeError(f"requires_grad_: flag must be a bool, got {flag!r}")
        if flag and not _is_float_dtype(self.data.dtype):
            raise TypeError(f"requires_grad=True needs a floating-point tensor, got dtype {self.dtype}")
        self.requires_grad = bool(flag)
        return self

    # --- reverse mode ----------------------------------------------------------------------
    def backward(self, grad=None) -> None:
        """Accumulate d(self)/d(leaf) contracted with ``grad`` into every leaf's ``.grad``.

        Args:
            grad: the gradient of some scalar with respect to this tensor, same shape
                as ``self`` (array or Tensor). May be omitted only when this tensor has
                exactly one element (then it is 1).

        Cost: one call of each recorded VJP; memory: one gradient per live node.
        Gradients already in ``.grad`` are added to, not replaced (call ``zero_grad``
        or set ``.grad = None`` between steps).
        """
        if not self.requires_grad:
            raise RuntimeError(
                "backward() called on a tensor that does not require grad: no input of the "
                "computation had requires_grad=True (or it ran under no_grad())"
            )
        xp = get_xp(self.data)
        if grad is None:
            if self.data.size != 1:
                raise ValueError(
                    f"backward() on a tensor of shape {self.shape} needs an explicit grad of "
                    "that shape; only one-element tensors default to grad=1"
                )
            grad = xp.ones_like(self.data)
        else:
            if isinstance(grad, Tensor):
                grad = grad.data
            get_xp(self.data, grad)  # raises on a NumPy/CuPy mix
            grad = xp.asarray(grad)
            if grad.dtype.kind not in "biufc" or (grad.dtype.kind == "c" and self.dtype.kind != "c"):
                raise TypeError(f"backward(grad): grad must be a real numeric array for a {self.dtype} tensor, "
                                f"got dtype {grad.dtype}")
            if tuple(grad.shape) != self.shape:
                raise ValueError(
                    f"backward(grad): grad must have the tensor's shape {self.shape}, got {tuple(grad.shape)}"
                )
            if grad.dtype != self.dtype:
                grad = grad.astype(self.dtype)

        order = _topological_order(self)
        grads = {id(self): grad}
        # arrays already handed to some .grad (or owned by the caller): store a copy instead,
        # so no two .grad arrays share memory and the caller's array is never aliased
        claimed = {id(grad)}
        deferred = []  # (leaf, node, Deferred): gradients a worker thread is still computing
        unresolved_before = len(_UNRESOLVED.items)
        finished = False
        try:
            for node in order:
                g = grads.pop(id(node), None)
                if g is None:
                    continue
                if not node._parents:
                    _accumulate_leaf(node, g, claimed)
                    continue
                if callable(node._vjps):  # one pass for every input (see ``record``)
                    wanted = tuple(p.requires_grad for p in node._parents)
                    results = node._vjps(g, wanted)
                else:
                    results = (None if vjp is None or not parent.requires_grad else vjp(g)
                               for parent, vjp in zip(node._parents, node._vjps))
                for parent, pg in zip(node._parents, results):
                    if pg is None or not parent.requires_grad:
                        continue
                    if isinstance(pg, Deferred):
                        if not parent._parents:  # a leaf: nothing waits for it but .grad
                            deferred.append((parent, node, pg))
                            continue
                        pg = pg.result()
                    pg = _checked_gradient(node, parent, pg, xp)
                    key = id(parent)
                    grads[key] = pg if key not in grads else _add(grads[key], pg, xp)
            finished = True
        finally:
            # resolve every deferred gradient even when a VJP failed: that also ends the
            # workers' use of the cores (and of a one-thread BLAS setting)
            error = None
            for leaf, node, pending in deferred:
                try:
                    value = pending.result()
                except BaseException as exc:  # noqa: BLE001  (re-raised below, or the VJP's error wins)
                    error = error or exc
                    continue
                if finished and error is None:
                    _accumulate_leaf(leaf, _checked_gradient(node, leaf, value, xp), claimed)
            if not finished:
                # Deferreds an op created but the engine never received (it failed between
                # that op's VJP calls): resolve them too, discarding their values
                for pending in list(_UNRESOLVED.items[unresolved_before:]):
                    try:
                        pending.result()
                    except BaseException:  # noqa: BLE001,S110  (the original error is the one raised)
                        pass
            if finished and error is not None:
                raise error

    # Operators (+, -, *, @, indexing, reshape, ...) are attached in ops.py.


class Deferred:
    """A gradient that a worker thread is still computing.

    A VJP may return one instead of an array; when the input is a leaf, ``backward()``
    runs the rest of the graph first and calls ``result()`` at the end (so the worker's
    products overlap the VJPs of the other ops); for any other input it calls ``result()``
    at once. ``result()`` returns the array, waiting for the worker; it must be safe to
    call more than once and also after another VJP of the same graph failed.
    """

    __slots__ = ("_resolve", "__weakref__")

    def __init__(self, resolve):
        self._resolve = resolve
        _UNRESOLVED.items.append(self)

    def result(self):
        """The gradient array, waiting for the worker thread that computes it."""
        try:
            return self._resolve()
        finally:
            try:
                _UNRESOLVED.items.remove(self)
            except ValueError:
                pass


class _Unresolved(threading.local):
    """Per thread: Deferred gradients created but not yet resolved. When a ``backward()``
    fails part-way (an error or KeyboardInterrupt between an op's VJP calls), the engine
    resolves the ones created during it, so no worker (and no one-thread BLAS setting) is
    left behind."""

    def __init__(self):
        self.items = []


_UNRESOLVED = _Unresolved()


def _checked_gradient(node: Tensor, parent: Tensor, pg, xp):
    """A VJP's result as an array of the parent's shape and dtype (internal errors loud)."""
    if not isinstance(pg, xp.ndarray):  # NumPy ufuncs turn 0-d results into scalars
        pg = xp.asarray(pg)
    if tuple(pg.shape) != parent.shape:
        raise RuntimeError(
            f"internal error: VJP of op '{node._op}' returned a gradient of shape "
            f"{tuple(pg.shape)} for an input of shape {parent.shape}"
        )
    if pg.dtype != parent.data.dtype:
        if not _is_float_dtype(parent.data.dtype):
            # requires_grad was set by assignment on an integer/bool tensor: casting the
            # gradient to its dtype would truncate it
            raise TypeError(f"a gradient reached a {parent.data.dtype} tensor that requires grad; only "
                            f"floating-point tensors can (set requires_grad on a float tensor)")
        pg = pg.astype(parent.data.dtype)
    return pg


def _add(a, b, xp):
    """``a + b`` as a new array (NumPy's sum of two 0-d arrays is a scalar: made an array again)."""
    out = a + b
    return out if out.ndim or not isinstance(out, numpy.generic) else xp.asarray(out)


#: leaf gradients are read, added to and replaced under this lock: two threads running
#: ``backward`` into one shared parameter would otherwise lose updates (NumPy releases the
#: GIL inside the add)
_LEAF_LOCK = threading.Lock()


def _accumulate_leaf(node: Tensor, g, claimed: set) -> None:
    with _LEAF_LOCK:
        if node.grad is not None:
            node.grad = _add(node.grad, g, get_xp(g))
            return
        if id(g) in claimed or getattr(g, "base", None) is not None or g is node.data:
            g = g.copy()
        claimed.add(id(g))
        node.grad = g


def _topological_order(root: Tensor) -> list:
    """Nodes reachable from ``root`` through inputs that require grad, root first.

    Iterative depth-first search (no recursion limit); the order is deterministic
    because inputs are kept in tuples.
    """
    post = []
    visited = set()
    stack = [(root, False)]
    while stack:
        node, done = stack.pop()
        if done:
            post.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        for parent in node._parents:
            if parent.requires_grad and id(parent) not in visited:
                stack.append((parent, False))
    post.reverse()
    return post


def record(op: str, data, inputs: tuple, vjps: tuple) -> Tensor:
    """Wrap an op's output array as a Tensor and, when needed, remember how to differentiate it.

    Args:
        op: the op's name (shown in errors).
        data: the output array.
        inputs: the input Tensors.
        vjps: one function per input mapping the output gradient (an array of
            ``data``'s shape) to that input's gradient (an array of the input's
            shape), or None for inputs that are not differentiable; or, for a fused op
            that computes all its inputs' gradients in one pass, ONE function
            ``vjps(g, wanted) -> sequence`` with one entry per input (an array, a
            ``Deferred``, or None), called once per backward; ``wanted[i]`` tells whether
            input i needs a gradient in this backward.
    """
    if not isinstance(data, _NDARRAY) and not is_cupy_array(data):
        data = get_xp(data).asarray(data)  # NumPy reductions may return scalars
    out = object.__new__(Tensor)
    out.data = data
    out.grad = None
    out._op = None
    out._gathered = None
    if is_grad_enabled() and any(t.requires_grad for t in inputs):
        out.requires_grad = True
        out._parents = tuple(inputs)
        out._vjps = vjps if callable(vjps) else tuple(vjps)
        out._op = op
    else:
        out.requires_grad = False
        out._parents = ()
        out._vjps = ()
    return out
