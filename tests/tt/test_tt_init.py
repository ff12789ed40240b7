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
