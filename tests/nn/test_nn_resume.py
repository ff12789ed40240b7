"""Resuming training from a checkpoint (model + Adam state through tinytt.io) is bit-identical
(on CuPy identical to rounding: the embedding's backward sums with atomic adds there)."""

import numpy

import tinytt as tt
import tinytt.io
import tinytt.optim
from tinytt import nn

from conftest import assert_same_runs, on_device


class Classifier(nn.Module):
    def __init__(self, seed=0):
        self.emb = nn.Embedding(50, 8, padding_idx=0, seed=seed)
        self.lstm = nn.LSTM(8, 6, bidirectional=True, seed=seed + 1)
        self.head = nn.Linear(12, 2, seed=seed + 2)

    def forward(self, ids, lengths):
        out, (h, _) = self.lstm(self.emb(ids), lengths=lengths)
        feats = tt.concat([h[0], h[1]], axis=-1)
        return self.head(feats) + 0.0 * out.mean()


def _batches(n):
    rng = numpy.random.default_rng(123)
    for _ in range(n):
        lengths = rng.integers(1, 9, size=5)
        ids = rng.integers(1, 50, size=(5, 8))
        ids[numpy.arange(8)[None, :] >= lengths[:, None]] = 0
        yield ids, lengths, rng.integers(0, 2, size=5)


def _train(model, opt, batches):
    for ids, lengths, y in batches:
        opt.zero_grad()
        loss = tt.cross_entropy(model(on_device(ids), lengths), on_device(y))
        loss.backward()
        opt.step()


def test_resume_is_bit_identical(tmp_path):
    data = list(_batches(20))
    straight = Classifier()
    opt = tt.optim.Adam(straight.parameters(), lr=1e-2)
    _train(straight, opt, data)

    first = Classifier()
    opt1 = tt.optim.Adam(first.parameters(), lr=1e-2)
    _train(first, opt1, data[:10])
    path = tmp_path / "ckpt.npz"
    tt.io.save({"model": first.state_dict(), "optim": opt1.state_dict()}, path)

    ckpt = tt.io.load(path)
    resumed = Classifier(seed=99)  # different init: everything must come from the checkpoint
    opt2 = tt.optim.Adam(resumed.parameters(), lr=1e-2)
    resumed.load_state_dict(ckpt["model"])
    opt2.load_state_dict(ckpt["optim"])
    _train(resumed, opt2, data[10:])

    for (n1, p1), (n2, p2) in zip(straight.named_parameters(), resumed.named_parameters()):
        assert n1 == n2
        # float32 parameters after 10 Adam steps from gradients that may differ in their last
        # bits on CuPy (see assert_same_runs)
        assert_same_runs(p2.data, p1.data, rtol=1e-5, atol=1e-6, err_msg=n1)
    numpy.testing.assert_array_equal(tt.to_numpy(resumed.emb.weight.data[0]), 0)
