"""TTMatrix: full() convention, rows(), @, tt_matrix_svd, round; gradients; errors."""

import numpy
import pytest
from hypothesis import given, strategies as st

import tinytt
from tinytt.testing import check_grads
from tinytt.tt import TTMatrix, tt_matrix_num_params, tt_matrix_svd
from tinytt.tt.cores import tt_matrix_full_cores

RTOL = {numpy.float32: 1e-4, numpy.float64: 1e-10}


@st.composite
def tt_matrices(draw, max_dims=4, max_side=4, max_rank=4):
    nd = draw(st.integers(1, max_dims))
    rows = draw(st.lists(st.integers(1, max_side), min_size=nd, max_size=nd))
    cols = draw(st.lists(st.integers(1, max_side), min_size=nd, max_size=nd))
    ranks = [1] + draw(st.lists(st.integers(1, max_rank), min_size=nd - 1, max_size=nd - 1)) + [1]
    rng = numpy.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    cores = [rng.standard_normal((ranks[k], m, n, ranks[k + 1])) for k, (m, n) in enumerate(zip(rows, cols))]
    return cores, draw(st.sampled_from([numpy.float32, numpy.float64])), rng


def dense_entry(cores, i, j):
    """W[i, j] by the defining product, digits in C order (GUIDE §1)."""
    di = numpy.unravel_index(i, [c.shape[1] for c in cores])
    dj = numpy.unravel_index(j, [c.shape[2] for c in cores])
    v = numpy.ones((1, 1))
    for k, c in enumerate(cores):
        v = v @ c[:, di[k], dj[k], :]
    return v[0, 0]


def check_close(actual, expected, scale, dtype):
    a = tinytt.to_numpy(actual).astype(numpy.float64)
    assert a.shape == numpy.shape(expected)
    assert numpy.all(numpy.abs(a - expected) <= RTOL[dtype] * (scale + 1e-30))


def test_full_convention_matches_definition():
    rng = numpy.random.default_rng(0)
    cores = [rng.standard_normal(s) for s in [(1, 2, 3, 2), (2, 3, 2, 3), (3, 2, 2, 1)]]
    w = tinytt.to_numpy(TTMatrix([tinytt.to_device(c) for c in cores]).full())
    assert w.shape == (12, 12)
    for i in range(12):
        for j in range(12):
            assert w[i, j] == pytest.approx(dense_entry(cores, i, j), rel=1e-12, abs=1e-12)


@given(tt_matrices())
def test_full_rows_matmul(case):
    cores, dtype, rng = case
    m = TTMatrix([tinytt.to_device(c.astype(dtype)) for c in cores])
    cs = [c.astype(dtype).astype(numpy.float64) for c in cores]
    ref = tt_matrix_full_cores(cs)
    scale = tt_matrix_full_cores([numpy.abs(c) for c in cs])
    assert m.shape == ref.shape and m.dtype == dtype
    assert m.row_shape == tuple(c.shape[1] for c in cores) and m.col_shape == tuple(c.shape[2] for c in cores)
    assert m.num_parameters == tt_matrix_num_params(m.row_shape, m.col_shape, list(m.ranks))
    check_close(m.full(), ref, scale, dtype)
    ids = rng.integers(0, ref.shape[0], size=(3, 4))
    ids[1, 2] = ids[0, 0]  # repeated ids
    check_close(m.rows(tinytt.to_device(ids)), ref[ids], scale[ids], dtype)
    check_close(m.rows(tinytt.to_device(numpy.int64(ids[0, 1]))), ref[ids[0, 1]], scale[ids[0, 1]], dtype)
    x = rng.standard_normal((ref.shape[1], 3)).astype(dtype)
    x64 = x.astype(numpy.float64)
    check_close(m @ tinytt.to_device(x), ref @ x64, scale @ numpy.abs(x64), dtype)
    check_close(m @ tinytt.Tensor(tinytt.to_device(x[:, 0])), ref @ x64[:, 0], scale @ numpy.abs(x64[:, 0]), dtype)


@given(tt_matrices(max_rank=3), st.floats(1e-12, 0.5))
def test_tt_matrix_svd_and_round(case, eps):
    cores, dtype, _ = case
    w = tt_matrix_full_cores(cores).astype(dtype)
    m = tt_matrix_svd(tinytt.to_device(w), [c.shape[1] for c in cores], [c.shape[2] for c in cores], eps=eps)
    assert m.dtype == dtype
    slack = 2e-5 if dtype == numpy.float32 else 1e-13
    w64 = w.astype(numpy.float64)
    err = numpy.linalg.norm(tinytt.to_numpy(m.full()).astype(numpy.float64) - w64)
    assert err <= (eps + slack) * numpy.linalg.norm(w64)
    capped = tt_matrix_svd(tinytt.to_device(w), m.row_shape, m.col_shape, eps=0.0, max_rank=2)
    assert max(capped.ranks) <= 2
    r = m.round(eps, max_rank=2)
    assert max(r.ranks) <= 2 and r.row_shape == m.row_shape and r.col_shape == m.col_shape


def test_round_of_exact_matrix_keeps_ranks():
    rng = numpy.random.default_rng(5)
    cores = [rng.standard_normal(s) for s in [(1, 3, 4, 2), (2, 5, 2, 3), (3, 4, 3, 1)]]
    m = TTMatrix([tinytt.to_device(c) for c in cores])
    r = m.round(1e-12)
    assert r.ranks == (1, 2, 3, 1)
    numpy.testing.assert_allclose(tinytt.to_numpy(r.full()), tinytt.to_numpy(m.full()), rtol=1e-10, atol=1e-12)
    svd = tt_matrix_svd(m.full(), m.row_shape, m.col_shape, eps=1e-12)
    assert svd.ranks == (1, 2, 3, 1)
    assert not svd.cores[0].requires_grad


def test_gradients():
    rng = numpy.random.default_rng(1)
    cores = [tinytt.to_device(rng.standard_normal(s)) for s in [(1, 2, 3, 2), (2, 3, 2, 2), (2, 2, 2, 1)]]
    ids = tinytt.to_device(numpy.array([[0, 5, 11], [5, 5, 3]]))
    x = tinytt.to_device(rng.standard_normal((12, 2)))
    check_grads(lambda *c: TTMatrix(c).full(), *cores)
    check_grads(lambda *c: TTMatrix(c).rows(ids), *cores)
    check_grads(lambda x, *c: TTMatrix(c) @ x, x, *cores)
    check_grads(lambda x, *c: TTMatrix(c) @ x, x[:, 0], *cores)


def test_bad_inputs():
    xp = tinytt.get_xp()
    with pytest.raises(ValueError, match="4-D"):
        TTMatrix([xp.ones((1, 2, 1))])
    with pytest.raises(ValueError, match="rank mismatch"):
        TTMatrix([xp.ones((1, 2, 2, 3)), xp.ones((2, 2, 2, 1))])
    m = TTMatrix([xp.ones((1, 2, 3, 2)), xp.ones((2, 2, 2, 1))])
    assert m.shape == (4, 6)
    with pytest.raises(IndexError, match=r"\[0, 4\)"):
        m.rows(xp.asarray([4]))
    with pytest.raises(IndexError):
        m.rows(xp.asarray([-1]))
    with pytest.raises(TypeError, match="integer"):
        m.rows(xp.asarray([0.5]))
    with pytest.raises(ValueError, match=r"\(6,\)"):
        _ = m @ xp.ones((4,))
    with pytest.raises(ValueError, match="must have shape"):
        tt_matrix_svd(xp.ones((4, 5)), (2, 2), (2, 3))
    with pytest.raises(ValueError, match="equal length"):
        tt_matrix_svd(xp.ones((4, 6)), (4,), (2, 3))


def test_shape_arguments_and_tt_times_tt_name_the_problem():
    """A bare int for row_shape failed with "'int' object is not iterable"; W @ W failed with
    an unrelated message about object arrays."""
    w = tinytt.glorot_tt_matrix((2, 3), (4, 5), 2, dtype="float64")
    with pytest.raises(TypeError, match="two TT-matrices is not implemented"):
        w @ w
    with pytest.raises(TypeError, match="row_shape must be a tuple"):
        tinytt.glorot_tt_matrix(6, (4, 5), 2)
    with pytest.raises(TypeError, match="row_shape must be a tuple"):
        tt_matrix_svd(numpy.ones((6, 20)), 6, (4, 5))
    with pytest.raises(TypeError, match="col_shape must be a tuple"):
        tt_matrix_num_params((2, 3), 20, 2)
