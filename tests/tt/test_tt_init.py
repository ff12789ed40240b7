"""Glorot initialisation through the cores: Var(W) = 2 / (V' + D)."""

import numpy
import pytest

import tinytt
from tinytt.tt import glorot_std, glorot_tt_matrix, tt_matrix_num_params
from tinytt.tt.cores import tt_matrix_full_cores


def test_variance_imdb_shape():
    row, col, rank = (25, 30, 40), (4, 8, 8), 16
    target = 2.0 / (30000 + 256)
    variances = []
    for seed in range(4):
        m = glorot_tt_matrix(row, col, rank, seed=seed, dtype="float64")
        w = tt_matrix_full_cores([tinytt.to_numpy(c.data) for c in m.cores])
        assert w.shape == (30000, 256)
        variances.append(float(numpy.mean(w * w)))
    assert numpy.mean(variances) == pytest.approx(target, rel=0.03)


def test_structure_and_dtype():
    m = glorot_tt_matrix((25, 30, 40), (4, 8, 8), 16, seed=0)
    assert m.dtype == numpy.float32
    assert m.ranks == (1, 16, 16, 1)
    assert m.num_parameters == tt_matrix_num_params((25, 30, 40), (4, 8, 8), 16) == 68160
    assert all(c.requires_grad and c.is_leaf for c in m.cores)
    s = glorot_std((25, 30, 40), (4, 8, 8), 16)
    assert s ** 6 * 16 * 16 == pytest.approx(2.0 / 30256)
    core = tinytt.to_numpy(m.cores[1].data)
    assert float(numpy.std(core)) == pytest.approx(s, rel=0.02)
    a = glorot_tt_matrix((2, 3), (2, 2), [1, 3, 1], seed=7, dtype="float64")
    b = glorot_tt_matrix((2, 3), (2, 2), [1, 3, 1], seed=7, dtype="float64")
    numpy.testing.assert_array_equal(tinytt.to_numpy(a.full()), tinytt.to_numpy(b.full()))


def test_bad_inputs():
    with pytest.raises(ValueError, match="equal length"):
        glorot_tt_matrix((2, 3), (2,), 2)
    with pytest.raises(ValueError, match="rank"):
        glorot_tt_matrix((2, 3), (2, 2), [2, 3, 1])
    with pytest.raises(TypeError, match="float32 or float64"):
        glorot_tt_matrix((2, 3), (2, 2), 2, dtype="int32")


def test_one_seed_gives_one_layer_in_either_dtype():
    # drawn on the host in float64, then cast: the float32 layer is the float64 one rounded
    from tinytt import nn

    wide = glorot_tt_matrix((5, 6), (3, 4), 3, seed=7, dtype="float64")
    narrow = glorot_tt_matrix((5, 6), (3, 4), 3, seed=7, dtype="float32")
    for a, b in zip(wide.cores, narrow.cores):
        assert b.data.dtype == numpy.float32
        numpy.testing.assert_array_equal(tinytt.to_numpy(b.data), tinytt.to_numpy(a.data).astype(numpy.float32))
    e64 = nn.TTEmbedding(30, 12, rank=3, shape=((5, 6), (3, 4)), seed=3, dtype="float64")
    e32 = nn.TTEmbedding(30, 12, rank=3, shape=((5, 6), (3, 4)), seed=3)
    numpy.testing.assert_allclose(tinytt.to_numpy(e32.to_dense()), tinytt.to_numpy(e64.to_dense()), rtol=1e-5, atol=1e-7)
    other = glorot_tt_matrix((5, 6), (3, 4), 3, seed=8, dtype="float64")
    assert not numpy.array_equal(tinytt.to_numpy(other.cores[0].data), tinytt.to_numpy(wide.cores[0].data))
