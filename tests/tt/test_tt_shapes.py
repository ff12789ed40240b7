"""Shape heuristics (paper's entropy rule) and TT-matrix parameter counts."""

import math
import pytest
from hypothesis import given, strategies as st

from tinytt.tt import auto_shape, suggest_shape, tt_matrix_num_params
from tinytt.tt.shapes import shape_entropy


@pytest.mark.parametrize("n, d, expected", [
    (25000, 3, (25, 30, 40)), (25000, 4, (10, 10, 15, 20)), (25000, 6, (5, 5, 5, 5, 6, 8)),
    (17200, 3, (24, 25, 30)), (17200, 4, (10, 10, 12, 15)), (17200, 6, (4, 5, 5, 5, 6, 6)),
    (256, 3, (4, 8, 8)), (256, 4, (4, 4, 4, 4)), (10000, 3, (20, 20, 25)), (10000, 4, (10, 10, 10, 10)),
    (20000, 3, (25, 25, 32)), (33278, 3, (30, 30, 37)), (33278, 4, (10, 13, 16, 16)),
    (267735, 3, (60, 60, 75)), (267735, 6, (5, 6, 9, 10, 10, 10)),
])
def test_suggest_shape_known_answers(n, d, expected):
    assert suggest_shape(n, d) == expected


@pytest.mark.parametrize("n, d, expected", [
    (256, 3, (4, 8, 8)), (256, 4, (4, 4, 4, 4)), (256, 6, (2, 2, 2, 2, 4, 4)), (512, 3, (8, 8, 8)),
    (1024, 4, (4, 4, 8, 8)), (30000, 3, (25, 30, 40)), (6, 3, (1, 2, 3)), (7, 3, (1, 1, 7)), (1, 2, (1, 1)),
])
def test_auto_shape_known_answers(n, d, expected):
    assert auto_shape(n, d) == expected


def test_modes():
    assert suggest_shape(25000, 4, mode="mixed") == (10, 15, 10, 20)
    assert auto_shape(1024, 4, mode="mixed") == (4, 8, 4, 8)
    assert auto_shape(256, 3, mode="descending") == (8, 8, 4)


@given(st.integers(1, 5000), st.integers(1, 5))
def test_auto_shape_is_exact_factorisation(n, d):
    shape = auto_shape(n, d)
    assert len(shape) == d
    prod = 1
    for f in shape:
        prod *= f
    assert prod == n
    assert list(shape) == sorted(shape)


@given(st.integers(1, 10**6), st.integers(1, 4))
def test_suggest_shape_pads_up_by_power_of_ten(n, d):
    shape = suggest_shape(n, d)
    prod = 1
    for f in shape:
        prod *= f
    assert prod >= n
    assert any(prod == -(-n // 10**i) * 10**i for i in range(len(str(n))))
    assert shape_entropy(shape) >= shape_entropy(auto_shape(n, d)) - 1e-12


def test_num_params_paper_table():
    assert tt_matrix_num_params((25, 30, 40), (4, 8, 8), 16) == 68160
    assert tt_matrix_num_params((10, 10, 15, 20), (4, 4, 4, 4), 16) == 27520
    assert tt_matrix_num_params((5, 5, 5, 5, 6, 8), (2, 2, 2, 2, 4, 4), 16) == 14496
    assert tt_matrix_num_params((25, 30, 40), (4, 8, 8), 8) == 18720
    assert tt_matrix_num_params((24, 25, 30), (4, 8, 8), 16) == 56576
    assert tt_matrix_num_params((25, 30, 40), (4, 8, 8), [1, 16, 16, 1]) == 68160


def test_bad_input():
    with pytest.raises(ValueError, match="n must be a positive integer"):
        auto_shape(0, 3)
    with pytest.raises(TypeError, match="n must be a positive integer"):
        suggest_shape(2.5, 3)
    with pytest.raises(ValueError, match="mode"):
        auto_shape(100, 2, mode="sideways")
    with pytest.raises(ValueError, match="equal length"):
        tt_matrix_num_params((2, 3), (2,), 2)
    with pytest.raises(ValueError, match="ranks"):
        tt_matrix_num_params((2, 3), (2, 2), [2, 3, 1])


@given(st.integers(1, 5000))
def test_divisors_from_the_factorisation(n):
    from tinytt.tt.shapes import _divisors, _prime_factors  # noqa: PLC0415
    assert _divisors(_prime_factors(n)) == [k for k in range(1, n + 1) if n % k == 0]


def test_auto_shape_of_a_large_power_of_two():
    # the divisors came from trial division up to sqrt(n): 2**60 took minutes
    assert auto_shape(2**60, 20) == (8,) * 20


@given(st.integers(1, 10**6))
def test_prime_factors_multiply_back_and_are_prime(n):
    from tinytt.tt.shapes import _is_prime, _prime_factors  # noqa: PLC0415
    factors = _prime_factors(n)
    assert factors == sorted(factors)
    assert math.prod(factors) == n and all(_is_prime(f) for f in factors)
    assert all(any(f % k == 0 for k in range(2, int(f ** 0.5) + 1)) is False for f in factors if f < 10**4)


def test_large_primes_and_semiprimes_factor_quickly():
    # trial division to sqrt(n): auto_shape(2**61 - 1, 3) took 233 s
    from tinytt.tt.shapes import _prime_factors  # noqa: PLC0415
    assert _prime_factors(2**61 - 1) == [2**61 - 1]
    assert _prime_factors((2**31 - 1) * (2**61 - 1)) == [2**31 - 1, 2**61 - 1]
    assert auto_shape(2**61 - 1, 3) == (1, 1, 2**61 - 1)


def test_shape_helpers_check_their_arguments():
    import numpy

    from tinytt.tt.init import glorot_std
    from tinytt.tt.shapes import normalize_ranks, shape_entropy

    with pytest.raises(ValueError, match="equal length"):
        glorot_std((25, 30, 40), (4, 8), 16)
    with pytest.raises(ValueError, match="positive"):
        glorot_std((-5,), (2,), 1)
    for factors in ([], [-1, 2], [1, 0]):
        with pytest.raises(ValueError, match="shape_entropy"):
            shape_entropy(factors)
    assert isinstance(shape_entropy([5]), float)
    for ndim in (0, -1):
        with pytest.raises(ValueError, match="ndim"):
            normalize_ranks(3, ndim)
    assert normalize_ranks(numpy.array(3), 2) == [1, 3, 1] and normalize_ranks(4, numpy.int64(3)) == [1, 4, 4, 1]
