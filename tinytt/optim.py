"""First-order optimizers (SGD with momentum, Adam, AdamW) and gradient-norm clipping.

A parameter is any object with

- ``.data``: a NumPy or CuPy real floating-point array, updated **in place** by ``step()``
  (so references to it held by a model stay valid), and
- ``.grad``: an array of the same shape, dtype and backend, or ``None`` (then the
  parameter is skipped by ``step()`` and by :func:`clip_grad_norm`).

``tinytt.Tensor`` and ``tinytt.nn.Parameter`` are such objects. The update rules follow
PyTorch's formulation (see each class). Optimizer state (moment buffers) has the dtype
and backend of its parameter (float32 parameters keep float32 state, nothing is upcast;
the one exception: Adam's moments of a float16 parameter are float32, see :class:`Adam`);
step counts are Python ints and scalar factors such as bias corrections are computed on
the host in Python floats, so ``step()`` never synchronises with the GPU.

Updates use ``xp`` ufuncs with ``out=`` into the state buffers and a scratch buffer that
the optimizer keeps (one flat array per backend and dtype, as large as the largest
parameter, two of them when a second temporary is needed), so the hot path allocates nothing
large. On NumPy, Adam runs its dozen elementwise passes over cache-sized chunks of each
(contiguous) parameter, the chunks shared out over the CPU cores by
:func:`tinytt.parallel.map_blocks`: one trip through memory instead of twelve, and
bit-identical to the unchunked update (each block uses its own chunk-sized scratch, 256 KiB
in float32, allocated per step).

Non-finite gradients are not caught (as in PyTorch): a NaN or infinite gradient turns the
parameter NaN at the next step. In float32, Adam's ``(1 - beta2) g^2`` overflows to inf for
``|g|`` above ~5.8e20 (with beta2 = 0.999), after which that entry's steps are 0. Check
with ``clip_grad_norm(..., error_if_nonfinite=True)`` when gradients may blow up.

``state_dict()`` returns nested dicts of arrays and scalars that :func:`tinytt.io.save`
can store; ``load_state_dict()`` checks it against the parameters and hyperparameters
and copies its arrays to the parameters' backend.
"""

from __future__ import annotations

import math
import numbers

import numpy
from numpy.lib.array_utils import byte_bounds

from tinytt.backend import get_xp, is_cupy_array, to_numpy
from tinytt.parallel import map_blocks

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "clip_grad_norm"]

_STATE_FORMAT = "tinytt.optim"


def _is_array(x) -> bool:
    return isinstance(x, numpy.ndarray) or is_cupy_array(x)


def _check_number(name: str, value, *, low=0.0, low_open=False, high=None, high_open=True) -> float:
    """Validate a real hyperparameter in [low, high) (bounds as flagged) and return it as float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    value = float(value)
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if value < low or (low_open and value == low):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}, got {value!r}")
    if high is not None and (value > high or (high_open and value == high)):
        raise ValueError(f"{name} must be {'<' if high_open else '<='} {high}, got {value!r}")
    return value


def _check_betas(betas) -> tuple:
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"betas must be a pair (beta1, beta2) with 0 <= beta < 1, got {betas!r}")
    return (
        _check_number("betas[0]", betas[0], low=0.0, high=1.0),
        _check_number("betas[1]", betas[1], low=0.0, high=1.0),
    )


#: elements per piece of a chunked NumPy update (fits the per-core cache with its scratch)
_CHUNK = 65536


def _check_no_overlap(params) -> None:
    """ValueError when two parameters' NumPy arrays overlap in memory (``Parameter(a)`` and
    ``Parameter(a.T)``): both would be stepped, each with its own moments. Exact
    (``numpy.shares_memory``) where the bounds overlap; CuPy arrays are compared by identity
    only, above."""
    # sweep over the arrays' byte ranges sorted by start: only ranges that overlap are compared
    # exactly, so the check is O(P log P) for P parameters in separate buffers
    host = sorted((byte_bounds(p.data), i, p.data) for i, p in enumerate(params)
                  if isinstance(p.data, numpy.ndarray) and p.data.size)
    open_ranges = []                     # (end, index, array) of ranges that may still overlap
    for (start, end), i, a in host:
        open_ranges = [r for r in open_ranges if r[0] > start]
        for _, j, b in open_ranges:
            if numpy.shares_memory(a, b):
                i0, j0 = sorted((i, j))
                raise ValueError(f"params[{i0}] and params[{j0}] overlap in memory (views of one array): "
                                 f"each would be updated with its own state, the shared entries twice")
        open_ranges.append((end, i, a))


def _can_chunk(*arrays) -> bool:
    """True when every array is C-contiguous with the same shape, so flat slices line up."""
    return all(a.flags.c_contiguous and a.shape == arrays[0].shape for a in arrays)


def _device_key(arr):
    """Backend + device identity of an array, to key the scratch buffers."""
    if is_cupy_array(arr):
        return ("cupy", arr.device.id)
    return ("numpy", None)


class Optimizer:
    """Base class: holds the parameter list, per-parameter state and hyperparameters.

    Subclasses set ``self.hyperparameters`` (names of the attributes saved in the state
    dict and compared on load), ``_state_keys`` (names of the per-parameter arrays) and
    implement ``_update(index, p, g, state)``.

    Args:
        params: an iterable of parameters (objects with ``.data`` and ``.grad``); it is
            turned into a list once, so a generator such as ``model.parameters()`` is fine.

    Raises:
        ValueError: the list is empty or holds the same parameter (or the same array) twice,
            or two NumPy parameters whose arrays overlap (views of one array).
        TypeError: a parameter has no ``.data`` or its ``.data`` is not a floating-point
            NumPy/CuPy array.
    """

    hyperparameters: tuple = ("lr",)
    _state_keys: tuple = ()

    def __init__(self, params, lr: float):
        if _is_array(params) or hasattr(params, "data"):
            raise TypeError(
                "params must be an iterable of parameters (e.g. model.parameters() or [p1, p2]), "
                f"got a single {type(params).__name__}; wrap it in a list"
            )
        try:
            params = list(params)
        except TypeError:
            raise TypeError(
                f"params must be an iterable of parameters, got {type(params).__name__}"
            ) from None
        if not params:
            raise ValueError("params is empty: the optimizer got no parameters to update")
        seen = set()
        for i, p in enumerate(params):
            if not hasattr(p, "data") or not hasattr(p, "grad"):
                raise TypeError(
                    f"params[{i}] ({type(p).__name__}) must have .data and .grad attributes"
                )
            if not _is_array(p.data) or p.data.dtype.kind != "f":
                raise TypeError(
                    f"params[{i}].data must be a floating-point NumPy or CuPy array, got "
                    f"{type(p.data).__name__} of dtype {getattr(p.data, 'dtype', None)}"
                )
            if id(p) in seen or id(p.data) in seen:
                raise ValueError(f"params[{i}] appears more than once in params (as itself or as a second "
                                 f"Tensor over the same array, which would be updated twice per step)")
            seen.add(id(p))
            seen.add(id(p.data))
        _check_no_overlap(params)
        self.params = params
        self.lr = lr
        self.state = [dict() for _ in params]
        self._scratch: dict = {}

    @property
    def lr(self) -> float:
        """Learning rate (>= 0); may be changed between steps, e.g. by a schedule."""
        return self._lr

    @lr.setter
    def lr(self, value) -> None:
        self._lr = _check_number("lr", value, low=0.0)

    # ---------------------------------------------------------------- stepping
    def zero_grad(self) -> None:
        """Set ``p.grad = None`` for every parameter (the next backward starts fresh)."""
        for p in self.params:
            p.grad = None

    def _grad(self, i: int, p):
        """The parameter's gradient after checking shape/dtype/backend; None to skip it."""
        g = p.grad
        if g is None:
            return None
        if not (_is_array(g) or isinstance(g, numpy.generic)):  # NumPy ufuncs give 0-d scalars
            raise TypeError(f"params[{i}].grad must be a NumPy/CuPy array or None, got {type(g).__name__}")
        get_xp(p.data, g)  # TypeError when the backends differ
        if not getattr(p.data.flags, "writeable", True):   # (CuPy arrays have no such flag)
            raise ValueError(f"params[{i}].data is read-only; the optimizer updates parameters in place")
        if g.shape != p.data.shape:
            raise ValueError(
                f"params[{i}].grad has shape {tuple(g.shape)} but params[{i}].data has shape "
                f"{tuple(p.data.shape)}"
            )
        if g.dtype != p.data.dtype:
            raise TypeError(
                f"params[{i}].grad has dtype {g.dtype} but params[{i}].data has dtype "
                f"{p.data.dtype}; gradients must have their parameter's dtype"
            )
        return g

    def _tmp(self, like, slot: int):
        """A scratch array shaped like ``like`` (contents undefined), reused across steps.

        One flat buffer per (backend, device, dtype, slot), grown to the largest parameter;
        a prefix view is reshaped, so nothing is allocated once it is large enough.
        """
        key = _device_key(like) + (like.dtype.str, slot)
        buf = self._scratch.get(key)
        size = int(like.size)
        if buf is None or buf.size < size:
            xp = get_xp(like)
            buf = xp.empty(max(size, 1), dtype=like.dtype)
            self._scratch[key] = buf
        return buf[:size].reshape(like.shape)

    def step(self) -> None:
        """Update every parameter whose ``.grad`` is not None, in place.

        Every gradient is checked (backend, shape, dtype) and every parameter to update must be
        writable before any parameter changes, so a bad one raises with all parameters and
        optimizer state untouched.
        """
        grads = [self._grad(i, p) for i, p in enumerate(self.params)]
        for i, (p, g) in enumerate(zip(self.params, grads)):
            if g is not None:
                self._update(i, p, g, self.state[i])

    def _update(self, i, p, g, state) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    # ---------------------------------------------------------------- state dicts
    def _hyper_values(self) -> dict:
        out = {}
        for name in self.hyperparameters:
            v = getattr(self, name)
            out[name] = tuple(v) if isinstance(v, (tuple, list)) else v
        return out

    def state_dict(self) -> dict:
        """The optimizer's state as nested dicts of arrays and Python scalars.

        Layout::

            {"format": "tinytt.optim", "type": "Adam",
             "hyperparameters": {"lr": 0.001, "betas": (0.9, 0.999), ...},
             "params": {"0": {"shape": [...], "dtype": "float32"}, ...},
             "state": {"0": {"step": 10, "exp_avg": array, "exp_avg_sq": array}, ...}}

        Parameters without state yet (never had a gradient) have an empty dict. Arrays are
        copies on the parameters' backend (so later steps do not change a saved state dict);
        :func:`tinytt.io.save` stores it as is.
        """
        state = {}
        for i, st in enumerate(self.state):
            entry = {}
            for k, v in st.items():
                entry[k] = get_xp(v).array(v, copy=True) if _is_array(v) else v
            state[str(i)] = entry
        return {
            "format": _STATE_FORMAT,
            "type": type(self).__name__,
            "hyperparameters": self._hyper_values(),
            "params": {
                str(i): {"shape": [int(n) for n in p.data.shape], "dtype": str(p.data.dtype)}
                for i, p in enumerate(self.params)
            },
            "state": state,
        }

    def load_state_dict(self, state_dict: dict, hyperparameters: str = "check") -> None:
        """Restore state saved by :meth:`state_dict` (possibly through ``tinytt.io.save/load``).

        Args:
            state_dict: the dict returned by ``state_dict()``; its arrays may be NumPy or CuPy
                and are copied to each parameter's backend.
            hyperparameters: ``"check"`` (default): every hyperparameter must equal the saved
                one, else ValueError; ``"load"``: adopt the saved values (e.g. a learning
                rate changed by a schedule).

        Raises:
            ValueError: a different optimizer type, number of parameters, parameter shape
                or dtype, state array shape/dtype, unknown/missing state entries, or (with
                ``"check"``) a hyperparameter that differs. Nothing is changed on error.
        """
        if hyperparameters not in ("check", "load"):
            raise ValueError(f"hyperparameters must be 'check' or 'load', got {hyperparameters!r}")
        name = type(self).__name__
        if not isinstance(state_dict, dict) or state_dict.get("format") != _STATE_FORMAT:
            raise ValueError(
                "state_dict must be a dict returned by Optimizer.state_dict() "
                f"(with format {_STATE_FORMAT!r})"
            )
        if state_dict.get("type") != name:
            raise ValueError(
                f"state_dict is for optimizer {state_dict.get('type')!r}, cannot load it into {name}"
            )
        saved_params = state_dict.get("params")
        saved_state = state_dict.get("state")
        saved_hyper = state_dict.get("hyperparameters")
        if not isinstance(saved_params, dict) or not isinstance(saved_state, dict) or not isinstance(
            saved_hyper, dict
        ):
            raise ValueError("state_dict must have dict entries 'params', 'state' and 'hyperparameters'")
        n = len(self.params)
        expected_keys = {str(i) for i in range(n)}
        if len(saved_params) != n or set(saved_params) != expected_keys:
            raise ValueError(
                f"state_dict holds {len(saved_params)} parameters but this {name} has {n}"
            )
        for i, p in enumerate(self.params):
            meta = saved_params[str(i)]
            if not isinstance(meta, dict):
                raise ValueError(f"state_dict 'params' entry {i} must be a dict with 'shape' and 'dtype'")
            try:
                shape = tuple(int(s) for s in meta.get("shape", ()))
            except (TypeError, ValueError):
                raise ValueError(f"state_dict 'params' entry {i} has shape {meta.get('shape')!r}, not a list "
                                 f"of ints") from None
            if shape != tuple(p.data.shape):
                raise ValueError(
                    f"parameter {i}: state_dict has shape {shape}, the parameter has {tuple(p.data.shape)}"
                )
            if meta.get("dtype") != str(p.data.dtype):
                raise ValueError(
                    f"parameter {i}: state_dict has dtype {meta.get('dtype')}, the parameter has "
                    f"{p.data.dtype}"
                )
        # hyperparameters
        if set(saved_hyper) != set(self.hyperparameters):
            raise ValueError(
                f"state_dict hyperparameters {sorted(saved_hyper)} do not match {name}'s "
                f"{sorted(self.hyperparameters)}"
            )
        current = self._hyper_values()
        norm = {k: (tuple(v) if isinstance(v, (tuple, list)) else v) for k, v in saved_hyper.items()}
        if hyperparameters == "check":
            for k in self.hyperparameters:
                if norm[k] != current[k]:
                    raise ValueError(
                        f"hyperparameter {k}: state_dict has {norm[k]!r}, this {name} has "
                        f"{current[k]!r}; construct the optimizer with the saved value or pass "
                        "hyperparameters='load' to adopt it"
                    )
        else:
            probe = object.__new__(type(self))  # validate the saved values without touching self
            probe.__dict__.update(self.__dict__)
            try:
                for k in self.hyperparameters:
                    setattr(probe, k, norm[k])
                probe._validate()
            except (TypeError, ValueError) as exc:
                raise ValueError(f"state_dict hyperparameters: {exc}") from None
        # per-parameter state
        if set(saved_state) != expected_keys:
            raise ValueError(f"state_dict 'state' must have keys '0'..'{n - 1}', got {sorted(saved_state)}")
        new_state = []
        for i, p in enumerate(self.params):
            entry = saved_state[str(i)]
            if not isinstance(entry, dict):
                raise ValueError(f"state of parameter {i} must be a dict, got {type(entry).__name__}")
            new_state.append(self._load_entry(i, p, entry))
        if hyperparameters == "load":
            for k in self.hyperparameters:
                setattr(self, k, norm[k])
            self._validate()
        self.state = new_state

    def _validate(self) -> None:
        """Check the hyperparameters' values (subclasses extend); raise ValueError naming one."""
        self.lr = self.lr

    def _state_dtype(self, p):
        """dtype of the state arrays of parameter ``p``: the parameter's own."""
        return p.data.dtype

    def _load_entry(self, i: int, p, entry: dict) -> dict:
        """Check one parameter's saved state and copy its arrays to ``p``'s backend."""
        if not entry:
            return {}
        keys = set(self._state_keys)
        if set(entry) != keys:
            raise ValueError(
                f"state of parameter {i} has entries {sorted(entry)}, expected {sorted(keys)}"
            )
        xp = get_xp(p.data)
        out = {}
        for k, v in entry.items():
            if k == "step":
                if isinstance(v, bool) or not isinstance(v, (int, numpy.integer)) or v < 1:
                    raise ValueError(f"state of parameter {i}: 'step' must be an int >= 1, got {v!r}")
                out[k] = int(v)
                continue
            if not _is_array(v):
                raise ValueError(f"state of parameter {i}: {k!r} must be an array, got {type(v).__name__}")
            old_float16 = v.dtype == p.data.dtype == numpy.float16   # Adam state saved before session 14
            if tuple(v.shape) != tuple(p.data.shape) or (v.dtype != self._state_dtype(p) and not old_float16):
                raise ValueError(
                    f"state of parameter {i}: {k!r} has shape {tuple(v.shape)} and dtype {v.dtype}, "
                    f"expected {tuple(p.data.shape)} and {self._state_dtype(p)}"
                )
            if xp is numpy:
                out[k] = numpy.array(to_numpy(v), copy=True, dtype=self._state_dtype(p))
            else:
                out[k] = xp.array(v, copy=True, dtype=self._state_dtype(p))  # host/device -> device copy
        return out

    def __repr__(self) -> str:
        hp = ", ".join(f"{k}={v!r}" for k, v in self._hyper_values().items())
        return f"{type(self).__name__}({len(self.params)} params, {hp})"


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum and L2 weight decay.

    With gradient ``g`` of parameter ``p`` (PyTorch's formulation, no dampening)::

        d = g + weight_decay * p
        buf = momentum * buf + d            (first step: buf = d)
        d = d + momentum * buf  if nesterov  else  buf      (when momentum > 0)
        p -= lr * d

    Args:
        params: iterable of parameters.
        lr: learning rate, >= 0.
        momentum: >= 0 (0 disables the buffer).
        nesterov: Nesterov momentum; requires momentum > 0.
        weight_decay: L2 coefficient, >= 0.

    State per parameter: ``momentum_buffer`` (same shape/dtype as the parameter) when
    momentum > 0. Cost per step: O(size) elementwise work per parameter.
    """

    hyperparameters = ("lr", "momentum", "nesterov", "weight_decay")
    _state_keys = ("momentum_buffer",)

    def __init__(self, params, lr: float, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0):
        super().__init__(params, lr)
        self.momentum = momentum
        self.nesterov = nesterov
        self.weight_decay = weight_decay
        self._validate()

    def _validate(self) -> None:
        super()._validate()
        self.momentum = _check_number("momentum", self.momentum, low=0.0)
        self.weight_decay = _check_number("weight_decay", self.weight_decay, low=0.0)
        if not isinstance(self.nesterov, (bool, numpy.bool_)):
            raise TypeError(f"nesterov must be a bool, got {type(self.nesterov).__name__}")
        self.nesterov = bool(self.nesterov)
        if self.nesterov and self.momentum <= 0.0:
            raise ValueError(f"nesterov=True requires momentum > 0, got momentum={self.momentum!r}")

    def _update(self, i, p, g, state) -> None:
        xp = get_xp(p.data)
        lr, mom, wd = self.lr, self.momentum, self.weight_decay
        d = g
        if wd != 0.0:
            d = self._tmp(p.data, 0)
            xp.multiply(p.data, wd, out=d)
            xp.add(g, d, out=d)
        if mom != 0.0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = xp.array(d, copy=True)
                state["momentum_buffer"] = buf
            else:
                xp.multiply(buf, mom, out=buf)
                xp.add(buf, d, out=buf)
            if self.nesterov:
                t = self._tmp(p.data, 1 if d is not g else 0)
                xp.multiply(buf, mom, out=t)
                xp.add(d, t, out=t)
                d = t
            else:
                d = buf
        t = d if (d is not g and d is not state.get("momentum_buffer")) else self._tmp(p.data, 0)
        xp.multiply(d, lr, out=t)
        xp.subtract(p.data, t, out=p.data)


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015, with bias correction) and optional L2 weight decay.

    With gradient ``g`` of parameter ``p`` and per-parameter step count ``t``::

        g = g + weight_decay * p                       (L2: added to the gradient)
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g**2
        p -= (lr / (1 - beta1**t)) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

    which is ``p -= lr * m_hat / (sqrt(v_hat) + eps)`` with ``m_hat = m / (1 - beta1**t)``
    and ``v_hat = v / (1 - beta2**t)``. The bias corrections are Python floats.

    Args:
        params: iterable of parameters.
        lr: learning rate, >= 0.
        betas: ``(beta1, beta2)``, each in [0, 1).
        eps: >= 0, added to the denominator.
        weight_decay: L2 coefficient, >= 0 (see :class:`AdamW` for decoupled decay).

    State per parameter: ``step`` (int), ``exp_avg`` and ``exp_avg_sq`` (parameter's
    shape and dtype; float32 for a float16 parameter, whose step runs in float32 and is
    rounded into it: float16 cannot hold ``eps`` = 1e-8 or ``(1 - beta2) g^2`` of a gradient
    below ~8e-3, and the update divided by zero, inf or NaN for every entry with a zero
    gradient). Cost per step: O(size) elementwise work per parameter.
    """

    hyperparameters = ("lr", "betas", "eps", "weight_decay")
    _state_keys = ("step", "exp_avg", "exp_avg_sq")
    _decoupled = False

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        super().__init__(params, lr)
        self.betas = betas
        self.eps = eps
        self.weight_decay = weight_decay
        self._validate()

    def _validate(self) -> None:
        super()._validate()
        self.betas = _check_betas(self.betas)
        self.eps = _check_number("eps", self.eps, low=0.0)
        self.weight_decay = _check_number("weight_decay", self.weight_decay, low=0.0)

    def _state_dtype(self, p):
        return numpy.dtype(numpy.float32) if p.data.dtype == numpy.float16 else p.data.dtype

    def _update(self, i, p, g, state) -> None:
        xp = get_xp(p.data)
        if not state:
            state["step"] = 0
            state["exp_avg"] = xp.zeros_like(p.data, dtype=self._state_dtype(p))
            state["exp_avg_sq"] = xp.zeros_like(p.data, dtype=self._state_dtype(p))
        state["step"] += 1
        m, v = state["exp_avg"], state["exp_avg_sq"]
        if xp is numpy and m.dtype == p.data.dtype and _can_chunk(p.data, g, m, v):
            flat = [a.reshape(-1) for a in (p.data, g, m, v)]

            def block(start, stop):
                s0 = numpy.empty(min(_CHUNK, stop - start), dtype=p.data.dtype)
                s1 = numpy.empty_like(s0) if self.weight_decay and not self._decoupled else None
                for a in range(start, stop, _CHUNK):
                    b = min(a + _CHUNK, stop)
                    self._adam_math(numpy, *(x[a:b] for x in flat), state["step"],
                                    s0[:b - a], None if s1 is None else s1[:b - a])

            map_blocks(block, p.data.size, min_size=_CHUNK)
        elif m.dtype != p.data.dtype:   # a float16 parameter: the step in float32, then rounded
            needs_wd = self.weight_decay != 0.0 and not self._decoupled
            p32, g32 = p.data.astype(m.dtype), g.astype(m.dtype)
            self._adam_math(xp, p32, g32, m, v, state["step"], xp.empty_like(p32),
                            xp.empty_like(p32) if needs_wd else None)
            p.data[...] = p32
        else:
            needs_wd = self.weight_decay != 0.0 and not self._decoupled
            self._adam_math(xp, p.data, g, m, v, state["step"], self._tmp(p.data, 0),
                            self._tmp(p.data, 1) if needs_wd else None)

    def _adam_math(self, xp, p, g, m, v, t, s, s_wd) -> None:
        """The update on arrays of one shape; ``s``, ``s_wd``: scratch arrays like ``p``."""
        lr, (b1, b2), eps, wd = self.lr, self.betas, self.eps, self.weight_decay
        if wd != 0.0:
            if self._decoupled:
                xp.multiply(p, 1.0 - lr * wd, out=p)
            else:
                xp.multiply(p, wd, out=s_wd)
                xp.add(g, s_wd, out=s_wd)
                g = s_wd
        xp.multiply(m, b1, out=m)
        xp.multiply(g, 1.0 - b1, out=s)
        xp.add(m, s, out=m)
        xp.multiply(v, b2, out=v)
        # (1 - b2) g first, then times g (PyTorch's addcmul order): g * g overflowed float32
        # for |g| > 1.8e19, making v inf and the step silently 0
        xp.multiply(g, 1.0 - b2, out=s)
        xp.multiply(s, g, out=s)
        xp.add(v, s, out=v)
        bc1 = 1.0 - b1 ** t
        bc2_sqrt = math.sqrt(1.0 - b2 ** t)
        # lr/bc1 * m / (sqrt(v)/bc2_sqrt + eps) == (lr bc2_sqrt / bc1) * m / (sqrt(v) + eps bc2_sqrt):
        # one elementwise pass fewer (12 instead of 13 per step)
        xp.sqrt(v, out=s)
        xp.add(s, eps * bc2_sqrt, out=s)
        xp.divide(m, s, out=s)
        xp.multiply(s, lr * bc2_sqrt / bc1, out=s)
        xp.subtract(p, s, out=p)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019).

    Before the Adam step of :class:`Adam` (run with no L2 term)::

        p -= lr * weight_decay * p      (computed as p *= 1 - lr * weight_decay)

    Args: as :class:`Adam`, with ``weight_decay`` defaulting to 1e-2.
    """

    _decoupled = True

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


#: below this sum of squares some squares may have underflowed (entries under ~1e-154 in
#: float64); above it what underflowed is below float64 rounding of the sum
_SAFE_SQUARE_SUM = 1e-280


def _scaled_norm(params) -> float:
    """Global L2 norm of the gradients without overflow or underflow: each gradient's norm
    as ``a * ||g / a||`` with ``a = max |g|``, then the same rescaling over those norms.
    Two more passes per gradient; only for sums of squares out of float64's safe range."""
    norms = []
    for p in params:
        g = p.grad
        xp = get_xp(g)
        flat = g.reshape(-1).astype(xp.float64, copy=False)
        a = float(xp.abs(flat).max()) if flat.size else 0.0
        if a == 0.0 or not math.isfinite(a):
            norms.append(a)
            continue
        scaled = flat / a
        norms.append(a * math.sqrt(float(xp.dot(scaled, scaled))))
    top = max(norms)
    if top == 0.0 or not math.isfinite(top):
        return top
    return top * math.sqrt(math.fsum((n / top) ** 2 for n in norms))


def clip_grad_norm(params, max_norm: float, error_if_nonfinite: bool = False) -> float:
    """Scale all gradients together so that their global L2 norm is at most ``max_norm``.

    ``total = sqrt(sum over parameters with a gradient of sum(g**2))``, accumulated in
    float64 and rescaled by the largest entry when the squares would overflow or underflow
    (gradients of 1e-200 or 1e200 get their true norm). Like PyTorch, every gradient is then
    multiplied by ``min(1, max_norm / (total + 1e-6))`` when that is below 1 (same dtype; a
    factor below the dtype's smallest normal number is applied as mantissa and exact power of
    two, so it keeps its digits; a gradient array shared by several parameters is scaled once). Parameters whose ``.grad``
    is None are skipped.

    Args:
        params: an iterable of parameters (objects with ``.grad``), or a single one.
        max_norm: >= 0; ``math.inf`` only measures the norm (nothing is scaled, unless the
            norm is itself infinite: then, as in PyTorch, inf / inf makes the gradients NaN).
        error_if_nonfinite: raise ValueError when the total norm is NaN or infinite
            (otherwise the scaling is applied as computed, like PyTorch).

    Returns:
        the total norm before clipping, as a Python float. On CuPy, converting it to a
        float waits for the GPU (one synchronisation per call).
    """
    if not (isinstance(max_norm, numbers.Real) and not isinstance(max_norm, bool) and max_norm == math.inf):
        max_norm = _check_number("max_norm", max_norm, low=0.0)
    if hasattr(params, "grad"):
        params = [params]
    elif isinstance(params, (str, bytes)) or _is_array(params) or not hasattr(params, "__iter__"):
        raise TypeError(f"clip_grad_norm: params must be a parameter (an object with .grad) or an iterable of "
                        f"them, got {type(params).__name__} (pass the parameters, not their gradients)")
    params = list(params)
    for i, p in enumerate(params):
        if not hasattr(p, "grad"):
            raise TypeError(f"clip_grad_norm: params[{i}] must be a parameter (an object with .grad), got "
                            f"{type(p).__name__} (pass the parameters, not their gradients)")
        if p.grad is not None and not (_is_array(p.grad) or isinstance(p.grad, numpy.generic)):
            raise TypeError(f"clip_grad_norm: params[{i}].grad must be an array, got {type(p.grad).__name__}")
    with_grad = [p for p in params if p.grad is not None]
    if not with_grad:
        return 0.0
    total_sq = None
    with numpy.errstate(over="ignore"):   # an overflow to inf is caught below
        for p in with_grad:
            g = p.grad
            xp = get_xp(g)
            flat = g.reshape(-1).astype(xp.float64, copy=False)
            sq = xp.dot(flat, flat)
            total_sq = sq if total_sq is None else total_sq + sq
    total_sq = float(total_sq)  # one device sync on CuPy
    if math.isinf(total_sq) or total_sq < _SAFE_SQUARE_SUM:
        total = _scaled_norm(with_grad)   # squares overflowed or underflowed: rescale
    else:
        total = math.sqrt(total_sq)       # (NaN stays NaN)
    if error_if_nonfinite and not math.isfinite(total):
        raise ValueError(f"the total gradient norm is {total}; cannot clip non-finite gradients")
    coef = max_norm / (total + 1e-6)
    if coef < 1.0 or math.isnan(coef):   # PyTorch's rule: scale by min(1, coef)
        scaled = {}
        for p in with_grad:
            g = p.grad
            key = id(g)
            if key not in scaled:
                scaled[key] = _scaled_by(g, coef, max_norm, total + 1e-6)
            p.grad = scaled[key]
    return total


def _scaled_by(g, coef: float, num: float, den: float):
    """``g * coef`` in g's dtype, ``coef = num / den``. A factor below the dtype's smallest
    normal number (a huge gradient clipped to a small norm: 1e-41 in float32, or 1e-320 in
    float64) would lose its digits as a subnormal scalar, so there it is applied as the
    quotient of the two mantissas, then an exact ``ldexp`` by the exponents' difference."""
    xp = get_xp(g)
    dtype = numpy.dtype(g.dtype)
    if dtype.kind == "f" and num > 0.0 and math.isfinite(den) and coef < float(numpy.finfo(dtype).tiny):
        (m_num, e_num), (m_den, e_den) = math.frexp(num), math.frexp(den)
        return xp.ldexp(xp.multiply(g, m_num / m_den, dtype=dtype), e_num - e_den).astype(dtype, copy=False)
    return xp.multiply(g, coef, dtype=dtype)
