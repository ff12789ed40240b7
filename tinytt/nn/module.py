"""``Module``, ``Parameter`` and ``Sequential``: the base of every layer.

A ``Module`` finds its children by looking at its attributes, in the order they were
first assigned (``vars(self)`` keeps insertion order):

- a ``Parameter`` is a trainable array of this module;
- a ``Module`` is a child whose parameters are named ``<attr>.<name>``;
- a list or tuple of Modules/Parameters is a numbered group: ``<attr>.<i>.<name>``;
- a dict of them (string keys) is a named group: ``<attr>.<key>.<name>``, in the dict's order
  (PyTorch needs ``nn.ModuleDict`` for this and silently skips a plain dict);
- groups may nest (``[[a, b], [c]]`` names ``<attr>.0.1.<name>``).

Plain ``Tensor`` attributes (not ``Parameter``) are not parameters. A parameter shared by
two modules is listed once, under the first name met; a module reachable again (a child
holding its parent, a module holding itself) is walked once. Walks use an explicit stack,
not recursion.
"""

from __future__ import annotations

import numbers

from collections import namedtuple

import numpy

from .._validate import bool_arg
from ..backend import get_xp, is_cupy_array, to_numpy
from ..tensor import Tensor

__all__ = ["Parameter", "Module", "Sequential", "LoadResult"]

LoadResult = namedtuple("LoadResult", ["missing_keys", "unexpected_keys"])


class Parameter(Tensor):
    """A leaf Tensor that a Module trains: always ``requires_grad=True`` and floating point.

    Args:
        data: a backend array (used without copying) or anything ``xp.asarray`` accepts.
        dtype: optional dtype to convert to.
    """

    __slots__ = ()

    def __init__(self, data, dtype=None):
        super().__init__(data, requires_grad=True, dtype=dtype)
        if self.dtype.kind != "f":
            raise TypeError(f"Parameter: data must be floating point (float16, float32 or float64), got "
                            f"{self.dtype}; the optimizers and layers update real parameters")

    def __repr__(self) -> str:
        return f"Parameter(shape={self.shape}, dtype={self.dtype})"


def _children(obj):
    """(name, child) pairs of a module's attributes that are Parameters, Modules or groups.

    Groups may nest (a list of lists of Modules, a dict of lists, ...): the names join the
    indices and keys with dots, ``<attr>.<i>.<j>.<name>``. A container that holds itself is
    walked once."""
    for name, value in vars(obj).items():
        yield from _group_items(obj, name, value, set())


def _group_items(obj, name, value, active):
    if isinstance(value, (Parameter, Module)):
        yield name, value
        return
    if isinstance(value, (list, tuple)):
        items = ((f"{name}.{i}", item) for i, item in enumerate(value))
    elif isinstance(value, dict):
        items = []
        for key, item in value.items():
            if not isinstance(key, str) and _holds_children(item, set()):
                raise TypeError(f"{type(obj).__name__}.{name}: a dict holding Modules or Parameters "
                                f"needs str keys (they become parameter names), got {key!r}")
            items.append((f"{name}.{key}", item))
    else:
        return
    if id(value) in active:
        return
    active.add(id(value))
    try:
        for n, item in items:
            yield from _group_items(obj, n, item, active)
    finally:
        active.discard(id(value))


def _holds_children(value, active) -> bool:
    """True when ``value`` is, or (nested) contains, a Parameter or Module."""
    if isinstance(value, (Parameter, Module)):
        return True
    if isinstance(value, (list, tuple, dict)) and id(value) not in active:
        active.add(id(value))
        items = value.values() if isinstance(value, dict) else value
        return any(_holds_children(v, active) for v in items)
    return False


class Module:
    """Base class of layers and models.

    Subclasses assign Parameters, Modules (or lists of Modules) as attributes in
    ``__init__`` and define ``forward``; calling the module calls ``forward``.
    ``training`` is True after construction; ``eval()``/``train()`` set it recursively.
    """

    training = True

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):  # pragma: no cover - abstract
        """The computation; subclasses define it (calling the module calls it)."""
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    # --- walking the tree --------------------------------------------------------------------
    def named_modules(self, prefix: str = ""):
        """(dotted name, module) for this module and every descendant, depth first, in
        attribute order; each module once."""
        seen = set()
        stack = [(prefix, self)]
        while stack:
            name, mod = stack.pop()
            if id(mod) in seen:
                continue
            seen.add(id(mod))
            yield name, mod
            kids = [(f"{name}.{n}" if name else n, c) for n, c in _children(mod) if isinstance(c, Module)]
            stack.extend(reversed(kids))

    def modules(self):
        """This module and every descendant."""
        for _, m in self.named_modules():
            yield m

    def named_parameters(self, prefix: str = ""):
        """(dotted name, Parameter) pairs in deterministic attribute-assignment order,
        each parameter once (under the first name that reaches it).

        Raises ValueError when two different parameters get the same name (a dict key
        with a dot can spell a child's dotted name): ``state_dict`` would keep only one.
        """
        seen = set()
        walked = set()      # modules already expanded (a cycle would otherwise never end)
        names = set()
        stack = [(prefix, self)]
        while stack:
            name, obj = stack.pop()
            if isinstance(obj, Module):
                if id(obj) in walked:
                    continue
                walked.add(id(obj))
            if isinstance(obj, Parameter):
                if id(obj) not in seen:
                    if name in names:
                        raise ValueError(f"{type(self).__name__}: two different parameters are both named "
                                         f"{name!r} (a dict key containing '.' can spell a child's dotted "
                                         f"name); rename one, or state_dict() would keep only one of them")
                    seen.add(id(obj))
                    names.add(name)
                    yield name, obj
                continue
            kids = [(f"{name}.{n}" if name else n, c) for n, c in _children(obj)]
            stack.extend(reversed(kids))

    def parameters(self):
        """The Parameters of this module and its descendants (see ``named_parameters``)."""
        return [p for _, p in self.named_parameters()]

    def num_parameters(self) -> int:
        """Total number of scalar parameters."""
        return int(sum(p.size for p in self.parameters()))

    # --- modes and gradients -----------------------------------------------------------------
    def train(self, mode: bool = True) -> "Module":
        """Set ``training`` on this module and every descendant; return self."""
        mode = bool_arg(f"{type(self).__name__}.train", "mode", mode)
        for m in self.modules():
            m.training = mode
        return self

    def eval(self) -> "Module":
        """``train(False)``: dropout off, evaluation behaviour everywhere."""
        return self.train(False)

    def zero_grad(self) -> None:
        """Set ``.grad = None`` on every parameter."""
        for p in self.parameters():
            p.grad = None

    # --- state ---------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """``{dotted name: array}``: a copy of every parameter's data (on its backend),
        in ``named_parameters`` order. ``tinytt.io.save`` stores it as is."""
        return {name: get_xp(p.data).array(p.data, copy=True) for name, p in self.named_parameters()}

    def load_state_dict(self, state_dict, strict: bool = True) -> LoadResult:
        """Copy arrays from ``state_dict`` into the parameters, in place.

        Args:
            state_dict: ``{name: array or Tensor}`` as returned by ``state_dict()`` (possibly
                through ``tinytt.io.save/load``). NumPy arrays are moved to each
                parameter's backend.
            strict: when True, the names must match exactly (missing and unexpected
                names are listed in the error); when False, only names present in both
                are loaded.

        Returns:
            ``LoadResult(missing_keys, unexpected_keys)``.

        Raises:
            KeyError: ``strict`` and the names differ.
            ValueError: an array's shape differs from its parameter's.
            TypeError: an array's dtype differs, or a value is not an array.
        Nothing is changed when an error is raised.
        """
        if not isinstance(state_dict, dict):
            raise TypeError(f"load_state_dict: expected a dict of arrays, got {type(state_dict).__name__}")
        strict = bool_arg("load_state_dict", "strict", strict)
        params = dict(self.named_parameters())
        missing = [n for n in params if n not in state_dict]
        unexpected = [n for n in state_dict if n not in params]
        if strict and (missing or unexpected):
            raise KeyError(
                f"load_state_dict: names do not match {type(self).__name__}'s parameters; "
                f"missing: {missing}; unexpected: {unexpected}"
            )
        staged = []
        for name, p in params.items():
            if name not in state_dict:
                continue
            value = state_dict[name]
            if isinstance(value, Tensor):
                value = value.data
            if not (isinstance(value, (numpy.ndarray, numpy.generic)) or is_cupy_array(value)):
                kind = f"{type(value).__module__}.{type(value).__qualname__}"   # torch.Tensor, not Tensor
                raise TypeError(f"load_state_dict: '{name}' must be a NumPy/CuPy array or a tinytt Tensor, "
                                f"got {kind}")
            if tuple(value.shape) != p.shape:
                raise ValueError(
                    f"load_state_dict: '{name}' has shape {tuple(value.shape)}, the parameter has shape {p.shape}"
                )
            if value.dtype != p.dtype:
                raise TypeError(
                    f"load_state_dict: '{name}' has dtype {value.dtype}, the parameter has dtype {p.dtype}"
                )
            if not getattr(p.data.flags, "writeable", True):   # (CuPy arrays have no such flag)
                raise ValueError(f"load_state_dict: parameter '{name}' is read-only (its array is not "
                                 f"writeable); load_state_dict copies into parameters in place")
            xp = get_xp(p.data)
            if xp is numpy:
                value = to_numpy(value)
            else:
                value = xp.asarray(value)
            staged.append((p, value))
        for p, value in staged:
            p.data[...] = value
        return LoadResult(missing, unexpected)

    def extra_repr(self) -> str:
        """The layer's settings shown inside ``repr(module)`` (subclasses override it)."""
        return ""

    def __repr__(self) -> str:
        return _module_repr(self, set())


def _module_repr(mod, active) -> str:
    """``repr(mod)``: a module already being printed higher up (a cycle) shows as ``<cycle>``."""
    if type(mod).__repr__ is not Module.__repr__:   # a layer with its own __repr__
        return repr(mod)
    lines = [f"{type(mod).__name__}({mod.extra_repr()}"]
    kids = [(n, c) for n, c in _children(mod) if isinstance(c, Module)]
    if not kids:
        return lines[0] + ")"
    active.add(id(mod))
    try:
        for n, c in kids:
            sub = f"<cycle: {type(c).__name__}>" if id(c) in active else _module_repr(c, active)
            lines.append(f"  ({n}): " + sub.replace("\n", "\n  "))
    finally:
        active.discard(id(mod))
    return "\n".join(lines) + "\n)"


class Sequential(Module):
    """Modules applied one after another; children are named ``"0"``, ``"1"``, ...

    ``Sequential(a, b)(x) == b(a(x))``; indexing and ``len`` work like a list, and a slice
    is a new ``Sequential`` of the same (shared, not copied) modules.
    """

    def __init__(self, *modules):
        if len(modules) == 1 and isinstance(modules[0], (list, tuple)):
            modules = tuple(modules[0])
        for i, m in enumerate(modules):
            if not isinstance(m, Module):
                raise TypeError(f"Sequential: item {i} is a {type(m).__name__}, not a Module")
            setattr(self, str(i), m)
        self._n = len(modules)

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i):
        if isinstance(i, slice):
            return Sequential(*[getattr(self, str(k)) for k in range(*i.indices(self._n))])
        if isinstance(i, bool) or not isinstance(i, numbers.Integral):
            raise TypeError(f"Sequential indices must be ints or slices, got {type(i).__name__}")
        if not -self._n <= i < self._n:
            raise IndexError(f"Sequential index {i} out of range for {self._n} modules")
        return getattr(self, str(i % self._n))

    def __iter__(self):
        return (getattr(self, str(i)) for i in range(self._n))

    def forward(self, x):
        """``x`` through each module in order; the output of one is the input of the next."""
        for m in self:
            x = m(x)
        return x
