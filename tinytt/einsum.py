"""Differentiable einsum with cached contraction plans (opt_einsum).

Planning a contraction order costs far more than running a small one, so each
plan is made once per (equation, operand shapes, backend) with
``opt_einsum.contract_expression`` and reused. The gradient with respect to
operand ``i`` is itself an einsum: the output gradient contracted with the
other operands, producing operand ``i``'s subscripts (letters that occur only
in operand ``i`` are summed out in the forward pass, so their gradient is the
broadcast of the rest). Backward plans go through the same cache.

Supported: explicit (``"ij,jk->ik"``) and implicit (``"ij,jk"``) output,
``...`` for leading or inner dimensions (sizes must match, no size-1
broadcasting; an explicit output without ``...`` sums those dimensions away, as
opt_einsum does, where NumPy raises), and letters summed away. Not supported: a letter repeated inside
one operand (a diagonal); use ``getitem`` for that.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, namedtuple

import opt_einsum

from .backend import get_xp
from .ops import as_tensor
from .tensor import Tensor, record

__all__ = ["einsum", "einsum_cache_info", "einsum_cache_clear"]

CacheInfo = namedtuple("CacheInfo", ["hits", "misses", "size"])
#: plans kept (least recently used dropped first): a run whose shapes keep changing (sequence
#: lengths, batch sizes) would otherwise grow the cache without bound
PLAN_CACHE_SIZE = 1024
_plans: OrderedDict = OrderedDict()
_plans_lock = threading.Lock()
_stats = {"hits": 0, "misses": 0}
_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def einsum_cache_info() -> CacheInfo:
    """Counts of plan-cache hits and misses, and the number of cached plans (at most
    ``PLAN_CACHE_SIZE``, the least recently used dropped first)."""
    return CacheInfo(_stats["hits"], _stats["misses"], len(_plans))


def einsum_cache_clear() -> None:
    """Forget every cached plan and reset the counters."""
    with _plans_lock:
        _plans.clear()
        _stats["hits"] = _stats["misses"] = 0


def _plan(equation: str, shapes: tuple, backend: str):
    key = (equation, shapes, backend)
    with _plans_lock:
        expr = _plans.get(key)
        if expr is not None:
            _stats["hits"] += 1
            _plans.move_to_end(key)
            return expr
        _stats["misses"] += 1
    expr = opt_einsum.contract_expression(equation, *shapes, optimize="auto")
    with _plans_lock:
        _plans[key] = expr
        while len(_plans) > PLAN_CACHE_SIZE:
            _plans.popitem(last=False)
    return expr


def _run(equation: str, arrays: list, xp):
    backend = "cupy" if xp.__name__ == "cupy" else "numpy"
    shapes = tuple(tuple(a.shape) for a in arrays)
    return _plan(equation, shapes, backend)(*arrays, backend=backend)


def _parse(equation: str, shapes: list) -> tuple:
    """Validate ``equation`` against the operand shapes; expand ``...``.

    Returns (input subscripts per operand, output subscripts, letter -> size).
    """
    if not isinstance(equation, str):
        raise TypeError(f"einsum: equation must be a string, got {type(equation).__name__}")
    eq = equation.replace(" ", "")
    if eq.count("->") > 1:
        raise ValueError(f"einsum: equation {equation!r} has more than one '->'")
    lhs, arrow, rhs = eq.partition("->")
    inputs = lhs.split(",")
    if len(inputs) != len(shapes):
        raise ValueError(
            f"einsum: equation {equation!r} names {len(inputs)} operand(s) but {len(shapes)} were given"
        )
    used = set(c for c in eq if c.isalpha())
    spare = [c for c in _LETTERS if c not in used]
    for part in inputs + ([rhs] if arrow else []):
        if part.count("...") > 1:
            raise ValueError(f"einsum: subscripts {part!r} in {equation!r} contain '...' more than once")
        stripped = part.replace("...", "")
        bad = [c for c in stripped if c not in _LETTERS]
        if bad:
            raise ValueError(f"einsum: equation {equation!r} has invalid character {bad[0]!r}; "
                             "use letters a-z, A-Z, ',', '->' and '...'")
    # expand ellipses, right-aligned across operands
    ell_ndim = 0
    for sub, shape in zip(inputs, shapes):
        if "..." in sub:
            ell_ndim = max(ell_ndim, len(shape) - (len(sub) - 3))
    ell = "".join(spare[:ell_ndim])
    expanded = []
    for i, (sub, shape) in enumerate(zip(inputs, shapes)):
        if "..." in sub:
            n = len(shape) - (len(sub) - 3)
            if n < 0:
                raise ValueError(f"einsum: operand {i} has {len(shape)} dimensions, fewer than the "
                                 f"subscripts {sub!r} name")
            sub = sub.replace("...", ell[ell_ndim - n:] if n else "")
        if len(sub) != len(shape):
            raise ValueError(
                f"einsum: operand {i} has shape {tuple(shape)} ({len(shape)} dimensions) but its "
                f"subscripts {sub!r} name {len(sub)}"
            )
        if len(set(sub)) != len(sub):
            raise ValueError(f"einsum: operand {i} repeats a letter in {sub!r}; diagonals are not "
                             "supported, index them explicitly")
        expanded.append(sub)
    if arrow:
        out = rhs.replace("...", ell)
    else:
        counts = {}
        for sub in expanded:
            for c in sub:
                counts[c] = counts.get(c, 0) + 1
        out = ell + "".join(sorted(c for c, k in counts.items() if k == 1 and c not in ell))
    if len(set(out)) != len(out):
        raise ValueError(f"einsum: output subscripts {rhs!r} repeat a letter")
    sizes = {}
    for i, (sub, shape) in enumerate(zip(expanded, shapes)):
        for c, n in zip(sub, shape):
            if sizes.setdefault(c, n) != n:
                if c in ell:   # a letter standing for a '...' dimension: name it as the user wrote it
                    raise ValueError(f"einsum: the '...' dimensions of the operands differ (sizes "
                                     f"{sizes[c]} and {n}, shapes {[tuple(s) for s in shapes]}); they "
                                     "must be equal, size-1 broadcasting is not supported")
                raise ValueError(f"einsum: letter {c!r} has size {sizes[c]} in one operand and {n} in "
                                 f"operand {i} (shapes {[tuple(s) for s in shapes]})")
    missing = [c for c in out if c not in sizes]
    if missing:
        raise ValueError(f"einsum: output letter {missing[0]!r} does not occur in any input of {equation!r}")
    return expanded, out, sizes


def einsum(equation: str, *operands) -> Tensor:
    """Einstein summation over Tensors (or arrays), differentiable in every float operand.

    Example: ``einsum("bij,bjk->bik", a, b)`` is a batched matrix product.
    Cost: that of the contraction order opt_einsum picks (planned once per
    equation and shapes). The gradient for operand i is
    ``einsum("<out>,<others>-><sub_i>", g, *others)``, broadcast over letters
    that only operand i has.
    """
    tensors = [as_tensor(t) for t in operands]
    if not tensors:
        raise ValueError("einsum: needs at least one operand")
    xp = get_xp(*(t.data for t in tensors))
    subs, out_sub, sizes = _parse(equation, [t.shape for t in tensors])
    canonical = ",".join(subs) + "->" + out_sub
    out = _run(canonical, [t.data for t in tensors], xp)

    def make_vjp(i):
        def vjp(g):
            others = [s for j, s in enumerate(subs) if j != i]
            kept = "".join(c for c in subs[i] if c in out_sub or any(c in s for s in others))
            eq = ",".join([out_sub] + others) + "->" + kept
            grad = _run(eq, [g] + [t.data for j, t in enumerate(tensors) if j != i], xp)
            if kept != subs[i]:
                expand = tuple(k for k, c in enumerate(subs[i]) if c not in kept)
                grad = xp.broadcast_to(xp.expand_dims(grad, expand), tensors[i].shape)
            return grad
        return vjp

    return record("einsum", out, tuple(tensors), tuple(make_vjp(i) for i in range(len(tensors))))
