"""Factorising sizes into TT mode shapes, and counting TT-matrix parameters.

``auto_shape(n, d)`` factors ``n`` exactly into ``d`` factors; ``suggest_shape(n, d)``
may round ``n`` up (to ``ceil(n / 10^i) * 10^i``) to get more even factors. Both use the
entropy heuristic of the TT-embedding paper's code (Hrinchuk et al. 2020, ``t3nsor``):
among all partitions of the prime factors of ``n`` into ``d`` groups, pick the tuple of
group products ``f`` maximising the entropy of ``f / sum(f)`` (largest for equal factors).

Pure Python; no arrays involved.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from .._validate import int_arg

__all__ = ["auto_shape", "suggest_shape", "tt_matrix_num_params", "shape_entropy", "normalize_ranks"]

_MODES = ("ascending", "descending", "mixed")


def _check_positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) and not hasattr(value, "__index__"):
        raise TypeError(f"{name} must be a positive integer, got {value!r}")
    value = int(value.__index__()) if not isinstance(value, int) else value
    if value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value}")
    return value


def positive_int_tuple(values, name: str) -> tuple:
    """``values`` (a sequence of positive ints) as a tuple of Python ints; TypeError naming
    ``name`` when it is not a sequence (e.g. a bare int), else the entries' own checks."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise TypeError(f"{name} must be a tuple of positive ints, got {values!r}")
    return tuple(_check_positive_int(m, f"{name} entry") for m in values)


def matrix_shapes(row_shape, col_shape, where: str = "") -> tuple:
    """``(row_shape, col_shape)`` of a TT-matrix as tuples of positive ints of one non-zero
    length; TypeError/ValueError (prefixed with ``where``) otherwise."""
    prefix = f"{where}: " if where else ""
    row_shape = positive_int_tuple(row_shape, prefix + "row_shape")
    col_shape = positive_int_tuple(col_shape, prefix + "col_shape")
    if len(row_shape) != len(col_shape) or not row_shape:
        raise ValueError(f"{prefix}row_shape and col_shape must be non-empty and of equal length, got "
                         f"{row_shape} and {col_shape}")
    return row_shape, col_shape


def int_tuple(values, what: str) -> tuple:
    """``values`` (a sequence of ints: Python or NumPy integers, not bools, floats or
    strings) as a tuple of Python ints; ValueError naming ``what`` otherwise. Shared by the
    ``shape`` arguments of ``random_tt``, ``TTEmbedding`` and ``TTLinear``."""
    try:
        items = tuple(values)
    except TypeError:
        raise ValueError(f"{what}, got {values!r}") from None
    if any(isinstance(v, bool) or not hasattr(v, "__index__") or isinstance(v, str) for v in items):
        raise ValueError(f"{what}, got {values!r}")
    return tuple(int(v) for v in items)


def matrix_shape_arg(shape, name: str) -> tuple:
    """``(row_shape, col_shape)`` from a TT-matrix ``shape`` argument: two sequences of ints;
    ValueError starting with ``name`` otherwise (lengths and products are the caller's checks)."""
    what = f"{name} must be (row_shape, col_shape), two tuples of ints"
    try:
        rows, cols = shape
    except (TypeError, ValueError):
        raise ValueError(f"{what}, got {shape!r}") from None
    return int_tuple(rows, what), int_tuple(cols, what)


def _is_prime(n: int) -> bool:
    """Deterministic Miller-Rabin for n < 3.3e24 (these bases suffice there)."""
    if n < 2:
        return False
    bases = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41)
    for p in bases:
        if n % p == 0:
            return n == p
    d, r = n - 1, 0
    while d % 2 == 0:
        d, r = d // 2, r + 1
    for a in bases:
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


def _pollard_rho(n: int) -> int:
    """A non-trivial factor of the composite odd ``n`` (Brent's variant, deterministic seeds)."""
    for c in range(1, 1000):
        x = y = 2
        d = 1
        while d == 1:
            x = (x * x + c) % n
            y = (y * y + c) % n
            y = (y * y + c) % n
            d = math.gcd(abs(x - y), n)
        if d != n:
            return d
    raise ArithmeticError(f"could not factor {n}")  # pragma: no cover - not reached in practice


def _prime_factors(n: int) -> list[int]:
    """Prime factors of ``n`` with multiplicity, ascending: trial division by primes below
    1000, then Miller-Rabin and Pollard's rho for what is left (a large prime no longer
    means ~sqrt(n) divisions: 2**61 - 1 took minutes)."""
    out, p = [], 2
    while p < 1000 and p * p <= n:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1 if p == 2 else 2
    stack = [n] if n > 1 else []
    while stack:
        m = stack.pop()
        if m < 1000 * 1000 or _is_prime(m):   # no factor below 1000 left: m < 1e6 is prime
            out.append(m)
        else:
            d = _pollard_rho(m)
            stack += [d, m // d]
    return sorted(out)


def _divisors(primes: list[int]) -> list[int]:
    """All divisors, ascending, of the product of ``primes`` (its prime factors with
    multiplicity): built from the factorisation, not by trial division up to sqrt(n)
    (which took minutes for n = 2**60)."""
    divisors = [1]
    for p in sorted(set(primes)):
        powers = [p**e for e in range(primes.count(p) + 1)]
        divisors = [d * q for d in divisors for q in powers]
    return sorted(divisors)


def _factor_tuples(n: int, d: int, lo: int, divisors: list[int]):
    """All non-decreasing tuples of ``d`` factors ``>= lo`` and ``>= 2`` whose product is ``n``."""
    if d == 1:
        if n >= lo:
            yield (n,)
        return
    for f in divisors:
        if f < lo or f < 2 or n % f:
            continue
        if f ** d > n:
            break
        for rest in _factor_tuples(n // f, d - 1, f, divisors):
            yield (f,) + rest


def shape_entropy(factors: Sequence[int]) -> float:
    """Entropy ``-sum p log p`` of ``p = f / sum(f)`` (natural log, like ``scipy.stats.entropy``)
    for a non-empty sequence of positive factors (ValueError otherwise)."""
    factors = positive_int_tuple(factors, "shape_entropy: factors")
    if not factors:
        raise ValueError("shape_entropy: factors must not be empty")
    total = float(sum(factors))
    return float(-sum((f / total) * math.log(f / total) for f in factors))


def _arrange(factors: tuple[int, ...], mode: str) -> tuple[int, ...]:
    asc = sorted(factors)
    if mode == "ascending":
        return tuple(asc)
    if mode == "descending":
        return tuple(asc[::-1])
    half = len(asc) // 2
    first, second = asc[:half], asc[half:]
    out = []
    for k in range(len(second)):
        if k < len(first):
            out.append(first[k])
        out.append(second[k])
    return tuple(out)


def auto_shape(n: int, d: int = 3, mode: str = "ascending") -> tuple[int, ...]:
    """Factor ``n`` exactly into ``d`` factors that are as even as possible.

    Follows the paper's code: the prime factors of ``n`` (with multiplicity) are split into
    exactly ``d`` non-empty groups in every possible way (when there are fewer than ``d``
    primes, 1s fill the missing places); the tuple of group products with the largest
    entropy of ``f / sum(f)`` wins. ``mode`` orders the result: ``"ascending"`` (default),
    ``"descending"``, or ``"mixed"`` (ascending, then the first half and the second half
    interleaved: (10, 10, 15, 20) -> (10, 15, 10, 20)).

    Examples: ``auto_shape(30000, 3) == (25, 30, 40)``, ``auto_shape(256, 4) == (4, 4, 4, 4)``.
    Cost: the number of ordered factorisations of ``n`` into ``d`` factors (small in practice).
    Raises TypeError/ValueError when ``n`` or ``d`` is not a positive integer or ``mode`` is unknown.
    """
    n = _check_positive_int(n, "n")
    d = _check_positive_int(d, "d")
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    primes = _prime_factors(n)
    if len(primes) <= d:
        best = tuple([1] * (d - len(primes)) + primes)
    else:
        best, best_score = None, -math.inf
        for cand in _factor_tuples(n, d, 2, _divisors(primes)):
            score = shape_entropy(cand)
            if score > best_score + 1e-12:
                best, best_score = cand, score
    return _arrange(best, mode)


def suggest_shape(n: int, d: int = 3, mode: str = "ascending") -> tuple[int, ...]:
    """Factor ``n`` or a rounded-up ``n' >= n`` into ``d`` even factors (for vocabulary sizes).

    Tries ``n_i = ceil(n / 10^i) * 10^i`` for ``i = 0 .. (digits of n) - 1`` and returns
    ``auto_shape(n_i, d, mode)`` for the ``i`` whose factors have the largest entropy (the
    first such ``i`` on ties). The product of the result is the padded size ``n' >= n``.

    Examples: ``suggest_shape(25000, 3) == (25, 30, 40)`` (padded to 30000),
    ``suggest_shape(17200, 3) == (24, 25, 30)`` (padded to 18000).
    Cost: ``digits(n)`` calls of ``auto_shape``.
    """
    n = _check_positive_int(n, "n")
    d = _check_positive_int(d, "d")
    best, best_score = None, -math.inf
    for i in range(len(str(n))):
        step = 10**i
        shape = auto_shape(-(-n // step) * step, d, mode)
        score = shape_entropy(shape)
        if score > best_score + 1e-12:
            best, best_score = shape, score
    return best


def tt_matrix_num_params(row_shape: Sequence[int], col_shape: Sequence[int], ranks) -> int:
    """Number of parameters ``sum_k r_{k-1} m_k n_k r_k`` of a TT-matrix.

    ``row_shape`` (m_1..m_N) and ``col_shape`` (n_1..n_N) have the same length N; ``ranks`` is
    an int (every internal rank) or the full list of N+1 ranks with ``r_0 = r_N = 1``.
    Example: ``tt_matrix_num_params((25, 30, 40), (4, 8, 8), 16) == 68160``.
    """
    row_shape, col_shape = matrix_shapes(row_shape, col_shape)
    n = len(row_shape)
    ranks = normalize_ranks(ranks, n, "ranks")
    return sum(ranks[k] * row_shape[k] * col_shape[k] * ranks[k + 1] for k in range(n))


def normalize_ranks(ranks, ndim: int, name: str = "ranks") -> list[int]:
    """An int rank (every internal bond) or a list of ``ndim + 1`` ranks -> list of ``ndim + 1``.

    Boundary ranks must be 1. Raises ValueError/TypeError naming ``name`` otherwise.
    """
    ndim = int_arg("normalize_ranks", "ndim", ndim)
    if isinstance(ranks, bool):
        raise TypeError(f"{name} must be an int or a list of {ndim + 1} ints, got {ranks!r}")
    if getattr(ranks, "ndim", None) == 0:
        ranks = ranks.item()   # a 0-d array: its int
    if isinstance(ranks, int) or hasattr(ranks, "__index__") and not hasattr(ranks, "__len__"):
        r = _check_positive_int(ranks, name)
        return [1] + [r] * (ndim - 1) + [1]
    try:
        ranks = [_check_positive_int(r, name + " entry") for r in ranks]
    except TypeError as exc:
        raise TypeError(f"{name} must be an int or a list of {ndim + 1} ints, got {ranks!r}") from exc
    if len(ranks) != ndim + 1 or ranks[0] != 1 or ranks[-1] != 1:
        raise ValueError(
            f"{name} must be an int or a list of {ndim + 1} ints starting and ending with 1, "
            f"got {ranks}"
        )
    return ranks
