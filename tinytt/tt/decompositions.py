"""TT-SVD, orthogonalisation and rounding on plain lists of cores (array level, no autodiff).

Conventions (GUIDE §1): ``eps`` is the relative Frobenius error, ``max_rank`` caps every bond
(an int, or a list of N+1 caps). With N cores the per-bond threshold is
``delta = eps * ||A||_F / sqrt(N - 1)`` and each bond keeps the smallest rank whose discarded
tail ``sum_{i >= r} s_i^2 <= delta^2``; since the discarded pieces are orthogonal,
``||A - TT(A)||_F <= eps ||A||_F`` whenever ``max_rank`` does not bind (Oseledets 2011).

All routines run on the cores' backend (``tinytt.backend``) and keep their dtype.
"""

from __future__ import annotations

import math

import numpy

from .. import backend
from .cores import as_float_array, check_cores
from .shapes import int_tuple

__all__ = [
    "choose_rank",
    "tt_svd_cores",
    "orthogonalize_cores",
    "round_cores",
    "core_norm",
]


def _check_eps(eps) -> float:
    if isinstance(eps, (bool, str)):
        raise TypeError(f"eps must be a non-negative float, got {eps!r}")
    try:
        eps = float(eps)
    except (TypeError, ValueError):
        raise TypeError(f"eps must be a non-negative float, got {eps!r}") from None
    if not math.isfinite(eps) or eps < 0:
        raise ValueError(f"eps must be a non-negative finite float (relative error), got {eps}")
    return eps


def _bond_caps(max_rank, ndim: int) -> list:
    """``max_rank`` (None, int >= 1 or N+1 ints) -> list of N+1 caps (None = no cap)."""
    if max_rank is None:
        return [None] * (ndim + 1)
    if isinstance(max_rank, bool):
        raise TypeError(f"max_rank must be None, a positive int or {ndim + 1} ints, got {max_rank!r}")
    if isinstance(max_rank, (int, numpy.integer)) or (isinstance(max_rank, numpy.ndarray) and max_rank.ndim == 0
                                                       and max_rank.dtype.kind in "iu"):
        max_rank = int(max_rank)     # also a 0-d integer array, as random_tt's ranks take
        if max_rank < 1:
            raise ValueError(f"max_rank must be a positive int, got {max_rank}")
        return [int(max_rank)] * (ndim + 1)
    what = f"max_rank must be None, a positive int or a list of {ndim + 1} ints"
    if not hasattr(max_rank, "__iter__") or isinstance(max_rank, str):
        raise TypeError(f"{what}, got {max_rank!r}")
    caps = list(int_tuple(max_rank, what))   # "4" or [2.5] were read as [4] and [2]
    if len(caps) != ndim + 1 or any(r < 1 for r in caps):
        raise ValueError(f"max_rank as a list must hold {ndim + 1} positive ints, got {caps}")
    return caps


def choose_rank(s, delta: float, max_rank=None) -> int:
    """Smallest rank ``r >= 1`` with ``sum_{i >= r} s_i^2 <= delta^2``, capped at ``max_rank``.

    ``s``: singular values in descending order (any backend; copied to the host, O(len(s))).
    The tail sums are accumulated from the smallest value up, so tiny tails are exact.
    """
    s = backend.to_numpy(s).astype(numpy.float64, copy=False)
    k = s.shape[0]
    if k == 0:
        return 1
    top = float(s.max())
    if top > 0.0 and math.isfinite(top):  # scale-free: no overflow of s^2 for huge entries
        s = s / top
        delta = delta / top
    tails = numpy.cumsum((s * s)[::-1])[::-1]  # tails[i] = sum_{j >= i} s_j^2
    ok = numpy.flatnonzero(tails <= delta * delta)
    r = int(ok[0]) if ok.size else k
    r = max(r, 1)
    if max_rank is not None:
        r = min(r, int(max_rank))
    return r


def _left_factor(c, delta: float, max_rank):
    """Truncated left factor of an unfolding ``c`` (m, n): ``u`` (m, r) orthonormal, ``rest`` (r, n).

    ``c ~= u @ rest`` with ``rest = u^T c`` and discarded energy ``sum_{i >= r} s_i^2``.
    Wide unfoldings (n >= 2m) use the R factor of a QR of ``c^T`` (no Q formed), then a small
    SVD of ``R^T`` (m, m), then ``rest = u^T c`` (one GEMM): cost ~2nm^2 + O(m^3) + 2rmn,
    about 2-4x faster than a thin SVD of ``c`` and as accurate (QR is backward stable). Other
    shapes take a thin SVD (``full_matrices=False``, gesdd on NumPy).
    """
    xp = backend.get_xp(c)
    m, n = c.shape
    if min(m, n) >= _RANGE_MIN:
        found = _verified_range(c, delta, max_rank)
        if found is not None:
            return found
    if n >= 2 * m and m > 1:
        r_fac = xp.linalg.qr(c.T, mode="r")  # (m, m), c c^T = R^T R
        u, s, _ = backend.svd(r_fac.T)
        r = choose_rank(s, delta, max_rank)
        u = u[:, :r]
        return u, u.T @ c
    u, s, vt = backend.svd(c)
    r = choose_rank(s, delta, max_rank)
    return u[:, :r], s[:r, None] * vt[:r]


_RANGE_MIN = 192  # unfoldings with min(m, n) >= this first try a verified low-rank range


def _verified_range(c, delta: float, max_rank):
    """Exact-bound shortcut for large, numerically low-rank unfoldings ``c`` (m, n).

    For k = 32, 64, .. <= min(m, n) / 4: ``q`` = orthonormal basis of ``c @ omega`` (a fixed-seed
    Gaussian ``omega`` (n, k)); the residual ``e = c - q q^T c`` is computed explicitly. When
    ``||e||_F^2 <= delta^2 / 4`` the range is accepted and ``b = q^T c`` (k, n) is truncated with
    the remaining budget ``delta^2 - ||e||^2``; the pieces are orthogonal, so the discarded
    energy stays ``<= delta^2`` exactly as for a full SVD. Returns None (caller falls back to
    a full SVD) when no such k exists. Cost per try ~6 m n k flops, versus O(m n min(m, n)).
    """
    xp = backend.get_xp(c)
    m, n = c.shape
    k = 32
    while k <= min(m, n) // 4:
        omega = xp.asarray(numpy.random.default_rng(k).standard_normal((n, k)), dtype=c.dtype)
        q, _ = backend.qr(c @ omega)
        b = q.T @ c
        e = c - q @ b
        e2 = float((e * e).sum())
        if e2 <= 0.25 * delta * delta:
            u, rest = _left_factor(b, math.sqrt(delta * delta - e2), max_rank)
            return q @ u, rest
        k *= 2
    return None


def _safe_norm_range(dtype) -> tuple:
    """``(low, high)``: a norm computed from squares is accurate to rounding inside this range.

    Below ``low = sqrt(tiny) / eps`` entries that matter have squares near or under the
    smallest normal number (underflow: 1e-200 in float64 squares to 0); above
    ``high = sqrt(max) * eps`` the sum of squares may overflow.
    """
    info = numpy.finfo(dtype)
    return math.sqrt(float(info.tiny)) / float(info.eps), math.sqrt(float(info.max)) * float(info.eps)


def _norm(a):
    """Frobenius norm as a Python float, safe against overflow and underflow of the squares
    (rescales by ``max |a|`` when the plain norm falls outside ``_safe_norm_range``)."""
    xp = backend.get_xp(a)
    with numpy.errstate(over="ignore", under="ignore", invalid="ignore"):
        nrm = float(xp.linalg.norm(a.reshape(-1)))
    low, high = _safe_norm_range(a.dtype)
    if low <= nrm <= high:
        return nrm
    if not bool(xp.isfinite(a).all()):
        return float("nan") if bool(xp.isnan(a).any()) else float("inf")
    scale = float(xp.abs(a).max())
    if scale == 0.0:
        return 0.0
    with numpy.errstate(under="ignore"):
        return scale * float(xp.linalg.norm((a / a.dtype.type(scale)).reshape(-1)))


def _unit_scale(nrm: float, dtype) -> int:
    """0 when a tensor of norm ``nrm`` can be decomposed as is, else the exponent ``e`` of the
    power of two ``2**e`` (``nrm / 2**e`` in [0.5, 1)) to divide it by first and multiply the
    result by after (both exact, ``ldexp``), so SVD thresholds and sums of squared singular
    values neither underflow nor overflow."""
    low, high = _safe_norm_range(dtype)
    return 0 if low <= nrm <= high else math.frexp(nrm)[1]


def _times_pow2(cores: list, e: int, xp, into: int = -1, spread: bool = True) -> list:
    """The TT times ``2**e`` (exact): in core ``into`` (the last by default), or, when its
    entries would leave the dtype's normal range there (above it: a float32 tensor of norm
    above 3.4e38; or below it), an equal share of the exponent in every core (with
    ``spread``; else OverflowError above the range, subnormal entries below it). Cores with
    NaN or Inf are scaled in place. One host read of that core's largest entry."""
    if e == 0:
        return cores
    info = numpy.finfo(cores[into].dtype)
    peak = float(xp.abs(cores[into]).max())
    try:
        moved = math.ldexp(peak, e)
    except OverflowError:
        moved = math.inf
    fits = float(info.tiny) <= moved <= float(info.max)
    # (NaN/Inf entries, or, without ``spread``, a norm below the normal range: in place too,
    # as subnormals, which is the best one core can hold)
    if peak == 0.0 or fits or not math.isfinite(peak) or (not spread and moved <= float(info.max)):
        out = list(cores)
        out[into] = xp.ldexp(cores[into], e)
        return out
    if not spread:
        raise OverflowError(f"the TT's norm does not fit {cores[into].dtype} in one core (2**{e} times "
                            f"{peak:.3g}): it has no orthogonal form in this dtype"
                            + ("; use float64 cores" if cores[into].dtype != numpy.float64 else ""))
    n = len(cores)
    shares = [e // n + (1 if k < e % n else 0) for k in range(n)]   # sums to e
    return [xp.ldexp(c, s) for c, s in zip(cores, shares)]


def _pow2_normalized(cores: list, xp, finite: bool = False) -> tuple:
    """``(scaled cores, E)``: each core times a power of two that brings its largest entry into
    [0.5, 1) (exact), so the TT is ``2**E`` times the scaled one and no product of cores can
    overflow or underflow the dtype on the way. One host read per core; with ``finite``, a
    NaN or Inf entry raises ValueError (else such a core is left as is)."""
    out, total = [], 0
    for c in cores:
        peak = float(xp.abs(c).max()) if c.size else 0.0
        if finite and not math.isfinite(peak):
            raise ValueError("the TT has NaN or Inf entries; rounding needs finite cores")
        if peak == 0.0 or not math.isfinite(peak):
            out.append(c)
            continue
        e = math.frexp(peak)[1]
        out.append(xp.ldexp(c, -e))
        total += e
    return out, total


def tt_svd_cores(a, eps: float = 1e-12, max_rank=None, name: str = "a") -> list:
    """TT-SVD of a dense tensor: list of N cores ``(r_{k-1}, n_k, r_k)``, left-orthogonal but the last
    (except when the norm does not fit the dtype's range in one core, e.g. a float32 tensor
    of norm above 3.4e38: then every core carries an equal power-of-two share of it).

    Guarantee: ``||a - full(cores)||_F <= eps ||a||_F`` when ``max_rank`` does not bind; ranks
    never exceed ``max_rank`` (an int or a list of N+1 caps). A tensor of TT ranks ``r`` is
    recovered with exactly those ranks for small ``eps`` (error ~ machine precision). An all-zero
    tensor gives zero cores of rank 1. Keeps float32/float64; integers become float64.
    Cost: one QR/SVD per bond, ``O(sum_k r_{k-1} n_k * size / (n_1..n_k) * min(...))``; dominated
    by the first unfolding, ~2 n_1 * size flops for a QR.
    Raises ValueError for NaN/Inf entries, a 0-d input or ``eps < 0``; messages call the input
    ``name`` (the caller's argument name).
    """
    a = as_float_array(a, name)
    eps = _check_eps(eps)
    if a.ndim == 0:
        raise ValueError(f"{name} must have at least one axis, got a 0-d array")
    shape = tuple(int(n) for n in a.shape)
    if any(n == 0 for n in shape):
        raise ValueError(f"{name} must not have empty axes, got shape {shape}")
    xp = backend.get_xp(a)
    nd = len(shape)
    caps = _bond_caps(max_rank, nd)
    nrm = _norm(a)
    if not math.isfinite(nrm):
        if bool(xp.isfinite(a).all()):   # finite entries whose norm exceeds float64's range
            raise ValueError(f"{name}'s Frobenius norm overflows float64 (largest entry "
                             f"{float(xp.abs(a).max()):.3g}); TT-SVD needs a norm below 1.8e308: "
                             f"scale {name} down first")
        raise ValueError(f"{name} contains NaN or Inf; TT-SVD needs finite entries")
    if nrm == 0.0:
        return [xp.zeros((1, n, 1), dtype=a.dtype) for n in shape]
    e = _unit_scale(nrm, a.dtype)
    rest = xp.ldexp(a, -e) if e else a
    if nd == 1 and rest is a:
        rest = a.copy()  # the only core would be a view of the input (longer TTs get new arrays)
    delta = eps * math.ldexp(nrm, -e) / math.sqrt(max(nd - 1, 1))
    cores = []
    r_prev = 1
    for k in range(nd - 1):
        c = rest.reshape(r_prev * shape[k], -1)
        u, rest = _left_factor(c, delta, caps[k + 1])
        r = u.shape[1]
        cores.append(u.reshape(r_prev, shape[k], r))
        r_prev = r
    cores.append(rest.reshape(r_prev, shape[-1], 1))
    return _times_pow2(cores, e, xp)


def orthogonalize_cores(cores, direction: str = "left") -> list:
    """Orthogonalise a TT by QR sweeps; returns new cores representing the same tensor.

    ``"left"``: sweep left to right; cores 0..N-2 become left-orthogonal
    (``G.reshape(r_{k-1} n_k, r_k)`` has orthonormal columns) and the norm sits in the last core.
    ``"right"``: sweep right to left; cores 1..N-1 become right-orthogonal
    (``G.reshape(r_{k-1}, n_k r_k)`` has orthonormal rows) and the norm sits in the first core.
    Ranks may shrink to ``min(r_{k-1} n_k, r_k)`` (resp. ``min(r_{k-1}, n_k r_k)``).
    Exact up to rounding; cost ``O(sum_k n_k r^3)`` plus one host read per core: the sweep
    runs on cores scaled by exact powers of two (``_pow2_normalized``), so no partial product
    overflows or underflows the dtype (float64 cores of 1e-250 and 1e200), and the factor goes
    back into the norm's core. Raises OverflowError when the norm itself does not fit the
    dtype (a float32 TT of norm above 3.4e38 has no orthogonal form in float32).
    """
    cores = check_cores(cores)
    if direction not in ("left", "right"):
        raise ValueError(f"direction must be 'left' or 'right', got {direction!r}")
    _check_lapack_dtype(cores, "orthogonalize")
    cores = list(cores)
    if len(cores) == 1:
        return [cores[0].copy()]  # new cores, never the caller's arrays
    xp = backend.get_xp(*cores)
    scaled, e = _pow2_normalized(cores, xp)
    into = -1 if direction == "left" else 0
    out = _times_pow2(_sweep(scaled, direction), e, xp, into=into, spread=False)
    return out


def _sweep(cores: list, direction: str) -> list:
    """The QR sweep of ``orthogonalize_cores`` (no checks, no rescaling): a new list."""
    if direction == "right":
        return _right_sweep(cores)
    cores = list(cores)
    for k in range(len(cores) - 1):
        r0, n, r1 = cores[k].shape
        q, r = backend.qr(cores[k].reshape(r0 * n, r1))
        cores[k] = q.reshape(r0, n, q.shape[1])
        nxt = cores[k + 1]
        cores[k + 1] = (r @ nxt.reshape(nxt.shape[0], -1)).reshape(r.shape[0], nxt.shape[1], nxt.shape[2])
    return cores


def _check_lapack_dtype(cores, what: str) -> None:
    if cores[0].dtype not in (numpy.float32, numpy.float64):
        raise TypeError(f"{what}: needs float32 or float64 cores (QR and SVD), got {cores[0].dtype}; "
                        "build the TT from float32 cores instead (e.g. core.astype('float32'))")


def _right_qr(core):
    """``core`` (r0, n, r1) = ``rt @ q``: q (k, n, r1) with orthonormal rows, rt (r0, k)."""
    r0, n, r1 = core.shape
    q, r = backend.qr(core.reshape(r0, n * r1).T)
    return q.T.reshape(q.shape[1], n, r1), r.T


def core_norm(cores) -> float:
    """Frobenius norm of a TT via right orthogonalisation (stable; no cancellation).

    The sweep runs on cores scaled by exact powers of two, so no partial product overflows
    or underflows; the result is a Python float (inf when the norm exceeds float64).
    Cost: one right-to-left QR sweep, ``O(sum_k n_k r^3)``, and one host read per core.
    """
    cores = check_cores(cores)
    _check_lapack_dtype(cores, "norm")
    scaled, e = _pow2_normalized(list(cores), backend.get_xp(*cores))
    try:
        return math.ldexp(_norm(_right_sweep(scaled)[0]), e)
    except OverflowError:
        return math.inf


def _right_sweep(cores: list) -> list:
    """Right-to-left QR sweep: new list, cores 1..N-1 right-orthogonal, the norm in core 0."""
    cores = list(cores)
    for k in range(len(cores) - 1, 0, -1):
        cores[k], rt = _right_qr(cores[k])
        prv = cores[k - 1]
        cores[k - 1] = (prv.reshape(-1, prv.shape[2]) @ rt).reshape(prv.shape[0], prv.shape[1], rt.shape[1])
    return cores


def round_cores(cores, eps: float = 1e-12, max_rank=None) -> list:
    """TT rounding: new cores with ``||A - round(A)||_F <= eps ||A||_F`` and ranks <= ``max_rank``.

    Right-to-left QR sweep (cores 1..N-1 right-orthogonal, ``||A|| = ||G_1||``), then a
    left-to-right sweep of truncated SVDs of ``G_k.reshape(r_{k-1} n_k, r_k)`` with per-bond
    threshold ``eps ||A||_F / sqrt(N-1)``. The bound holds when ``max_rank`` does not bind.
    A zero TT rounds to zero cores of rank 1. Cost ``O(sum_k n_k r^3)``.
    """
    eps = _check_eps(eps)
    cores = check_cores(cores)
    nd = len(cores)
    caps = _bond_caps(max_rank, nd)
    _check_lapack_dtype(cores, "round")
    xp = backend.get_xp(*cores)
    # the sweep runs on cores scaled by exact powers of two (no partial product can leave the
    # dtype's range: float32 entries of 1e38 spread over three cores), the factor 2**spread
    # goes back at the end
    cores, spread = _pow2_normalized(list(cores), xp, finite=True)
    cores = _right_sweep(cores)
    nrm = _norm(cores[0])
    if nrm == 0.0:
        return [xp.zeros((1, c.shape[1], 1), dtype=c.dtype) for c in cores]
    e = _unit_scale(nrm, cores[0].dtype)
    # cores 1..N-1 are orthonormal now, so the norm sits in core 0: unit-norm it when needed
    if e:    # (the scaled cores are new arrays already: nothing of the caller's is written)
        cores[0] = xp.ldexp(cores[0], -e)
    delta = eps * math.ldexp(nrm, -e) / math.sqrt(max(nd - 1, 1))
    for k in range(nd - 1):
        r0, n, r1 = cores[k].shape
        u, s, vt = backend.svd(cores[k].reshape(r0 * n, r1))
        r = choose_rank(s, delta, caps[k + 1])
        cores[k] = u[:, :r].reshape(r0, n, r)
        nxt = cores[k + 1]
        sv = s[:r, None] * vt[:r]
        cores[k + 1] = (sv @ nxt.reshape(nxt.shape[0], -1)).reshape(r, nxt.shape[1], nxt.shape[2])
    return _times_pow2(cores, e + spread, xp)
