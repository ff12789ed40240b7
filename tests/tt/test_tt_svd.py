"""TT-SVD, rounding and orthogonalisation against dense NumPy float64 ground truth."""

import math

import numpy
import pytest
from hypothesis import given, strategies as st

import tinytt
from tinytt.tt import TensorTrain, choose_rank, round_tt, tt_svd, tt_svd_cores
from tinytt.tt.cores import add_cores, full_cores

DTYPES = [numpy.float32, numpy.float64]


@st.composite
def tt_cases(draw, max_dims=6, max_side=6, max_rank=5):
    """(shape, ranks, float64 NumPy cores) of a random TT with generic Gaussian cores."""
    nd = draw(st.integers(1, max_dims))
    shape = tuple(draw(st.lists(st.integers(1, max_side), min_size=nd, max_size=nd)))
    inner = draw(st.lists(st.integers(1, max_rank), min_size=nd - 1, max_size=nd - 1))
    ranks = [1] + inner + [1]
    rng = numpy.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    cores = [rng.standard_normal((ranks[k], n, ranks[k + 1])) for k, n in enumerate(shape)]
    return shape, ranks, cores


def generic_ranks(shape, ranks):
    """True TT ranks of a TT with generic cores: min of the left and right reachable ranks."""
    nd = len(shape)
    left, right = [1] * (nd + 1), [1] * (nd + 1)
    for k in range(1, nd):
        left[k] = min(left[k - 1] * shape[k - 1], ranks[k])
    for k in range(nd - 1, 0, -1):
        right[k] = min(right[k + 1] * shape[k], ranks[k])
    return tuple([1] + [min(left[k], right[k]) for k in range(1, nd)] + [1])


def dev(a, dtype=None):
    return tinytt.to_device(numpy.asarray(a, dtype=dtype))


def host_full(tt):
    return full_cores([tinytt.to_numpy(c).astype(numpy.float64) for c in tt.cores])


def slack(dtype):
    return 2e-5 if dtype == numpy.float32 else 1e-13


@given(tt_cases())
def test_exact_recovery_of_known_ranks(case):
    shape, ranks, cores = case
    dense = full_cores(cores)
    a = tt_svd(dev(dense), eps=1e-10)
    assert a.shape == shape
    assert a.ranks == generic_ranks(shape, ranks)
    err = numpy.linalg.norm(host_full(a) - dense)
    assert err <= 1e-12 * numpy.linalg.norm(dense)


@given(tt_cases(), st.floats(1e-12, 0.5), st.floats(0.0, 1.0), st.sampled_from(DTYPES))
def test_eps_bound(case, eps, noise, dtype):
    shape, ranks, cores = case
    rng = numpy.random.default_rng(len(shape))
    dense = full_cores(cores) + noise * rng.standard_normal(shape)
    dense = dense.astype(dtype)
    a = tt_svd(dev(dense), eps=eps)
    assert a.dtype == dtype
    ref = dense.astype(numpy.float64)
    nrm = numpy.linalg.norm(ref)
    err = numpy.linalg.norm(host_full(a) - ref)
    assert err <= (eps + slack(dtype)) * nrm
    # rounding of the result keeps the same guarantee relative to the TT's own norm
    b = a.round(eps)
    assert numpy.linalg.norm(host_full(b) - host_full(a)) <= (eps + slack(dtype)) * numpy.linalg.norm(host_full(a))


@given(tt_cases(), st.integers(1, 4), st.sampled_from(DTYPES))
def test_max_rank_is_respected(case, max_rank, dtype):
    shape, ranks, cores = case
    dense = full_cores(cores).astype(dtype)
    a = tt_svd(dev(dense), eps=0.0, max_rank=max_rank)
    assert max(a.ranks) <= max_rank
    b = TensorTrain([dev(c, dtype) for c in cores]).round(0.0, max_rank)
    assert max(b.ranks) <= max_rank
    assert b.dtype == dtype


@given(st.integers(1, 8), st.integers(1, 8), st.integers(1, 4), st.integers(0, 1000))
def test_two_dim_truncation_is_optimal(m, n, r, seed):
    """For a matrix, TT-SVD with max_rank r is the best rank-r approximation (Eckart-Young)."""
    a = numpy.random.default_rng(seed).standard_normal((m, n))
    s = numpy.linalg.svd(a, compute_uv=False)
    t = tt_svd(dev(a), eps=0.0, max_rank=r)
    err = numpy.linalg.norm(host_full(t) - a)
    assert err == pytest.approx(math.sqrt(float(numpy.sum(s[r:] ** 2))), rel=1e-8, abs=1e-12)


@given(tt_cases(max_rank=4))
def test_round_of_sum_is_twice(case):
    shape, ranks, cores = case
    a = TensorTrain([dev(c) for c in cores])
    r = round_tt(a + a, 1e-10)
    assert r.ranks == generic_ranks(shape, ranks)
    dense = full_cores(cores)
    assert numpy.linalg.norm(host_full(r) - 2 * dense) <= 1e-12 * numpy.linalg.norm(dense)


@given(tt_cases(max_rank=4), st.sampled_from(["left", "right"]), st.sampled_from(DTYPES))
def test_orthogonalize_sweeps(case, direction, dtype):
    shape, ranks, cores = case
    a = TensorTrain([dev(c, dtype) for c in cores])
    o = a.orthogonalize(direction)
    assert o.dtype == dtype
    tol = 1e-5 if dtype == numpy.float32 else 1e-12
    dense = full_cores(cores)
    assert numpy.linalg.norm(host_full(o) - dense) <= tol * 10 * numpy.sum(numpy.abs(full_cores([numpy.abs(c) for c in cores])))
    hc = [tinytt.to_numpy(c).astype(numpy.float64) for c in o.cores]
    check = hc[:-1] if direction == "left" else hc[1:]
    for g in check:
        r0, n, r1 = g.shape
        q = g.reshape(r0 * n, r1) if direction == "left" else g.reshape(r0, n * r1).T
        numpy.testing.assert_allclose(q.T @ q, numpy.eye(q.shape[1]), atol=tol)


def test_small_and_degenerate_inputs():
    v = numpy.arange(1.0, 6.0)
    t = tt_svd(dev(v))
    assert t.shape == (5,) and t.ranks == (1, 1)
    numpy.testing.assert_allclose(host_full(t), v, rtol=1e-14)
    z = tt_svd(dev(numpy.zeros((3, 1, 4, 2))))
    assert z.ranks == (1, 1, 1, 1, 1) and z.shape == (3, 1, 4, 2)
    assert numpy.all(host_full(z) == 0)
    ones = tt_svd(dev(numpy.ones((2, 3, 4))))
    assert ones.ranks == (1, 1, 1, 1)
    ints = tt_svd(dev(numpy.arange(24).reshape(2, 3, 4)))
    assert ints.dtype == numpy.float64
    single = tt_svd(dev(numpy.ones((1, 1, 1), dtype=numpy.float32)))
    assert single.ranks == (1, 1, 1, 1) and single.dtype == numpy.float32
    zr = TensorTrain([dev(numpy.zeros((1, 2, 3))), dev(numpy.zeros((3, 2, 1)))]).round(0.1)
    assert zr.ranks == (1, 1, 1)
    assert not tt_svd(dev(v)).cores[0].requires_grad


def test_bad_inputs():
    a = numpy.ones((2, 3))
    with pytest.raises(ValueError, match="eps must be a non-negative"):
        tt_svd(dev(a), eps=-1e-3)
    with pytest.raises(TypeError, match="eps"):
        tt_svd(dev(a), eps=True)
    bad = a.copy()
    bad[0, 1] = numpy.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        tt_svd(dev(bad))
    bad[0, 1] = numpy.inf
    with pytest.raises(ValueError, match="^a contains NaN or Inf"):
        tt_svd(dev(bad))
    with pytest.raises(ValueError, match="^w contains NaN or Inf"):   # named as tt_matrix_svd's argument
        tinytt.tt_matrix_svd(dev(bad), (2, 1), (1, 3))
    with pytest.raises(ValueError, match="0-d"):
        tt_svd(dev(numpy.float64(3.0)))
    with pytest.raises(ValueError, match="max_rank"):
        tt_svd(dev(a), max_rank=0)
    with pytest.raises(TypeError, match="complex"):
        tt_svd(numpy.ones((2, 2), dtype=complex))
    huge = numpy.full((2, 2), 1e200)
    assert tt_svd_cores(dev(huge))[0].shape == (1, 2, 1)


def test_choose_rank():
    s = numpy.array([4.0, 2.0, 1.0, 0.5])
    assert choose_rank(s, 0.0) == 4
    assert choose_rank(s, 0.5) == 3
    assert choose_rank(s, math.sqrt(1.25)) == 2
    assert choose_rank(s, 100.0) == 1
    assert choose_rank(s, 0.0, max_rank=2) == 2


def test_add_cores_matches_dense():
    rng = numpy.random.default_rng(0)
    a = [rng.standard_normal(s) for s in [(1, 2, 3), (3, 4, 2), (2, 3, 1)]]
    b = [rng.standard_normal(s) for s in [(1, 2, 1), (1, 4, 2), (2, 3, 1)]]
    numpy.testing.assert_allclose(full_cores(add_cores(a, b)), full_cores(a) + full_cores(b), rtol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("noise", [0.0, 1e-6, 1.0])
def test_large_unfoldings(dtype, noise):
    """Unfoldings large enough for the verified low-rank range path, and its full-rank fallback."""
    rng = numpy.random.default_rng(11)
    a = rng.standard_normal((200, 7)) @ rng.standard_normal((7, 260)) + noise * rng.standard_normal((200, 260))
    a = a.astype(dtype)
    ref = a.astype(numpy.float64)
    s = numpy.linalg.svd(ref, compute_uv=False)
    tails = numpy.sqrt(numpy.cumsum((s ** 2)[::-1])[::-1])
    for eps in (1e-10, 1e-4, 0.3):
        t = tt_svd(dev(a), eps=eps)
        err = numpy.linalg.norm(host_full(t) - ref)
        assert err <= (eps + slack(dtype)) * numpy.linalg.norm(ref)
        optimal = int(numpy.argmax(tails <= eps * numpy.linalg.norm(ref))) if eps > slack(dtype) else None
        if optimal is not None and tails[optimal] < 0.4 * eps * numpy.linalg.norm(ref):
            assert t.ranks[1] <= optimal + 1
    if noise == 0.0 and dtype == numpy.float64:
        assert tt_svd(dev(a), eps=1e-10).ranks == (1, 7, 1)
    assert tt_svd(dev(a), eps=0.0, max_rank=5).ranks == (1, 5, 1)


@pytest.mark.parametrize("dtype,scales", [(numpy.float64, (1e-300, 1e-200, 1e-160, 1e200, 1e300)),
                                          (numpy.float32, (1e-30, 1e-20, 1e20, 1e30))])
def test_svd_and_round_are_scale_equivariant(dtype, scales):
    # squares of entries near 1e-160 underflow and near 1e160 overflow: TT-SVD and rounding
    # must still give the same ranks and the same tensor up to the scale (they returned a
    # zero TT for 1e-200, and broke the eps bound near 1e-162)
    rng = numpy.random.default_rng(0)
    shape = (4, 5, 6, 3)
    a = TensorTrain([c.astype(dtype) for c in
                     (rng.standard_normal(s) for s in [(1, 4, 3), (3, 5, 4), (4, 6, 2), (2, 3, 1)])])
    dense = tinytt.to_numpy(a.full().data).astype(numpy.float64)
    noisy = (dense + 1e-3 * rng.standard_normal(shape)).astype(dtype)
    eps = 0.05 if dtype == numpy.float32 else 1e-2
    ref_svd = tt_svd(tinytt.to_device(noisy), eps)
    ref_round = (a + a * 0.5).round(eps)
    for s in scales:
        scaled = tt_svd(tinytt.to_device(noisy * dtype(s)), eps)
        assert scaled.ranks == ref_svd.ranks, s
        back = tinytt.to_numpy(scaled.full().data).astype(numpy.float64) / s
        assert numpy.linalg.norm(back - noisy) <= eps * numpy.linalg.norm(noisy) * 1.001, s
        rounded = (a * s + a * (0.5 * s)).round(eps)
        assert rounded.ranks == ref_round.ranks, s
        back = tinytt.to_numpy(rounded.full().data).astype(numpy.float64) / s
        assert numpy.linalg.norm(back - 1.5 * dense) <= 1.5 * numpy.linalg.norm(dense) * (eps + 1e-5), s


def test_float32_tensors_whose_norm_exceeds_float32_are_decomposed():
    # finite float32 entries of 1e38: the norm (8e38) does not fit float32, so it cannot sit
    # in one core; TT-SVD and rounding spread it over the cores (they returned NaN cores /
    # raised "NaN or Inf entries")
    full = numpy.full((4, 4, 4), 1e38, dtype=numpy.float32)
    for got in (tt_svd(tinytt.to_device(full), eps=1e-6),
                round_tt(TensorTrain([tinytt.to_device(numpy.full((1, 4, 1), v, numpy.float32))
                                      for v in (1e13, 1e12, 1e13)]), eps=1e-6)):
        assert got.ranks == (1, 1, 1, 1)
        assert all(numpy.isfinite(tinytt.to_numpy(c.data)).all() for c in got.cores)
        back = tinytt.to_numpy(got.full().data).astype(numpy.float64)
        assert numpy.abs(back / 1e38 - 1).max() < 1e-5
    m = tinytt.tt_matrix_svd(tinytt.to_device(numpy.full((8, 8), 1e38, numpy.float32)), (2, 4), (4, 2), eps=1e-6)
    assert numpy.isfinite(tinytt.to_numpy(m.full().data)).all()


def test_single_core_results_are_new_arrays():
    v = numpy.arange(4.0)
    a = tt_svd(tinytt.to_device(v))
    a.cores[0].data *= 10
    assert numpy.array_equal(v, numpy.arange(4.0))
    b = TensorTrain([tinytt.to_device(numpy.ones((1, 4, 1)))])
    for out in (b.round(), b.orthogonalize("left"), b.orthogonalize("right")):
        out.cores[0].data *= 3
    assert numpy.array_equal(tinytt.to_numpy(b.cores[0].data), numpy.ones((1, 4, 1)))


def test_round_rejects_arrays():
    with pytest.raises(TypeError, match="TensorTrain or TTMatrix"):
        round_tt(numpy.ones((2, 2)), 0.1)


def test_max_rank_rejects_strings_and_non_integer_caps():
    a = dev(numpy.ones((2, 3, 4)))
    with pytest.raises(TypeError, match="max_rank"):
        tt_svd(a, max_rank="4")               # was read as the list [4]
    with pytest.raises(ValueError, match="max_rank"):
        tt_svd(a, max_rank=[1, 2.5, 2, 1])    # was truncated to 2


def test_finite_input_whose_norm_overflows_gets_a_message_saying_so():
    # every entry is finite: "contains NaN or Inf" was wrong
    with pytest.raises(ValueError, match="norm overflows float64"):
        tt_svd(numpy.full((2, 2), 1e308))
    with pytest.raises(ValueError, match="NaN or Inf"):
        tt_svd(numpy.array([[1.0, numpy.inf], [0.0, 1.0]]))


def test_max_rank_takes_a_0d_integer_array():
    a = numpy.random.default_rng(0).standard_normal((3, 4, 5))
    assert tt_svd(a, max_rank=numpy.array(2)).ranks == tt_svd(a, max_rank=2).ranks == (1, 2, 2, 1)
    assert tt_svd(a).round(max_rank=numpy.array(1)).ranks == (1, 1, 1, 1)
    for bad in (numpy.array(True), numpy.array(2.0), numpy.array(0)):
        with pytest.raises((TypeError, ValueError), match="max_rank"):
            tt_svd(a, max_rank=bad)
