"""Linear, Embedding, Dropout: values, gradients, validation."""

import numpy
import pytest

import tinytt as tt
from tinytt import nn
from tinytt.testing import assert_close, check_grads

from conftest import on_device


def test_linear_default_float32_and_init():
    lin = nn.Linear(300, 200, seed=0)
    assert lin.weight.shape == (300, 200) and lin.bias.shape == (200,)
    assert lin.weight.dtype == numpy.float32 and lin.bias.dtype == numpy.float32
    w = tt.to_numpy(lin.weight.data)
    a = numpy.sqrt(6 / 500)
    assert w.max() <= a and w.min() >= -a
    assert abs(w.var() - 2 / 500) < 0.1 * 2 / 500
    he = tt.to_numpy(nn.Linear(300, 200, init="he", seed=0, bias=False).weight.data)
    assert abs(he.var() - 2 / 300) < 0.1 * 2 / 300
    numpy.testing.assert_array_equal(tt.to_numpy(nn.Linear(3, 2, seed=5).weight.data),
                                     tt.to_numpy(nn.Linear(3, 2, seed=5).weight.data))
    with pytest.raises(ValueError):
        nn.Linear(3, 2, init="bogus")


@pytest.mark.parametrize("shape", [(4, 3), (2, 5, 3), (3,)])
def test_linear_grads(shape):
    lin = nn.Linear(3, 2, dtype="float64", seed=1)
    x = on_device(numpy.random.default_rng(0).standard_normal(shape))

    def f(x, w, b):
        probe = nn.Linear(3, 2, dtype="float64")
        probe.weight, probe.bias = w, b
        return probe(x)

    check_grads(f, x, lin.weight.data.copy(), lin.bias.data.copy())
    y = lin(tt.Tensor(x))
    assert y.shape == shape[:-1] + (2,)
    assert_close(y.data, x @ lin.weight.data + lin.bias.data)


def test_embedding_lookup_and_grads():
    emb = nn.Embedding(6, 3, dtype="float64", seed=0)
    ids = numpy.array([[1, 2, 2], [5, 1, 2]])
    out = emb(on_device(ids))
    assert out.shape == (2, 3, 3)
    assert_close(out.data, tt.to_numpy(emb.weight.data)[ids])
    check_grads(lambda w: nn.functional.embedding(w, on_device(ids)), emb.weight.data.copy())
    out.sum().backward()
    counts = numpy.bincount(ids.ravel(), minlength=6)
    assert_close(emb.weight.grad, numpy.repeat(counts[:, None], 3, axis=1).astype(float))


def test_embedding_padding_idx():
    emb = nn.Embedding(5, 4, padding_idx=0, seed=0)
    assert emb.weight.dtype == numpy.float32
    numpy.testing.assert_array_equal(tt.to_numpy(emb.weight.data[0]), 0)
    ids = numpy.array([[0, 3, 0], [3, 0, 1]])
    g = numpy.random.default_rng(1).standard_normal((2, 3, 4)).astype(numpy.float32)
    emb(on_device(ids)).backward(on_device(g))
    grad = tt.to_numpy(emb.weight.grad)
    numpy.testing.assert_array_equal(grad[0], 0)
    numpy.testing.assert_allclose(grad[3], g[0, 1] + g[1, 0], rtol=1e-6)
    numpy.testing.assert_allclose(grad[1], g[1, 2], rtol=1e-6)
    numpy.testing.assert_array_equal(grad[[2, 4]], 0)
    assert nn.Embedding(5, 2, padding_idx=-1).padding_idx == 4


def test_embedding_id_validation():
    emb = nn.Embedding(5, 2)
    with pytest.raises(TypeError, match="integer"):
        emb(on_device(numpy.array([0.0, 1.0])))
    with pytest.raises(IndexError, match=r"\[0, 5\)"):
        emb(on_device(numpy.array([0, 5])))
    with pytest.raises(IndexError):
        emb(on_device(numpy.array([-1])))
    with pytest.raises(ValueError):
        nn.Embedding(5, 2, padding_idx=5)
    assert emb([1, 2]).shape == (2, 2)
    assert emb(on_device(numpy.zeros((0,), dtype=numpy.int64))).shape == (0, 2)


def test_dropout_train_eval():
    x = tt.Tensor(on_device(numpy.ones((200, 50), dtype=numpy.float32)), requires_grad=True)
    d = nn.Dropout(0.3, seed=0)
    y = d(x)
    frac = float((tt.to_numpy(y.data) == 0).mean())
    assert 0.25 < frac < 0.35
    kept = tt.to_numpy(y.data)[tt.to_numpy(y.data) != 0]
    numpy.testing.assert_allclose(kept, 1 / 0.7, rtol=1e-6)
    y.sum().backward()
    numpy.testing.assert_array_equal(tt.to_numpy(x.grad) != 0, tt.to_numpy(y.data) != 0)
    d.eval()
    assert d(x) is x
    y1 = nn.Dropout(0.5, seed=3)(x).data
    y2 = nn.Dropout(0.5, seed=3)(x).data
    numpy.testing.assert_array_equal(tt.to_numpy(y1), tt.to_numpy(y2))
    with pytest.raises(ValueError):
        nn.Dropout(1.0)


def test_activations():
    x = on_device(numpy.array([-1.0, 0.5]))
    assert_close(nn.ReLU()(tt.Tensor(x)).data, numpy.array([0.0, 0.5]))
    check_grads(lambda t: nn.Tanh()(t), x)
    check_grads(lambda t: nn.ReLU()(t), on_device(numpy.array([-1.0, 0.5, 2.0, -0.3])))   # away from the kink


@pytest.mark.parametrize("make", [lambda: nn.Linear(8, 3, seed=0), lambda: nn.TTLinear(8, 8, 2, seed=0)])
def test_linear_layers_convert_int_and_bool_inputs_and_reject_complex(make):
    layer = make()
    ints = numpy.arange(16).reshape(2, 8) % 3
    for x in (ints, ints.astype(bool)):
        y = layer(tt.to_device(x))
        assert y.dtype == numpy.float32   # was float64 from a float32 layer
        want = layer(tt.to_device(x.astype(numpy.float32)))
        assert_close(y, want.data, rtol=0, atol=0)
    with pytest.raises(TypeError, match="real"):
        layer(tt.to_device(numpy.ones((2, 8), dtype=numpy.complex64)))


@pytest.mark.parametrize("make", [lambda s: tt.nn.Dropout(0.5, seed=s),
                                  lambda s: tt.nn.TTEmbedding(20, 8, rank=2, seed=s),
                                  lambda s: tt.nn.TTLinear(8, 8, rank=2, seed=s),
                                  lambda s: tt.nn.Linear(2, 2, seed=s), lambda s: tt.nn.Embedding(4, 2, seed=s)])
def test_every_layer_checks_its_seed_alike(make):
    """Dropout, TTEmbedding and TTLinear took seed=True as seed 1 and gave NumPy's SeedSequence
    TypeError for 1.5 or 'a'; Linear, Embedding and LSTM refused them with a ValueError."""
    for bad in (True, 1.5, "a", -1):
        with pytest.raises(ValueError, match="seed must be None, an int >= 0"):
            make(bad)
    for good in (None, 3, numpy.int64(3), numpy.random.default_rng(0)):
        make(good)
