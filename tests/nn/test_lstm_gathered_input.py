"""An LSTM fed by an embedding lookup works on the lookup's distinct rows
(``tinytt.nn.lstm._GatheredInput``): same values and gradients as the step-by-step reference
LSTM fed the looked-up vectors, for dense and TT embeddings, padding, both directions, and
the threaded pipelines."""

import contextlib

import numpy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinytt as tt
from tinytt import backend, nn
from tinytt.nn import lstm as lstm_mod
from tinytt.testing import assert_close, check_grads

pytestmark = pytest.mark.skipif(tt.get_backend() != "numpy",
                                reason="the gathered LSTM input is a NumPy-only path (CuPy takes the dense one)")

RTOL, ATOL = 1e-9, 1e-12
B, T, VOCAB, D, H = 4, 6, 7, 3, 4


@contextlib.contextmanager
def _recording_gathered_calls():
    """Yield a list that gets, per LSTM layer call, whether it took the gathered path."""
    calls = []
    real = lstm_mod._gathered_input

    def spy(*args, **kwargs):
        got = real(*args, **kwargs)
        calls.append(got is not None)
        return got

    lstm_mod._gathered_input = spy
    try:
        yield calls
    finally:
        lstm_mod._gathered_input = real


@pytest.fixture
def gathered_calls():
    """Count the LSTM layers that took the gathered path (for the whole test)."""
    with _recording_gathered_calls() as calls:
        yield calls


def _ids(seed=0, vocab=VOCAB):
    return numpy.random.default_rng(seed).integers(0, vocab, size=(B, T))


def _embedding(kind, padding_idx=None, seed=0):
    if kind == "dense":
        emb = nn.Embedding(VOCAB, D, padding_idx=padding_idx, dtype="float64", seed=seed)
    else:
        emb = nn.TTEmbedding(VOCAB, D, rank=2, n_cores=2, padding_idx=padding_idx, dtype="float64", seed=seed)
    return emb


def _lstm(num_layers, bidirectional, seed=0):
    m = nn.LSTM(D, H, num_layers=num_layers, bidirectional=bidirectional, dtype="float64", seed=seed)
    rng = numpy.random.default_rng(seed + 100)
    for p in m.parameters():  # larger than the default init so every path matters
        p.data[...] = rng.uniform(-0.8, 0.8, p.shape)
    return m


def _loss(out, h, c):
    rng = numpy.random.default_rng(7)
    return ((out * tt.Tensor(rng.standard_normal(out.shape))).sum()
            + (h * tt.Tensor(rng.standard_normal(h.shape))).sum()
            + (c * tt.Tensor(rng.standard_normal(c.shape))).sum())


def _run(kind, fused, num_layers, bidirectional, lengths, padding_idx, ids):
    emb = _embedding(kind, padding_idx)
    m = _lstm(num_layers, bidirectional)
    m.fused = fused
    out, (h, c) = m(emb(ids), lengths=lengths)
    _loss(out, h, c).backward()
    return [out.data, h.data, c.data] + [p.grad for p in emb.parameters()] + [p.grad for p in m.parameters()]


CASES = [
    (1, False, None, None),
    (1, True, [6, 2, 4, 1], None),
    (2, True, None, 3),
    (2, False, [3, 6, 1, 5], 0),
    (1, True, [6, 6, 6, 6], 2),
]


@pytest.mark.parametrize("kind", ["dense", "tt"])
@pytest.mark.parametrize("num_layers,bidirectional,lengths,padding_idx", CASES)
def test_gathered_path_matches_reference(gathered_calls, kind, num_layers, bidirectional, lengths, padding_idx):
    ids = _ids(1)
    if padding_idx is not None:
        ids[:, -2:] = padding_idx     # padding tokens, inside and outside the lengths
    lengths = None if lengths is None else numpy.array(lengths)
    got = _run(kind, True, num_layers, bidirectional, lengths, padding_idx, ids)
    # layer 0 of each direction read the lookup's distinct rows (at most 7 of 24 positions)
    assert gathered_calls[:2 if bidirectional else 1] == [True] * (2 if bidirectional else 1)
    want = _run(kind, False, num_layers, bidirectional, lengths, padding_idx, ids)
    assert len(got) == len(want)
    for a, e in zip(got, want):
        assert_close(a, e, rtol=RTOL, atol=ATOL)
    if padding_idx is not None and kind == "dense":
        numpy.testing.assert_array_equal(got[3][padding_idx], 0)   # the padding row: no gradient


@pytest.mark.parametrize("kind", ["dense", "tt"])
def test_gathered_and_dense_paths_agree(monkeypatch, kind):
    """The same model with the gathered path switched off (fraction 0) gives the same result."""
    ids = _ids(2)
    lengths = numpy.array([6, 3, 5, 2])
    got = _run(kind, True, 1, True, lengths, None, ids)
    monkeypatch.setattr(lstm_mod, "GATHERED_MAX_FRACTION", 0.0)
    want = _run(kind, True, 1, True, lengths, None, ids)
    for a, e in zip(got, want):
        assert_close(a, e, rtol=RTOL, atol=ATOL)


def test_many_distinct_ids_take_the_dense_path(gathered_calls):
    ids = numpy.arange(B * T).reshape(B, T)     # every position distinct
    emb = nn.Embedding(B * T, D, dtype="float64", seed=0)
    _lstm(1, False)(emb(ids))
    assert gathered_calls == [False]


@pytest.mark.parametrize("threads,chunk_rows", [(2, 1), (2, 9), (3, 1)])
@pytest.mark.parametrize("kind", ["dense", "tt"])
def test_gathered_path_threaded_pipelines(monkeypatch, gathered_calls, threads, chunk_rows, kind):
    """With two or three workers the forward's recurrence runs in row blocks (a gathered
    input's projection is too cheap for the projection pipeline) and the backward's weight
    pipeline skips W_ih."""
    from tinytt import blas_threads

    if not blas_threads.available():
        pytest.skip("NumPy's BLAS thread count cannot be set here: the LSTM never uses threads")
    ids = _ids(3)
    lengths = numpy.array([6, 1, 4, 5])
    want = _run(kind, False, 2, True, lengths, 1, ids)
    monkeypatch.setattr(blas_threads, "cooperative", lambda: True)
    monkeypatch.setenv("TINYTT_NUM_THREADS", str(threads))
    monkeypatch.setattr(lstm_mod, "MIN_BLOCK_ENTRIES", 1)
    monkeypatch.setattr(lstm_mod, "PIPELINE_MIN_ENTRIES", 1)
    monkeypatch.setattr(lstm_mod, "PIPELINE_CHUNK_ROWS", chunk_rows)
    monkeypatch.setattr(backend, "_PARALLEL_TAKE_BYTES", 0)     # the projection gather splits too
    blocks, pipelines = [], []
    real_blocks, real_pipeline = lstm_mod._run_row_blocks, lstm_mod._ProjectionPipeline
    monkeypatch.setattr(lstm_mod, "_run_row_blocks", lambda fn, bl: (blocks.append(len(bl)), real_blocks(fn, bl)))
    monkeypatch.setattr(lstm_mod, "_ProjectionPipeline", lambda *a: (pipelines.append(1), real_pipeline(*a))[1])
    got = _run(kind, True, 2, True, lengths, 1, ids)
    assert gathered_calls[:2] == [True, True]
    # the gathered layers run row blocks, never the projection pipeline (which the second
    # layer, fed the first one's outputs, takes on two workers)
    dense_calls = gathered_calls.count(False)
    assert len(pipelines) == (dense_calls if threads == 2 else 0)
    assert len(blocks) == len(gathered_calls) - len(pipelines) and min(blocks) > 1
    for a, e in zip(got, want):
        assert_close(a, e, rtol=RTOL, atol=ATOL)


def test_gathered_path_with_a_wider_input_weight(gathered_calls):
    # W_ih in float64, the state in float32: the projections are cast into the float32
    # gate buffer, as on the dense path (fed a copy of the same vectors)
    emb = nn.Embedding(5, 3, dtype="float32", seed=0)
    ids = numpy.random.default_rng(0).integers(0, 5, (4, 6))
    rng = numpy.random.default_rng(1)
    W_ih = tt.Tensor(rng.standard_normal((3, 16)))
    W_hh = tt.Tensor(rng.standard_normal((4, 16)).astype("float32"))
    b = tt.Tensor(rng.standard_normal(16).astype("float32"))
    got = lstm_mod.lstm_layer(emb(ids), W_ih, W_hh, b)
    want = lstm_mod.lstm_layer(tt.Tensor(emb(ids).data.copy()), W_ih, W_hh, b)
    assert gathered_calls == [True, False]
    for a, e in zip(got, want):
        assert a.dtype == numpy.float32
        assert_close(a, e, rtol=1e-5, atol=1e-6)     # the bias is added before / after the cast


def test_projector_gathers_each_positions_row():
    src = tt.Tensor(numpy.arange(20.0).reshape(5, 4))
    index_tm = numpy.array([[3, 3], [1, 3], [4, 1], [0, 2]])        # (T=4, B=2)
    x = src.data[index_tm.T]                                          # (B, T, 4)
    g = lstm_mod._GatheredInput(src, index_tm, x, None, None, None)
    assert g.matches_input and g.n_rows == 5
    numpy.testing.assert_array_equal(g.source_rows[g.labels], index_tm)
    numpy.testing.assert_array_equal(g.rows, src.data[g.source_rows])
    W = numpy.eye(4)
    project = g.projector(W, numpy.zeros(4), numpy)
    out = numpy.empty((4, 2, 4))
    for lo in range(4):                                               # step by step ...
        project(lo, lo + 1, out[lo:lo + 1])
    numpy.testing.assert_array_equal(out, src.data[index_tm])
    out = numpy.empty((4, 2, 4))
    project(0, 4, out)                                                # ... or all at once
    numpy.testing.assert_array_equal(out, src.data[index_tm])
    pad = numpy.zeros((4, 2), dtype=bool)
    pad[3, 1] = True
    g = lstm_mod._GatheredInput(src, index_tm, x, None, pad, None)
    out = numpy.empty((4, 2, 4))
    g.projector(W, numpy.zeros(4), numpy)(0, 4, out)
    numpy.testing.assert_array_equal(out[3, 1], 0)                   # padding: a zero projection
    numpy.testing.assert_array_equal(out[:3], src.data[index_tm[:3]])


def test_nan_in_the_padding_row_does_not_leak(gathered_calls):
    """Padded positions read a zero projection, as the dense path zeroes padded inputs."""
    ids = _ids(4)
    ids[:, 4:] = 5
    lengths = numpy.array([4, 4, 3, 4])
    emb = nn.Embedding(VOCAB, D, dtype="float64", seed=0)
    finite = emb.weight.data.copy()
    emb.weight.data[5] = numpy.nan     # id 5 appears only in padded positions
    real = ids[:, :4]
    real[real == 5] = 6
    m = _lstm(1, True)
    out, (h, c) = m(emb(ids), lengths=lengths)
    assert gathered_calls[:2] == [True, True]
    _loss(out, h, c).backward()
    assert numpy.isfinite(out.data).all() and numpy.isfinite(h.data).all()
    assert all(numpy.isfinite(p.grad).all() for p in m.parameters())
    emb2 = nn.Embedding(VOCAB, D, dtype="float64", seed=0)
    emb2.weight.data[...] = finite
    m.fused = False
    out2, (h2, _) = m(emb2(ids), lengths=lengths)
    assert_close(out.data, out2.data, rtol=RTOL, atol=ATOL)
    assert_close(h.data, h2.data, rtol=RTOL, atol=ATOL)


def test_lookup_without_recording_sends_no_gradient(gathered_calls):
    """An embedding looked up under no_grad stays constant for a later LSTM."""
    emb = nn.Embedding(VOCAB, D, dtype="float64", seed=0)
    with tt.no_grad():
        x = emb(_ids(5))
    m = _lstm(1, False)
    out, _ = m(x)
    out.sum().backward()
    assert gathered_calls == [False]
    assert emb.weight.grad is None
    assert m.weight_ih_l0.grad is not None


def test_check_grads_through_the_gathered_path(gathered_calls):
    ids = _ids(6)
    lengths = numpy.array([6, 2, 5, 3])
    emb = nn.Embedding(VOCAB, D, dtype="float64", seed=1)   # (a padding row's output moves
    # with it but sends no gradient, by design: finite differences would disagree there)
    m = _lstm(1, True, seed=3)
    names = [n for n, _ in m.named_parameters()]

    def f(table, *ws):
        for n, w in zip(names, ws):
            setattr(m, n, w)
        x = nn.layers.embedding(table, ids)
        out, (h, c) = m(x, lengths=lengths)
        return tt.concat([out.reshape(B, -1), h.transpose(1, 0, 2).reshape(B, -1)], axis=1)

    check_grads(f, emb.weight.data.copy(), *[p.data.copy() for p in m.parameters()], names=["table"] + names)
    assert True in gathered_calls


def _fused_vs_reference(x_fn, lengths=None):
    """(fused, reference) outputs and gradients of the same LSTM on the Tensor x_fn() returns."""
    results = []
    for fused in (True, False):
        m = _lstm(1, True)
        m.fused = fused
        x = x_fn()
        out, (h, c) = m(x, lengths=lengths)
        _loss(out, h, c).backward()
        results.append([out.data, x.grad] + [p.grad for p in m.parameters()])
    return results


@pytest.mark.parametrize("kind", ["dense", "tt"])
def test_a_lookup_the_caller_made_differentiable_keeps_its_gradient(gathered_calls, kind):
    """x looked up without recording, then x.requires_grad_(): x gets its gradient (the
    layer must not swap x for the table), and the table gets none."""
    emb = _embedding(kind)
    ids = _ids(7)

    def x_fn():
        with tt.no_grad():
            x = emb(ids)
        x.requires_grad_()
        return x

    got, want = _fused_vs_reference(x_fn)
    assert gathered_calls[0] is False
    for a, e in zip(got, want):
        assert_close(a, e, rtol=RTOL, atol=ATOL)
    assert all(p.grad is None for p in emb.parameters())


def test_a_lookup_reused_after_an_optimizer_step_reads_the_looked_up_values(gathered_calls):
    """Adam updates the table in place; a cached lookup still holds the old rows, and the
    LSTM must read those (as the dense path does), not the updated table."""
    ids = _ids(8)
    losses = {}
    for fraction in (lstm_mod.GATHERED_MAX_FRACTION, 0.0):
        lstm_mod.GATHERED_MAX_FRACTION, saved = fraction, lstm_mod.GATHERED_MAX_FRACTION
        try:
            emb = nn.Embedding(VOCAB, D, dtype="float64", seed=0)
            m = _lstm(1, False)
            opt = tt.optim.Adam(list(emb.parameters()) + list(m.parameters()), lr=0.05)
            x = emb(ids)
            seq = []
            for _ in range(3):
                opt.zero_grad()
                out, (h, c) = m(x)
                loss = _loss(out, h, c)
                loss.backward()
                opt.step()
                seq.append(loss.item())
            losses[fraction] = (seq, [p.data.copy() for p in m.parameters()])
        finally:
            lstm_mod.GATHERED_MAX_FRACTION = saved
    assert True in gathered_calls
    (got, got_p), (want, want_p) = losses.values()
    assert_close(numpy.array(got), numpy.array(want), rtol=RTOL, atol=ATOL)
    for a, e in zip(got_p, want_p):
        assert_close(a, e, rtol=RTOL, atol=ATOL)


def test_a_lookup_changed_in_place_at_some_positions_takes_the_dense_path(gathered_calls):
    emb = nn.Embedding(VOCAB, D, dtype="float64", seed=0)
    ids = _ids(9)

    def x_fn():
        x = emb(ids)
        x.data[0, 3] += 1.0       # one position no longer equals its table row
        return x

    got, want = _fused_vs_reference(x_fn)
    assert gathered_calls[:2] == [False, False]
    for a, e in zip(got[:1] + got[2:], want[:1] + want[2:]):
        assert_close(a, e, rtol=RTOL, atol=ATOL)


def test_the_embedding_keeps_its_own_copy_of_the_ids():
    """Reusing the caller's id buffer after the lookup changes neither the values the LSTM
    reads nor the table's gradient."""
    ids = _ids(10)
    want_ids = ids.copy()
    grads = []
    for reuse in (False, True):
        emb = nn.Embedding(VOCAB, D, dtype="float64", seed=0)
        buf = want_ids.copy()
        x = emb(buf)
        if reuse:
            buf[...] = 0
        out, _ = _lstm(1, False)(x)
        out.sum().backward()
        grads.append((out.data, emb.weight.grad))
    for a, e in zip(*grads):
        assert_close(a, e, rtol=RTOL, atol=ATOL)


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_gathered_path_matches_reference_on_drawn_batches(data):
    """Hypothesis-drawn batch shapes, vocabularies (at most half as many ids as positions,
    so the path is taken), lengths, directions and padding ids."""
    b = data.draw(st.integers(1, 4), label="B")
    t = data.draw(st.integers(1, 6), label="T")
    vocab = data.draw(st.integers(1, max(1, (b * t) // 2)), label="vocab")
    ids = numpy.array(data.draw(st.lists(st.integers(0, vocab - 1), min_size=b * t, max_size=b * t),
                                label="ids")).reshape(b, t)
    lengths = None
    if data.draw(st.booleans(), label="with_lengths"):
        lengths = numpy.array(data.draw(st.lists(st.integers(1, t), min_size=b, max_size=b), label="lengths"))
    bidirectional = data.draw(st.booleans(), label="bidirectional")
    padding_idx = data.draw(st.one_of(st.none(), st.integers(0, vocab - 1)), label="padding_idx")
    kind = data.draw(st.sampled_from(["dense", "tt"]), label="kind")
    seed = data.draw(st.integers(0, 2 ** 16), label="seed")
    results = []
    taken = []
    for fused in (True, False):
        if kind == "dense":
            emb = nn.Embedding(vocab, D, padding_idx=padding_idx, dtype="float64", seed=seed)
        else:
            emb = nn.TTEmbedding(vocab, D, rank=2, n_cores=2, padding_idx=padding_idx, dtype="float64", seed=seed)
        m = _lstm(1, bidirectional, seed=seed)
        m.fused = fused
        with _recording_gathered_calls() as calls:
            out, (h, c) = m(emb(ids), lengths=lengths)
        taken += calls
        _loss(out, h, c).backward()
        results.append([out.data, h.data, c.data] + [p.grad for p in emb.parameters()]
                       + [p.grad for p in m.parameters()])
    if numpy.unique(ids).size <= lstm_mod.GATHERED_MAX_FRACTION * ids.size:
        assert taken and all(taken)     # at most half as many ids as positions: the path ran
    for a, e in zip(*results):
        assert_close(a, e, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("strategy", ["gather", "prefix", "full"])
def test_every_tt_strategy_feeds_the_gathered_path(gathered_calls, strategy):
    ids = _ids(11)
    results = []
    for fused in (True, False):
        emb = nn.TTEmbedding(VOCAB, D, rank=2, n_cores=2, padding_idx=4, dtype="float64", seed=1)
        m = _lstm(1, True, seed=2)
        m.fused = fused
        out, (h, c) = m(emb(ids, strategy=strategy), lengths=numpy.array([6, 3, 5, 2]))
        _loss(out, h, c).backward()
        results.append([out.data] + [p.grad for p in emb.parameters()] + [p.grad for p in m.parameters()])
    assert gathered_calls[:2] == [True, True]
    for a, e in zip(*results):
        assert_close(a, e, rtol=RTOL, atol=ATOL)


def test_float32_initial_states_and_a_second_consumer_of_the_lookup(gathered_calls):
    """float32; (h0, c0) given; x also read by another op: the table's gradient adds both."""
    ids = _ids(12)
    rng = numpy.random.default_rng(13)
    h0 = rng.standard_normal((2, B, H)).astype(numpy.float32)
    c0 = rng.standard_normal((2, B, H)).astype(numpy.float32)
    results = []
    for fraction in (lstm_mod.GATHERED_MAX_FRACTION, 0.0):
        saved, lstm_mod.GATHERED_MAX_FRACTION = lstm_mod.GATHERED_MAX_FRACTION, fraction
        try:
            emb = nn.Embedding(VOCAB, D, seed=0)                   # float32
            m = nn.LSTM(D, H, bidirectional=True, seed=4)
            h0t, c0t = tt.Tensor(h0, requires_grad=True), tt.Tensor(c0, requires_grad=True)
            x = emb(ids)
            out, (h, c) = m(x, state=(h0t, c0t))
            (_loss(out, h, c) + (x * x).sum()).backward()
            results.append([out.data, h.data, emb.weight.grad, h0t.grad, c0t.grad]
                           + [p.grad for p in m.parameters()])
        finally:
            lstm_mod.GATHERED_MAX_FRACTION = saved
    assert gathered_calls[:2] == [True, True]
    for a, e in zip(*results):
        assert_close(a, e, rtol=2e-5, atol=2e-5)


def test_evaluation_under_no_grad_takes_the_path(gathered_calls):
    emb = nn.Embedding(VOCAB, D, dtype="float64", seed=0)
    m = _lstm(1, True)
    ids = _ids(14)
    with tt.no_grad():
        got, _ = m(emb(ids))
    assert gathered_calls[:2] == [True, True]
    m.fused = False
    with tt.no_grad():
        want, _ = m(emb(ids))
    assert_close(got.data, want.data, rtol=RTOL, atol=ATOL)


def test_an_edit_that_keeps_each_rows_sum_still_takes_the_dense_path(gathered_calls):
    """Swapping two features of x at one position keeps that row's plain sum; the
    fingerprint (a fixed random projection) still sees it."""
    emb = nn.Embedding(VOCAB, D, dtype="float64", seed=0)
    ids = _ids(15)
    x = emb(ids)
    b, t = 2, 5
    x.data[b, t, [0, 1]] = x.data[b, t, [1, 0]]
    assert x.data[b, t, 0] != x.data[b, t, 1]
    m = _lstm(1, False)
    got, _ = m(x)
    assert gathered_calls == [False]
    m.fused = False
    want, _ = m(tt.Tensor(x.data.copy()))
    assert_close(got.data, want.data, rtol=RTOL, atol=ATOL)


def test_tt_lookup_keeps_its_own_copy_of_the_ids():
    """A one-core TT table with the "full" strategy used the caller's id buffer as its
    row index; reusing the buffer after the lookup must not change the gradient."""
    grads = []
    for reuse in (False, True):
        emb = nn.TTEmbedding(12, 4, rank=1, shape=((12,), (4,)), dtype="float64", seed=0)
        buf = numpy.array([[1, 5, 5, 7], [0, 11, 3, 5]])
        out = emb(buf, strategy="full")
        if reuse:
            buf[...] = 0
        (out * tt.Tensor(numpy.arange(out.size, dtype=float).reshape(out.shape))).sum().backward()
        grads.append(emb.cores[0].grad.copy())
    assert_close(grads[1], grads[0], rtol=0, atol=0)
