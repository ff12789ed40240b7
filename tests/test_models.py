"""Text models: output shapes, padding invariance of the readouts, a tiny LM that learns."""

import numpy
import pytest

import tinytt as tt
from tinytt.models import (LSTMClassifier, LSTMLanguageModel, MLPClassifier, build_model, describe,
                           make_embedding, parse_tt_shape)

from conftest import on_device

V, E, H, C = 60, 8, 6, 3


def _batch(rng, B=4, T=7, lengths=(7, 3, 1, 5)):
    lengths = numpy.asarray(lengths)
    ids = rng.integers(2, V, size=(B, T))
    ids[numpy.arange(T)[None, :] >= lengths[:, None]] = 0
    return ids, lengths


@pytest.mark.parametrize("kind", ["lstm", "bilstm", "mlp"])
@pytest.mark.parametrize("embedding", ["dense", "tt"])
@pytest.mark.parametrize("readout", ["final", "mean"])
def test_classifier_shapes_and_padding(kind, embedding, readout):
    if kind == "mlp" and readout == "mean":
        pytest.skip("the MLP has a single (mean) readout")
    rng = numpy.random.default_rng(0)
    model = build_model({"model": kind, "embedding": embedding, "readout": readout, "emb_dim": E,
                         "hidden": H, "rank": 3}, V, C)
    model.eval()
    ids, lengths = _batch(rng)
    out = model(on_device(ids), lengths)
    assert out.shape == (4, C) and out.dtype == numpy.float32
    # extra padding columns change nothing
    padded = numpy.concatenate([ids, numpy.zeros((4, 5), dtype=ids.dtype)], axis=1)
    tt.testing.assert_close(model(on_device(padded), lengths).data, out.data, rtol=1e-5, atol=1e-6)
    # each row alone, without any padding, gives the same logits
    for b in range(4):
        single = model(on_device(ids[b:b + 1, :lengths[b]]), lengths[b:b + 1])
        tt.testing.assert_close(single.data[0], out.data[b], rtol=1e-4, atol=1e-5)


def test_final_readout_is_the_last_real_state():
    rng = numpy.random.default_rng(1)
    model = LSTMClassifier(make_embedding("dense", V, E), H, C, readout="final", dropout=0.0)
    model.eval()
    ids, lengths = _batch(rng)
    feats = model.features(on_device(ids), lengths).data
    outputs, _ = model.lstm(model.embedding(on_device(ids)), lengths=lengths)
    last = tt.to_numpy(outputs.data)[numpy.arange(4), lengths - 1]
    tt.testing.assert_close(feats, last, rtol=1e-5, atol=1e-6)


def test_gradients_flow_to_all_parameters():
    rng = numpy.random.default_rng(2)
    for model in (LSTMClassifier(make_embedding("tt", V, E, rank=2), H, C, bidirectional=True, readout="mean"),
                  MLPClassifier(make_embedding("dense", V, E), H, C)):
        ids, lengths = _batch(rng)
        loss = tt.cross_entropy(model(on_device(ids), lengths), on_device(numpy.array([0, 1, 2, 1])))
        loss.backward()
        for name, p in model.named_parameters():
            assert p.grad is not None and p.grad.shape == p.shape, name


def test_parse_tt_shape_and_describe():
    assert parse_tt_shape("25,30,40x4,8,8") == ((25, 30, 40), (4, 8, 8))
    for bad in ("25,30x4,8,8", "25,30,40", "a,bx1,2", "0,2x2,2"):
        with pytest.raises(ValueError):
            parse_tt_shape(bad)
    model = build_model({"embedding": "tt", "emb_dim": 256, "hidden": 4, "tt_shape": "25,30,40x4,8,8"}, 25000, 2)
    info = describe(model)
    assert info["embedding_parameters"] == 68160 and info["compression"] == pytest.approx(93.9, abs=0.05)
    with pytest.raises(ValueError):
        build_model({"embedding": "tt", "emb_dim": 16, "tt_shape": "2,2x4,4"}, 100, 2)   # 4 rows < 100


def test_language_model_shapes_and_state():
    model = LSTMLanguageModel(make_embedding("tt", V, E, rank=2), H, num_layers=2, dropout=0.1)
    ids = on_device(numpy.random.default_rng(3).integers(0, V, size=(3, 5)))
    logits, (h, c) = model(ids)
    assert logits.shape == (3, 5, V) and h.shape == (2, 3, H) and c.shape == (2, 3, H)
    logits2, _ = model(ids, model.detach_state((h, c)))
    assert logits2.shape == (3, 5, V)


@pytest.mark.parametrize("embedding", ["dense", "tt"])
def test_tiny_language_model_learns(embedding):
    # a repeating pattern is learnable: the training loss must fall well below log(V)
    rng = numpy.random.default_rng(4)
    pattern = rng.integers(2, 20, size=7)
    stream = numpy.tile(pattern, 60)
    model = build_model({"task": "lm", "embedding": embedding, "emb_dim": 8, "hidden": 16, "rank": 4,
                         "dropout": 0.0, "dense_init_std": 0.1}, 20)
    opt = tt.optim.Adam(model.parameters(), lr=0.02)
    losses = []
    for epoch in range(6):
        state = None
        for x, y in tt.data.bptt_batches(stream, 4, 10):
            logits, state = model(on_device(x), model.detach_state(state))
            loss = tt.cross_entropy(tt.reshape(logits, (-1, 20)), on_device(y.reshape(-1)))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    assert numpy.mean(losses[-5:]) < 0.5 * numpy.mean(losses[:5])
    assert numpy.mean(losses[-5:]) < 1.0


@pytest.mark.parametrize("bad", [((5, 0), (2, 4)), ((-5, -10), (2, 4)), ((5, 10), (2,)), ((5.7, 10), (2, 4)),
                                 ((5, 10),), "5,0x2,4"])
def test_parse_tt_shape_checks_tuples_as_strings(bad):
    # the tuple form was passed through unchecked (5.7 silently became 5)
    from tinytt.models import parse_tt_shape

    with pytest.raises(ValueError, match="TT shape"):
        parse_tt_shape(bad)
    assert parse_tt_shape([[5, 10], (2, 4)]) == ((5, 10), (2, 4))


def test_build_model_takes_the_cli_defaults_for_missing_keys():
    from tinytt.cli import TRAIN_DEFAULTS
    clf = build_model({"task": "classify"}, 100, 3)
    d = TRAIN_DEFAULTS["classify"]
    assert isinstance(clf, LSTMClassifier) and clf.readout == d["readout"] == "mean"
    assert clf.embedding.embedding_dim == d["emb_dim"] == 256 and clf.lstm.hidden_size == d["hidden"] == 128
    assert clf.drop.p == d["dropout"]
    assert build_model({}, 100, 3).readout == "mean"
    lm = build_model({"task": "lm"}, 100)
    d = TRAIN_DEFAULTS["lm"]
    assert lm.embedding.embedding_dim == d["emb_dim"] == 128 and lm.lstm.hidden_size == d["hidden"] == 256
    # None means "not given"; an explicit value wins
    assert build_model({"task": "lm", "hidden": None, "emb_dim": 8}, 100).lstm.hidden_size == 256
    with pytest.raises(ValueError, match="task"):
        build_model({"task": "regress"}, 100, 3)


def test_models_check_their_seed_and_ids_shape():
    """seed=Generator crashed with 'Generator + int'; 1-D ids gave 'not enough values to
    unpack' (MLP) or named the LSTM's input rather than the ids."""
    emb = make_embedding("dense", 10, 4, seed=0)
    makers = (lambda s: LSTMClassifier(emb, 4, 2, seed=s), lambda s: MLPClassifier(emb, 4, 2, seed=s),
              lambda s: LSTMLanguageModel(emb, 4, seed=s))
    for make in makers:
        for bad in (numpy.random.default_rng(0), -1, 1.5, True):
            with pytest.raises(ValueError, match="seed must be an int >= 0"):
                make(bad)
        model = make(None)
        with pytest.raises(ValueError, match=r"ids must be a \(batch, time\) integer matrix"):
            model(tt.to_device(numpy.array([2, 3, 4])))
