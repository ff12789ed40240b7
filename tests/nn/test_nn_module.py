"""Module / Parameter / Sequential: discovery, modes, state dicts."""

import numpy
import pytest

import tinytt as tt
import tinytt.io  # noqa: F401  (tt.io)
from tinytt import nn

from conftest import on_device


class Block(nn.Module):
    def __init__(self):
        self.lin = nn.Linear(3, 4, seed=0)
        self.scale = nn.Parameter(on_device(numpy.ones(4, dtype=numpy.float32)))
        self.plain = tt.Tensor(on_device(numpy.zeros(2)))  # not a parameter
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        return self.drop(self.lin(x) * self.scale)


class Net(nn.Module):
    def __init__(self):
        self.first = Block()
        self.layers = [nn.Linear(4, 4, seed=1), nn.Linear(4, 2, seed=2)]
        self.head_bias = nn.Parameter(on_device(numpy.zeros(2, dtype=numpy.float32)))

    def forward(self, x):
        x = self.first(x)
        for layer in self.layers:
            x = layer(x)
        return x + self.head_bias


def test_parameter_is_tensor_with_grad():
    p = nn.Parameter(numpy.ones(3))
    assert isinstance(p, tt.Tensor) and p.requires_grad and p.is_leaf
    with pytest.raises(TypeError):
        nn.Parameter(numpy.ones(3, dtype=numpy.int64))
    with pytest.raises(TypeError, match="floating point"):
        nn.Parameter(numpy.ones(3, dtype=numpy.complex64))


def test_named_parameters_order_and_names():
    net = Net()
    names = [n for n, _ in net.named_parameters()]
    assert names == ["first.lin.weight", "first.lin.bias", "first.scale", "layers.0.weight",
                     "layers.0.bias", "layers.1.weight", "layers.1.bias", "head_bias"]
    assert len(net.parameters()) == 8
    assert net.num_parameters() == 3 * 4 + 4 + 4 + 16 + 4 + 8 + 2 + 2
    assert all(p.dtype == numpy.float32 for p in net.parameters())


def test_dict_of_modules_is_a_named_group():
    class Heads(nn.Module):
        def __init__(self):
            self.heads = {"sentiment": nn.Linear(2, 2, seed=0), "topic": nn.Linear(2, 3, seed=1),
                          "scale": nn.Parameter(on_device(numpy.ones(2))), "note": "not a module"}
            self.drop = {"p": nn.Dropout(0.5)}

    m = Heads()
    assert [n for n, _ in m.named_parameters()] == ["heads.sentiment.weight", "heads.sentiment.bias",
                                                    "heads.topic.weight", "heads.topic.bias", "heads.scale"]
    m.eval()
    assert not m.drop["p"].training and not m.heads["topic"].training
    state = m.state_dict()
    state["heads.topic.bias"] = numpy.arange(3, dtype=numpy.float32)
    m.load_state_dict(state)
    numpy.testing.assert_array_equal(tt.to_numpy(m.heads["topic"].bias.data), [0, 1, 2])

    class BadKeys(nn.Module):
        def __init__(self):
            self.heads = {0: nn.Linear(2, 2)}

    with pytest.raises(TypeError, match="str keys"):
        BadKeys().parameters()


def test_shared_parameter_listed_once():
    class Tied(nn.Module):
        def __init__(self):
            self.a = nn.Linear(2, 2)
            self.b = nn.Linear(2, 2)
            self.b.weight = self.a.weight

    names = [n for n, _ in Tied().named_parameters()]
    assert names == ["a.weight", "a.bias", "b.bias"]


def test_train_eval_recursive_and_zero_grad():
    net = Net()
    net.eval()
    assert all(not m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())
    x = tt.Tensor(on_device(numpy.ones((2, 3), dtype=numpy.float32)))
    net(x).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


def test_state_dict_round_trip(tmp_path):
    a, b = Net(), Net()
    for p in b.parameters():
        p.data[...] = 7
    sd = a.state_dict()
    assert list(sd) == [n for n, _ in a.named_parameters()]
    sd_copy = {k: v.copy() for k, v in sd.items()}
    a.first.lin.weight.data[...] = -1  # state_dict holds copies
    numpy.testing.assert_array_equal(tt.to_numpy(sd["first.lin.weight"]), tt.to_numpy(sd_copy["first.lin.weight"]))
    path = tmp_path / "m.npz"
    tt.io.save(sd, path)
    loaded = tt.io.load(path)
    ref = b.first.lin.weight
    result = b.load_state_dict(loaded)
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert b.first.lin.weight is ref  # copied in place
    for (n1, p1), (n2, p2) in zip(b.named_parameters(), sd_copy.items()):
        assert n1 == n2
        numpy.testing.assert_array_equal(tt.to_numpy(p1.data), tt.to_numpy(p2))


def test_load_state_dict_strict_errors():
    net = Net()
    sd = net.state_dict()
    bad = dict(sd)
    del bad["head_bias"]
    bad["extra"] = numpy.zeros(1, dtype=numpy.float32)
    with pytest.raises(KeyError, match="missing: \\['head_bias'\\].*unexpected: \\['extra'\\]"):
        net.load_state_dict(bad)
    res = net.load_state_dict(bad, strict=False)
    assert res.missing_keys == ["head_bias"] and res.unexpected_keys == ["extra"]
    shape_bad = dict(sd, head_bias=numpy.zeros(3, dtype=numpy.float32))
    with pytest.raises(ValueError, match="head_bias.*shape"):
        net.load_state_dict(shape_bad)
    dtype_bad = dict(sd, head_bias=numpy.zeros(2, dtype=numpy.float64))
    before = net.first.lin.weight.data.copy()
    sd2 = dict(dtype_bad, **{"first.lin.weight": numpy.full((3, 4), 5, dtype=numpy.float32)})
    with pytest.raises(TypeError, match="head_bias.*dtype"):
        net.load_state_dict(sd2)
    numpy.testing.assert_array_equal(tt.to_numpy(net.first.lin.weight.data), tt.to_numpy(before))  # nothing changed


def test_sequential():
    seq = nn.Sequential(nn.Linear(3, 5, seed=0), nn.ReLU(), nn.Linear(5, 2, seed=1))
    assert len(seq) == 3 and isinstance(seq[1], nn.ReLU) and seq[-1] is seq[2]
    assert [n for n, _ in seq.named_parameters()] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    x = numpy.ones((4, 3), dtype=numpy.float32)
    y = seq(tt.Tensor(on_device(x)))
    w0, b0, w2, b2 = (tt.to_numpy(p.data) for p in seq.parameters())
    expect = numpy.maximum(x @ w0 + b0, 0) @ w2 + b2
    numpy.testing.assert_allclose(tt.to_numpy(y.data), expect, rtol=1e-6)
    with pytest.raises(TypeError):
        nn.Sequential(nn.ReLU(), 3)
    assert "Linear" in repr(seq)
    # a slice is a Sequential of the same modules (renumbered from 0), like a list slice
    head = seq[:2]
    assert isinstance(head, nn.Sequential) and len(head) == 2 and head[0] is seq[0] and head[1] is seq[1]
    numpy.testing.assert_array_equal(tt.to_numpy(seq[2](head(tt.Tensor(on_device(x))))), tt.to_numpy(y))
    assert [type(m) for m in seq[::-1]] == [type(m) for m in reversed(list(seq))]
    assert len(seq[5:]) == 0
    with pytest.raises(IndexError, match="out of range"):
        seq[3]
    with pytest.raises(TypeError, match="ints or slices"):
        seq["0"]


def test_two_parameters_with_one_name_are_an_error():
    # a dict key with a dot can spell a child's dotted name: state_dict() would silently keep
    # one of the two parameters, and a strict load would not notice the other
    class Inner(nn.Module):
        def __init__(self):
            self.c = nn.Parameter(numpy.zeros(2, dtype=numpy.float32))

    class Model(nn.Module):
        def __init__(self):
            self.q = {"b.c": nn.Parameter(numpy.ones(2, dtype=numpy.float32)), "b": Inner()}

    with pytest.raises(ValueError, match="two different parameters are both named 'q.b.c'"):
        Model().state_dict()
    shared = nn.Parameter(numpy.ones(2, dtype=numpy.float32))

    class Shared(nn.Module):       # one parameter reached under two names is fine (listed once)
        def __init__(self):
            self.a = shared
            self.group = {"a": shared}

    assert [n for n, _ in Shared().named_parameters()] == ["a"]


def test_loss_modules():
    logits = tt.Tensor(on_device(numpy.array([[1.0, 2.0], [0.5, -1.0]])))
    t = on_device(numpy.array([1, 0]))
    assert nn.CrossEntropyLoss()(logits, t).item() == tt.cross_entropy(logits, t).item()
    assert nn.functional.cross_entropy is tt.cross_entropy


def test_nested_groups_are_found():
    class Nested(nn.Module):
        def __init__(self):
            self.blocks = [[nn.Linear(2, 2, seed=0), nn.Linear(2, 2, seed=1)], (nn.Linear(2, 1, seed=2),)]
            self.heads = {"a": [nn.Linear(1, 1, seed=3)]}
            self.loop = []
            self.loop.append(self.loop)      # a list holding itself is walked once

    m = Nested()
    assert [n for n, _ in m.named_parameters()] == [
        "blocks.0.0.weight", "blocks.0.0.bias", "blocks.0.1.weight", "blocks.0.1.bias",
        "blocks.1.0.weight", "blocks.1.0.bias", "heads.a.0.weight", "heads.a.0.bias"]
    assert [n for n, _ in m.named_modules()] == ["", "blocks.0.0", "blocks.0.1", "blocks.1.0", "heads.a.0"]
    m.eval()
    assert not m.heads["a"][0].training
    with pytest.raises(TypeError, match="str keys"):
        class BadKeys(nn.Module):
            def __init__(self):
                self.d = {0: [nn.Linear(1, 1)]}
        BadKeys().parameters()


def test_cycles_are_walked_once():
    class Head(nn.Module):
        def __init__(self, owner):
            self.owner = owner                # a child holding its parent
            self.fc = nn.Linear(2, 2, seed=0)

    class Owner(nn.Module):
        def __init__(self):
            self.emb = nn.Embedding(5, 2, seed=0)
            self.head = Head(self)
            self.me = self

    m = Owner()
    assert [n for n, _ in m.named_parameters()] == ["emb.weight", "head.fc.weight", "head.fc.bias"]
    assert m.num_parameters() == 10 + 4 + 2
    assert list(m.state_dict()) == ["emb.weight", "head.fc.weight", "head.fc.bias"]
    text = repr(m)
    assert "(owner): <cycle: Owner>" in text and "(me): <cycle: Owner>" in text


def test_load_state_dict_read_only_parameter_changes_nothing():
    class Two(nn.Module):
        def __init__(self):
            self.a = nn.Parameter(numpy.zeros(3, dtype=numpy.float32))
            self.b = nn.Parameter(numpy.broadcast_to(numpy.float32(0), (3,)))   # read-only view

    m = Two()
    with pytest.raises(ValueError, match="read-only"):
        m.load_state_dict({"a": numpy.ones(3, dtype=numpy.float32), "b": numpy.ones(3, dtype=numpy.float32)})
    assert not m.a.data.any()


def test_flags_must_be_bools():
    """train("False"), Linear(bias="no") and load_state_dict(strict="no") read the truthiness of
    a string: training stayed on, a bias was made, the load was strict."""
    lin = nn.Linear(2, 2, seed=0)
    for call in (lambda: lin.train("False"), lambda: nn.Linear(2, 2, bias="no"),
                 lambda: nn.TTLinear(4, 4, rank=2, bias="no"),
                 lambda: lin.load_state_dict(lin.state_dict(), strict="no")):
        with pytest.raises(TypeError, match="must be a bool"):
            call()
    assert not lin.train(numpy.False_).training and lin.train().training


def test_a_foreign_tensor_in_a_state_dict_is_named_with_its_module():
    torch = pytest.importorskip("torch")
    lin = nn.Linear(2, 2, seed=0)
    with pytest.raises(TypeError, match="torch.Tensor"):
        lin.load_state_dict({"weight": torch.zeros(2, 2), "bias": torch.zeros(2)})
