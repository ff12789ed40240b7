"""Training loops: batching arrays, validation carving, fit, checkpoints and exact resume."""

import numpy
import pytest

import tinytt as tt
from tinytt.data import Vocab
from tinytt.models import build_model
from tinytt.train import (ClassificationData, ClassificationTask, LanguageModelTask, carve_validation, fit,
                          lm_stream, load_checkpoint, save_checkpoint)

from conftest import assert_same_runs


def _toy(n=120, seed=0):
    rng = numpy.random.default_rng(seed)
    words = [f"w{i}" for i in range(30)]
    toks, labels = [], []
    for _ in range(n):
        y = int(rng.integers(0, 2))
        t = [words[int(k)] for k in rng.integers(2, 30, size=int(rng.integers(2, 9)))]
        t.insert(int(rng.integers(0, len(t))), "yes" if y else "no")
        toks.append(t)
        labels.append(y)
    return toks, labels


def test_classification_data_pads_truncates_and_batches():
    d = ClassificationData([[5, 6, 7], [], [8], [1, 2, 3, 4, 5, 6]], [0, 1, 0, 1], max_len=4)
    assert d.ids.tolist() == [[5, 6, 7, 0], [1, 0, 0, 0], [8, 0, 0, 0], [1, 2, 3, 4]]
    assert d.lengths.tolist() == [3, 1, 1, 4]
    ids, lengths, labels = d.batch(numpy.array([2, 0]))
    assert ids.tolist() == [[8, 0, 0], [5, 6, 7]] and lengths.tolist() == [1, 3] and labels.tolist() == [0, 0]


def test_carve_validation_is_seeded_and_disjoint():
    tr, va = carve_validation(100, 0.1, seed=3)
    tr2, va2 = carve_validation(100, 0.1, seed=3)
    assert len(va) == 10 and len(tr) == 90 and not set(tr) & set(va)
    assert (tr == tr2).all() and (va == va2).all()
    assert set(va) == set(numpy.random.default_rng(3).permutation(100)[:10])
    # seed=None gave a different split on every call, silently
    for bad in (None, -1, 1.5):
        with pytest.raises(ValueError, match="carve_validation: seed"):
            carve_validation(100, 0.1, seed=bad)


def test_classification_batches_cover_every_example_once():
    toks, labels = _toy(50)
    vocab = Vocab.build(toks)
    data = ClassificationData.from_tokens(toks, labels, vocab)
    task = ClassificationTask({"train": data, "valid": data}, batch_size=8, seed=1, show_progress=False)
    idx = numpy.concatenate(task._batcher.batch_indices(0))
    assert sorted(idx.tolist()) == list(range(50))


def _setup(tmp_path, dropout=0.0):
    toks, labels = _toy()
    vocab = Vocab.build(toks[:100])
    data = {"train": ClassificationData.from_tokens(toks[:80], labels[:80], vocab),
            "valid": ClassificationData.from_tokens(toks[80:100], labels[80:100], vocab),
            "test": ClassificationData.from_tokens(toks[100:], labels[100:], vocab)}
    cfg = {"task": "classify", "model": "lstm", "embedding": "tt", "emb_dim": 8, "hidden": 8, "rank": 3,
           "dropout": dropout, "num_classes": 2, "seed": 0}
    return vocab, data, cfg


def test_fit_tracks_best_validation_and_checkpoints(tmp_path):
    vocab, data, cfg = _setup(tmp_path, dropout=0.2)
    model = build_model(cfg, len(vocab), 2)
    opt = tt.optim.Adam(model.parameters(), lr=0.02)
    task = ClassificationTask(data, batch_size=16, show_progress=False)
    ck = tmp_path / "ck.npz"
    res = fit(model, opt, task, 4, checkpoint=str(ck), vocab=vocab, config=cfg)
    assert len(res.history) == 4 and len(res.epoch_seconds) == 4
    best = max(res.history, key=lambda r: r["valid_accuracy"])
    assert res.best_valid["accuracy"] == best["valid_accuracy"]
    assert res.best_epoch == next(r["epoch"] for r in res.history if r["valid_accuracy"] == best["valid_accuracy"])
    assert 0.0 <= res.test["accuracy"] <= 1.0
    loaded = load_checkpoint(ck)
    assert loaded["epoch"] == 4 and loaded["vocab"] == vocab and loaded["config"] == cfg
    # test accuracy reported = accuracy of the best-validation weights
    m2 = build_model(cfg, len(vocab), 2)
    m2.load_state_dict(loaded["best_model"])
    assert task.evaluate(m2, "test")["accuracy"] == res.test["accuracy"]
    assert res.history[-1]["train_loss"] < res.history[0]["train_loss"]


def test_resume_continues_exactly(tmp_path):
    vocab, data, cfg = _setup(tmp_path)
    task = ClassificationTask(data, batch_size=16, show_progress=False)

    def fresh():
        m = build_model(cfg, len(vocab), 2)
        return m, tt.optim.Adam(m.parameters(), lr=0.01)

    m_a, o_a = fresh()
    fit(m_a, o_a, task, 3)
    ck = tmp_path / "half.npz"
    m_b, o_b = fresh()
    fit(m_b, o_b, task, 1, checkpoint=str(ck), vocab=vocab, config=cfg)
    saved = load_checkpoint(ck)
    m_c, o_c = fresh()
    m_c.load_state_dict(saved["model"])
    o_c.load_state_dict(saved["optim"])
    res = fit(m_c, o_c, task, 3, start_epoch=saved["epoch"], history=saved["history"],
              best_state=saved["best_model"])
    assert len(res.history) == 3
    for (name, a), (_, c) in zip(m_a.named_parameters(), m_c.named_parameters()):
        # bit for bit on NumPy; on CuPy to rounding, carried through the optimizer steps (the
        # embedding's backward sums with atomic adds there: see assert_same_runs)
        assert_same_runs(c.data, a.data, rtol=1e-5, atol=1e-6, err_msg=name)


def test_language_model_task_perplexity_falls():
    rng = numpy.random.default_rng(0)
    words = [f"t{i}" for i in range(12)]
    text = [words[i] for i in numpy.tile(rng.integers(0, 12, size=9), 80)]
    vocab = Vocab.build([text])
    stream = lm_stream(text, vocab)
    task = LanguageModelTask({"train": stream, "valid": stream[:200]}, batch_size=4, bptt=12,
                             show_progress=False)
    model = build_model({"task": "lm", "embedding": "tt", "emb_dim": 8, "hidden": 16, "rank": 3, "dropout": 0.0},
                        len(vocab))
    before = task.evaluate(model, "valid")["perplexity"]
    fit(model, tt.optim.Adam(model.parameters(), lr=0.02), task, 3)
    after = task.evaluate(model, "valid")["perplexity"]
    assert after < 0.5 * before


def test_save_checkpoint_keeps_previous_file_when_interrupted(tmp_path, monkeypatch):
    vocab, data, cfg = _setup(tmp_path)
    model = build_model(cfg, len(vocab), 2)
    opt = tt.optim.Adam(model.parameters())
    ck = tmp_path / "ck.npz"
    save_checkpoint(ck, model, opt, vocab, cfg, 1, [])
    import numpy.lib.format as fmt

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(fmt, "write_array", boom)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(ck, model, opt, vocab, cfg, 2, [])
    monkeypatch.undo()
    assert load_checkpoint(ck)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ck.npz"]   # no temporary file left behind


def test_progress_counts_every_step_with_a_step_cap(capsys):
    # the LM loop broke out after its last step, before the display counted it ("2/3 done")
    rng = numpy.random.default_rng(0)
    text = [f"t{i}" for i in rng.integers(0, 12, size=600)]
    vocab = Vocab.build([text])
    task = LanguageModelTask({"train": lm_stream(text, vocab)}, batch_size=4, bptt=5, show_progress=True)
    model = build_model({"task": "lm", "emb_dim": 8, "hidden": 8, "dropout": 0.0}, len(vocab))
    res = task.train_epoch(model, tt.optim.Adam(model.parameters()), 0, max_steps=3, desc="lm")
    assert res["steps"] == 3
    last = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("lm:")][-1]
    assert "(3/3)" in last and last.endswith("done")


def test_mr_split_is_fixed_and_honours_valid_fraction(data_dir):
    # MR has no official split: the test set must not move with the run's seed, and the
    # validation fraction must be the one asked for (the seed moved it; 0.3 gave 1066 too)
    from tinytt.train import load_classification  # noqa: PLC0415

    d0, _, _ = load_classification("mr", data_dir, seed=0)
    d1, _, _ = load_classification("mr", data_dir, seed=1)
    d3, _, _ = load_classification("mr", data_dir, seed=0, valid_fraction=0.3)
    assert numpy.array_equal(d0["test"].ids, d1["test"].ids)
    assert len(d3["valid"]) > 2.5 * len(d0["valid"])


def test_random_states_of_any_numpy_bit_generator_survive_a_checkpoint(tmp_path):
    from tinytt.train import random_states, set_random_states  # noqa: PLC0415
    if tt.get_backend() == "cupy":
        pytest.skip("CuPy's random generators cannot be serialised: checkpoints carry no dropout states "
                    "there (random_states warns; see test_random_states_warn_about_cupy_generators)")

    def model():
        m = tt.nn.Sequential(tt.nn.Linear(2, 2, seed=0),
                             tt.nn.Dropout(0.5, seed=numpy.random.Generator(numpy.random.MT19937(0))))
        return m

    a = model()
    a[1].rng.random(5)
    states = random_states(a)
    import json  # noqa: PLC0415
    b = model()
    set_random_states(b, json.loads(json.dumps(states)))   # MT19937 holds a uint32 array
    assert numpy.array_equal(a[1].rng.random(7), b[1].rng.random(7))


def test_train_loss_is_a_per_example_mean_and_empty_splits_are_nan(tmp_path):
    # per-step means were averaged equally: 80 examples in batches of 32 (32, 32, 16) gave
    # the short batch the weight of a full one
    vocab, data, cfg = _setup(tmp_path)
    model = build_model(cfg, len(vocab), 2)
    task = ClassificationTask(data, batch_size=32, show_progress=False)
    frozen = tt.optim.SGD(model.parameters(), lr=0.0)
    got = task.train_epoch(model, frozen, 0)["train_loss"]
    want = task.evaluate(model, "train")["loss"]
    assert got == pytest.approx(want, rel=1e-5)
    empty = ClassificationData.from_tokens([], [], vocab)
    task.splits["empty"] = empty
    res = task.evaluate(model, "empty")
    assert res["n"] == 0 and numpy.isnan(res["loss"]) and numpy.isnan(res["accuracy"])


def test_lstm_dropout_stream_differs_from_the_models_other_dropout_streams():
    # the LSTM seeded its dropout with seed + 1 from the seed + 1 it was given: seed + 2,
    # the classifier's Dropout seed, so the two masks were the same stream
    from tinytt.train import random_states  # noqa: PLC0415
    if tt.get_backend() == "cupy":
        pytest.skip("CuPy's random generators cannot be serialised: checkpoints carry no dropout states "
                    "there (random_states warns; see test_random_states_warn_about_cupy_generators)")

    model = build_model({"task": "classify", "model": "lstm", "embedding": "dense", "emb_dim": 8, "hidden": 8,
                         "dropout": 0.5, "layers": 2, "num_classes": 2, "seed": 0}, 50, 2)
    states = random_states(model)
    assert len(states) == 2
    assert states["lstm._rng"]["state"] != states["drop.rng"]["state"]


def test_fit_refuses_an_empty_training_split(tmp_path):
    # it ran 0 steps and raised "training loss is nan ... try a smaller --lr"
    vocab, data, cfg = _setup(tmp_path)
    model = build_model(cfg, len(vocab), 2)
    data["train"] = ClassificationData.from_tokens([], [], vocab)
    task = ClassificationTask(data, show_progress=False)
    with pytest.raises(ValueError, match="training split is empty"):
        fit(model, tt.optim.Adam(model.parameters()), task, 1)
    short = LanguageModelTask({"train": numpy.arange(30) % 5, "valid": numpy.arange(10) % 5}, batch_size=20,
                              show_progress=False)
    lm = build_model({"task": "lm", "emb_dim": 8, "hidden": 8, "dropout": 0.0}, 5)
    with pytest.raises(ValueError, match="training split is empty"):
        fit(lm, tt.optim.Adam(lm.parameters()), short, 1)
    assert fit(model, tt.optim.Adam(model.parameters()), task, 1, start_epoch=1).history == []  # nothing to run


def test_fit_refuses_a_validation_split_it_cannot_evaluate_and_a_zero_step_cap(tmp_path):
    # an empty validation split never gave a best epoch: fit trained, skipped the test split,
    # and train_classifier then crashed on res.best_valid = None
    vocab, data, cfg = _setup(tmp_path)
    model = build_model(cfg, len(vocab), 2)
    empty = dict(data, valid=ClassificationData.from_tokens([], [], vocab))
    with pytest.raises(ValueError, match="validation split"):
        fit(model, tt.optim.Adam(model.parameters()), ClassificationTask(empty, show_progress=False), 1)
    task = ClassificationTask(data, show_progress=False)
    with pytest.raises(ValueError, match="max_steps"):
        fit(model, tt.optim.Adam(model.parameters()), task, 1, max_steps=0)
    # a language model's split of fewer than 2 tokens has nothing to predict: NaN, as an
    # empty classification split (it raised inside bptt_batches after all the training)
    rng = numpy.random.default_rng(0)
    lm = build_model({"task": "lm", "emb_dim": 8, "hidden": 6, "dropout": 0.0}, 15)
    streams = {"train": rng.integers(2, 15, size=100), "valid": rng.integers(2, 15, size=30),
               "test": rng.integers(2, 15, size=1)}
    lm_task = LanguageModelTask(streams, batch_size=4, bptt=5, show_progress=False)
    assert numpy.isnan(lm_task.evaluate(lm, "test")["loss"]) and lm_task.evaluate(lm, "test")["n"] == 0
    res = fit(lm, tt.optim.Adam(lm.parameters()), lm_task, 1)
    assert res.best_epoch == 1 and numpy.isnan(res.test["perplexity"])
    with pytest.raises(ValueError, match="validation split"):
        fit(lm, tt.optim.Adam(lm.parameters()), LanguageModelTask(dict(streams, valid=streams["test"]),
                                                                   batch_size=4, bptt=5, show_progress=False), 1)


def test_train_classifier_with_no_epochs_reports_none():
    from tinytt.train import train_classifier

    toks, labels = _toy(40)
    vocab = Vocab.build(toks)
    data = {name: ClassificationData.from_tokens(toks, labels, vocab) for name in ("train", "valid", "test")}
    out = train_classifier({"model": "mlp", "emb_dim": 8, "hidden": 6}, data, vocab, 2, epochs=0,
                           show_progress=False)
    assert out["valid_accuracy"] is None and out["test_accuracy"] is None and out["best_epoch"] is None


@pytest.mark.parametrize("max_len", [0, -1, 2.5, True])
def test_classification_data_rejects_bad_max_len(max_len):
    with pytest.raises(ValueError, match="max_len"):
        ClassificationData([[5, 6, 7]], [0], max_len=max_len)


def _bad(fn, *needles):
    with pytest.raises(ValueError) as info:
        fn()
    for needle in needles:
        assert needle in str(info.value), (needle, str(info.value))


def test_training_api_arguments_are_checked_up_front(tmp_path):
    """Each bad argument gives a ValueError naming it before any work (they used to fail
    after an epoch, with ZeroDivisionError, or not at all)."""
    vocab, data, cfg = _setup(tmp_path)
    stream = numpy.arange(200) % 7
    streams = {"train": stream, "valid": stream[:50]}
    for kw, name in (({"batch_size": 0}, "batch_size"), ({"eval_batch_size": 0}, "eval_batch_size"),
                     ({"eval_batch_size": -3}, "eval_batch_size"), ({"clip": -1.0}, "clip"),
                     ({"seed": 1.5}, "seed"), ({"batch_size": True}, "batch_size")):
        _bad(lambda: ClassificationTask(data, show_progress=False, **kw), "ClassificationTask", name)
    for kw, name in (({"batch_size": 0}, "batch_size"), ({"bptt": 0}, "bptt"), ({"bptt": -5}, "bptt"),
                     ({"eval_batch_size": 0}, "eval_batch_size"), ({"clip": float("nan")}, "clip")):
        _bad(lambda: LanguageModelTask(streams, show_progress=False, **kw), "LanguageModelTask", name)
    model = build_model(cfg, len(vocab), 2)
    opt = tt.optim.Adam(model.parameters(), lr=0.01)
    task = ClassificationTask(data, batch_size=16, show_progress=False)
    for kw, name in (({"epochs": 1.5}, "epochs"), ({"epochs": "2"}, "epochs"), ({"start_epoch": -1}, "start_epoch"),
                     ({"time_budget": -1.0}, "time_budget"), ({"time_budget": "x"}, "time_budget")):
        args = {"epochs": 1, **kw}
        _bad(lambda: fit(model, opt, task, args.pop("epochs"), **args), "fit", name)
    before = [p.data.copy() for p in model.parameters()]
    _bad(lambda: fit(model, opt, task, 1, checkpoint=str(tmp_path / "c.npz")), "fit", "vocab")
    assert all(numpy.array_equal(a, p.data) for a, p in zip(before, model.parameters()))   # nothing trained
    assert not (tmp_path / "c.npz").exists()
    for n, fraction, name in ((-1, 0.1, "n"), (10.0, 0.1, "n"), (10, 0.0, "fraction"), (10, 1.5, "fraction"),
                              (10, "a", "fraction")):
        _bad(lambda: carve_validation(n, fraction), "carve_validation", name)
    for seqs, labels, needle in (([[1.7, 2]], [0], "token ids"), ([[-3, 2]], [0], "token ids"),
                                 ([["a"]], [0], "token ids"), ([[1, 2]], [0.5], "labels"),
                                 ([[1, 2]], [-1], "labels"), ([[1, 2]], ["a"], "labels"),
                                 ([[1], [2]], [0], "labels")):
        _bad(lambda: ClassificationData(seqs, labels), "ClassificationData", needle)
    from tinytt.train import load_classification
    for bad in (0, -5, 2.5):
        _bad(lambda: load_classification("sst2", data_dir=tmp_path, max_train=bad), "load_classification", "max_train")
    ok = ClassificationData([[3, 4], [5]], numpy.array([1.0, 0.0]))   # integral float labels are fine
    assert ok.labels.dtype == numpy.int64 and ok.labels.tolist() == [1, 0]


def test_build_model_refuses_what_a_language_model_cannot_be():
    for cfg, needle in (({"task": "lm", "model": "bilstm"}, "model"), ({"task": "lm", "model": "mlp"}, "model"),
                        ({"task": "lm", "readout": "bogus"}, "readout"), ({"readout": "last"}, "readout"),
                        ({"task": "lm", "dropout": 1.0}, "dropout"), ({"task": "lm", "dropout": -0.5}, "dropout")):
        _bad(lambda: build_model(dict(cfg, emb_dim=4, hidden=4), 20, 2), needle)


def test_fit_result_test_metrics_have_the_same_keys_on_both_paths(tmp_path):
    vocab, data, cfg = _setup(tmp_path)
    results = []
    for every in (False, True):
        model = build_model(cfg, len(vocab), 2)
        task = ClassificationTask(data, batch_size=16, show_progress=False)
        results.append(fit(model, tt.optim.Adam(model.parameters(), lr=0.01), task, 2, test_every_epoch=every))
    assert set(results[0].test) == set(results[1].test) == {"loss", "accuracy", "n"}
    assert results[0].test == results[1].test


def test_random_states_warn_about_cupy_generators():
    # CuPy generators cannot be serialised: leaving them out silently made GPU resumes draw
    # other dropout masks without a word
    from tinytt.train import random_states  # noqa: PLC0415

    model = build_model({"task": "classify", "model": "lstm", "embedding": "dense", "emb_dim": 8, "hidden": 8,
                         "dropout": 0.5, "layers": 2, "num_classes": 2, "seed": 0}, 50, 2)
    if tt.get_backend() != "cupy":
        import warnings  # noqa: PLC0415
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert set(random_states(model)) == {"lstm._rng", "drop.rng"}
        return
    with pytest.warns(RuntimeWarning, match="cannot be saved"):
        assert random_states(model) == {}


def test_resumed_test_every_epoch_reports_the_best_epochs_test_metric(tmp_path):
    # the best epoch ran before the resume without a test metric in its history row (or with
    # one of an earlier, now beaten epoch): fit evaluates the best weights on test at the end
    vocab, data, cfg = _setup(tmp_path)
    task = ClassificationTask(data, batch_size=16, show_progress=False)
    model = build_model(cfg, len(vocab), 2)
    opt = tt.optim.Adam(model.parameters(), lr=0.0)   # no change: later epochs never improve
    first = fit(model, opt, task, 1)
    history = [dict(first.history[0])]
    res = fit(model, opt, task, 2, start_epoch=1, history=history, best_state=first.best_state,
              test_every_epoch=True)
    assert res.best_epoch == 1 and res.test is not None
    assert res.test["accuracy"] == first.test["accuracy"]
    stale = [dict(first.history[0], epoch=1, valid_accuracy=0.0, test_accuracy=0.123, test_loss=1.0, test_n=1),
             dict(first.history[0], epoch=2, valid_accuracy=1.0)]
    res = fit(model, opt, task, 2, start_epoch=2, history=stale, best_state=first.best_state,
              test_every_epoch=True)
    assert res.best_epoch == 2 and res.test["accuracy"] == first.test["accuracy"]


def test_classifiers_refuse_lengths_outside_the_ids(tmp_path):
    vocab, data, cfg = _setup(tmp_path)
    ids = tt.to_device(numpy.array([[2, 3, 4], [5, 6, 7]]))
    for kind in ("lstm", "mlp"):
        model = build_model(dict(cfg, model=kind), len(vocab), 2)
        model(ids, numpy.array([3, 2]))
        for bad in ([3, 7], [3, 0], [3, -1]):
            with pytest.raises(ValueError, match="lengths"):
                model(ids, numpy.array(bad))


def test_fit_checks_that_the_config_is_json_before_training(tmp_path):
    vocab, data, cfg = _setup(tmp_path)
    model = build_model(cfg, len(vocab), 2)
    task = ClassificationTask(data, batch_size=16, show_progress=False)
    with pytest.raises(TypeError, match="config"):
        fit(model, tt.optim.Adam(model.parameters()), task, 1, checkpoint=str(tmp_path / "c.npz"), vocab=vocab,
            config=dict(cfg, hidden=numpy.int64(8)))
    assert not (tmp_path / "c.npz").exists()


@pytest.mark.parametrize("labels", [[1e20, 0.0], [numpy.inf, 0.0], numpy.array([2 ** 63, 0], dtype=numpy.uint64)])
def test_classification_data_refuses_float_labels_that_are_not_int64(labels):
    with pytest.raises(ValueError, match="labels"):
        ClassificationData([[1], [2]], labels)
