"""TTLinear: agrees with the dense matrix it represents, on both forward paths; gradients."""

import numpy
import pytest

import tinytt as tt
from tinytt import nn
from tinytt.testing import assert_close, check_grads

from conftest import on_device

pytest.importorskip("tinytt.nn.tt_linear")


@pytest.mark.parametrize("path", ["direct", "full"])
def test_tt_linear_matches_dense(path, monkeypatch):
    layer = nn.TTLinear(24, 30, rank=3, dtype="float64", seed=0)
    assert layer.row_shape == (2, 3, 4) or numpy.prod(layer.row_shape) == 24
    layer.bias.data[...] = on_device(numpy.arange(30) * 0.1)
    if path == "direct":
        monkeypatch.setattr(nn.TTLinear, "_costs", lambda self, b: (0, 1))
    else:
        monkeypatch.setattr(nn.TTLinear, "_costs", lambda self, b: (1, 0))
    x = numpy.random.default_rng(1).standard_normal((2, 5, 24))
    w = tt.to_numpy(layer.matrix.full().data)
    assert w.shape == (24, 30)
    y = layer(tt.Tensor(on_device(x)))
    assert y.shape == (2, 5, 30)
    assert_close(y.data, x @ w + tt.to_numpy(layer.bias.data), rtol=1e-10, atol=1e-12)
    cores = [c.data.copy() for c in layer.cores]

    def f(x, b, *cs):
        probe = nn.TTLinear(24, 30, rank=3, shape=(layer.row_shape, layer.col_shape), dtype="float64")
        probe.cores, probe.bias = list(cs), b
        return probe(x)

    check_grads(f, on_device(x), layer.bias.data.copy(), *cores)


def test_tt_linear_params_and_shape():
    layer = nn.TTLinear(256, 128, rank=4, seed=0)
    assert numpy.prod(layer.row_shape) == 256 and numpy.prod(layer.col_shape) == 128
    assert all(c.dtype == numpy.float32 for c in layer.parameters())
    names = [n for n, _ in layer.named_parameters()]
    assert names == ["cores.0", "cores.1", "cores.2", "bias"]
    assert layer.compression_ratio > 1
    w = tt.to_numpy(layer.matrix.full().data)
    assert 0.3 < w.var() / (2 / (256 + 128)) < 3
    with pytest.raises(ValueError):
        nn.TTLinear(24, 30, rank=2, shape=((2, 3, 5), (2, 3, 5)))


def test_shape_and_n_cores_are_checked():
    with pytest.raises(ValueError, match="shape"):
        nn.TTLinear(6, 6, 2, shape=((2.5, 3), (2, 3)))   # was truncated to (2, 3)
    with pytest.raises(ValueError, match="n_cores"):
        nn.TTLinear(6, 6, 2, n_cores=0)


def test_rank_list_as_for_tt_embedding():
    shape = ((4, 4, 4), (2, 4, 4))
    layer = nn.TTLinear(64, 32, rank=[1, 3, 5, 1], shape=shape, dtype="float64", seed=0)
    assert layer.ranks == (1, 3, 5, 1)
    assert [tuple(c.shape) for c in layer.cores] == [(1, 4, 2, 3), (3, 4, 4, 5), (5, 4, 4, 1)]
    assert "rank=(1, 3, 5, 1)" in repr(layer)
    x = numpy.random.default_rng(2).standard_normal((3, 64))
    w = tt.to_numpy(layer.matrix.full().data)
    assert_close(layer(tt.Tensor(on_device(x))).data, x @ w, rtol=1e-10, atol=1e-12)
    assert nn.TTLinear(64, 32, rank=4, shape=shape).ranks == (1, 4, 4, 1)
    for bad in ([1, 3, 1], [2, 3, 3, 1], [1, 0, 2, 1], 0, True, "3", 2.0):
        with pytest.raises((ValueError, TypeError), match="rank"):
            nn.TTLinear(64, 32, rank=bad, shape=shape)


def test_the_path_choice_follows_the_batch_size():
    """A 100,000-row batch took the core-by-core contraction (fewer multiply-adds, but einsums
    3.5-10x slower per multiply-add than one GEMM and intermediates 8x the input: 12 s and
    +10 GB against 3.8 s and +0.08 GB for x @ W); one row must still skip building W."""
    layer = nn.TTLinear(1024, 1024, rank=8, seed=0)
    direct, full = layer._costs(1)
    assert direct < full
    direct, full = layer._costs(100_000)
    assert full < direct
    wide = nn.TTLinear(4096, 256, rank=8, n_cores=4, seed=0)
    assert wide._costs(16)[0] < wide._costs(16)[1] and wide._costs(256)[1] < wide._costs(256)[0]
