"""The fused LSTM op: gradients, agreement with the step-by-step reference, padding, PyTorch."""

import time
import numpy
import pytest

import tinytt as tt
from tinytt import nn
from tinytt.nn.lstm import lstm_layer, reference_lstm_layer
from tinytt.testing import assert_close, check_grads

from conftest import on_device

RTOL, ATOL = 1e-9, 1e-12


def _weights(model):
    return [p for _, p in model.named_parameters()]


def _set_weights(model, names, tensors):
    for name, t in zip(names, tensors):
        setattr(model, name, t)


def _random_model(num_layers, bidirectional, seed=0, input_size=3, hidden=4):
    m = nn.LSTM(input_size, hidden, num_layers=num_layers, bidirectional=bidirectional,
                dtype="float64", seed=seed)
    rng = numpy.random.default_rng(seed + 100)
    for p in m.parameters():  # larger weights than the default so every path matters
        p.data[...] = on_device(rng.uniform(-0.8, 0.8, p.shape))
    return m


def _loss_parts(out, h, c, rng_seed=7):
    """A scalar reading outputs and both final states with random weights."""
    rng = numpy.random.default_rng(rng_seed)
    wo = tt.Tensor(on_device(rng.standard_normal(out.shape)))
    wh = tt.Tensor(on_device(rng.standard_normal(h.shape)))
    wc = tt.Tensor(on_device(rng.standard_normal(c.shape)))
    return (out * wo).sum() + (h * wh).sum() + (c * wc).sum()


CONFIGS = [
    (1, False, None),
    (1, True, [5, 2, 4]),
    (2, False, [3, 5, 1]),
    (2, True, [5, 3, 2]),
    (2, True, None),
]


@pytest.mark.parametrize("num_layers,bidirectional,lengths", CONFIGS)
def test_fused_matches_reference_values_and_grads(num_layers, bidirectional, lengths):
    rng = numpy.random.default_rng(1)
    B, T = 3, 5
    x_np = rng.standard_normal((B, T, 3))
    lengths = None if lengths is None else numpy.array(lengths)
    results = []
    for fused in (True, False):
        m = _random_model(num_layers, bidirectional)
        m.fused = fused
        x = tt.Tensor(on_device(x_np), requires_grad=True)
        out, (h, c) = m(x, lengths=lengths)
        _loss_parts(out, h, c).backward()
        results.append((out.data, h.data, c.data, x.grad, [p.grad for p in m.parameters()]))
    (o1, h1, c1, gx1, gp1), (o2, h2, c2, gx2, gp2) = results
    n_dir = 2 if bidirectional else 1
    assert o1.shape == (B, T, 4 * n_dir) and h1.shape == (num_layers * n_dir, B, 4) == c1.shape
    for a, e in [(o1, o2), (h1, h2), (c1, c2), (gx1, gx2)] + list(zip(gp1, gp2)):
        assert_close(a, e, rtol=RTOL, atol=ATOL)
    if lengths is not None:
        for b, n in enumerate(lengths):
            numpy.testing.assert_array_equal(tt.to_numpy(o1)[b, n:], 0)


@pytest.mark.parametrize("num_layers,bidirectional,lengths", CONFIGS[:4])
def test_fused_check_grads(num_layers, bidirectional, lengths):
    m = _random_model(num_layers, bidirectional, seed=2)
    x = on_device(numpy.random.default_rng(3).standard_normal((3, 5, 3)))
    lengths = None if lengths is None else numpy.array(lengths)
    pnames = [n for n, _ in m.named_parameters()]
    names = ["x"] + pnames

    def f(x, *ws):
        _set_weights(m, pnames, ws)
        out, (h, c) = m(x, lengths=lengths)
        return tt.concat([out.reshape(3, -1), h.transpose(1, 0, 2).reshape(3, -1),
                          c.transpose(1, 0, 2).reshape(3, -1)], axis=1)

    check_grads(f, x, *[p.data.copy() for p in m.parameters()], names=names)


@pytest.mark.parametrize("reverse", [False, True])
def test_layer_grads_wrt_initial_state(reverse):
    rng = numpy.random.default_rng(4)
    B, T, I, H = 2, 4, 3, 2
    args = [on_device(a) for a in (
        rng.standard_normal((B, T, I)), rng.standard_normal((I, 4 * H)) * 0.5,
        rng.standard_normal((H, 4 * H)) * 0.5, rng.standard_normal(4 * H) * 0.3,
        rng.standard_normal((B, H)), rng.standard_normal((B, H)))]
    lengths = numpy.array([4, 2])

    def f(*a):
        y, h, c = lstm_layer(*a, lengths=lengths, reverse=reverse)
        return tt.concat([y.reshape(B, -1), h, c], axis=1)

    check_grads(f, *args, names=["x", "W_ih", "W_hh", "b", "h0", "c0"])
    y1, h1, c1 = lstm_layer(*[tt.Tensor(a) for a in args], lengths=lengths, reverse=reverse)
    y2, h2, c2 = reference_lstm_layer(*[tt.Tensor(a) for a in args], lengths=lengths, reverse=reverse)
    for a, e in [(y1, y2), (h1, h2), (c1, c2)]:
        assert_close(a, e, rtol=RTOL, atol=ATOL)


def test_module_state_argument_and_shapes():
    m = _random_model(2, True)
    rng = numpy.random.default_rng(5)
    x = on_device(rng.standard_normal((3, 4, 3)))
    h0 = on_device(rng.standard_normal((4, 3, 4)))
    c0 = on_device(rng.standard_normal((4, 3, 4)))
    out1, (h1, c1) = m(x, state=(h0, c0))
    m.fused = False
    out2, (h2, c2) = m(x, state=(h0, c0))
    for a, e in [(out1, out2), (h1, h2), (c1, c2)]:
        assert_close(a, e, rtol=RTOL, atol=ATOL)
    with pytest.raises(ValueError, match="state"):
        m(x, state=(h0[:2], c0))


@pytest.mark.parametrize("bidirectional", [False, True])
def test_padding_invariance(bidirectional):
    """Appending padding steps changes nothing: real outputs, final states, weight grads."""
    rng = numpy.random.default_rng(6)
    B, T, extra = 3, 5, 3
    lengths = numpy.array([5, 2, 3])
    x = rng.standard_normal((B, T, 3))
    x_pad = numpy.concatenate([x, rng.standard_normal((B, extra, 3)) * 50], axis=1)
    for b, n in enumerate(lengths):  # garbage in padded positions
        x[b, n:] = rng.standard_normal(x[b, n:].shape) * 50
        x_pad[b, :T] = x[b]
    results = []
    for xx in (x, x_pad):
        m = _random_model(2, bidirectional, seed=8)
        out, (h, c) = m(tt.Tensor(on_device(xx)), lengths=lengths)
        mask = (numpy.arange(xx.shape[1])[None, :] < lengths[:, None])[..., None]
        (out * tt.Tensor(on_device(mask * 1.0))).sum().backward()  # reads real positions only
        (h.sum() + c.sum()).backward()
        results.append((out.data[:, :T], h.data, c.data, [p.grad for p in m.parameters()], out.data))
    (o1, h1, c1, g1, _), (o2, h2, c2, g2, full2) = results
    for a, e in [(o1, o2), (h1, h2), (c1, c2)] + list(zip(g1, g2)):
        assert_close(a, e, rtol=1e-12, atol=1e-13)
    numpy.testing.assert_array_equal(tt.to_numpy(full2)[:, T:], 0)


def test_lengths_validation():
    m = nn.LSTM(2, 3, dtype="float64")
    x = on_device(numpy.zeros((2, 4, 2)))
    with pytest.raises(ValueError, match="lengths"):
        m(x, lengths=numpy.array([0, 4]))
    with pytest.raises(ValueError, match="lengths"):
        m(x, lengths=numpy.array([5, 4]))
    with pytest.raises(ValueError, match="lengths"):
        m(x, lengths=numpy.array([4]))
    with pytest.raises(TypeError, match="lengths"):
        m(x, lengths=numpy.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="batch, time"):
        m(on_device(numpy.zeros((2, 4, 3))))


def test_default_dtype_init_and_forget_bias():
    m = nn.LSTM(5, 4, num_layers=2, bidirectional=True, seed=0)
    names = [n for n, _ in m.named_parameters()]
    assert names[:6] == ["weight_ih_l0", "weight_hh_l0", "bias_l0", "weight_ih_l0_reverse",
                         "weight_hh_l0_reverse", "bias_l0_reverse"]
    assert m.weight_ih_l1.shape == (8, 16) and m.weight_hh_l1.shape == (4, 16)
    assert all(p.dtype == numpy.float32 for p in m.parameters())
    b = tt.to_numpy(m.bias_l0.data)
    numpy.testing.assert_array_equal(b[4:8], 1.0)
    numpy.testing.assert_array_equal(numpy.delete(b, range(4, 8)), 0.0)
    out, (h, c) = m(on_device(numpy.ones((2, 3, 5), dtype=numpy.float32)))
    assert out.dtype == numpy.float32 and out.shape == (2, 3, 8) and h.shape == (4, 2, 4)


def test_float32_final_state_gradient_long_sequence():
    """The loss reads only h_n: the gradient fades through 400 steps; the flush keeps it
    finite and close to the float64 result (no NaN/denormal trouble)."""
    rng = numpy.random.default_rng(9)
    B, T, I, H = 4, 400, 6, 8
    x = rng.standard_normal((B, T, I))
    grads = {}
    for dtype in ("float32", "float64"):
        m = nn.LSTM(I, H, dtype=dtype, seed=1)
        xt = tt.Tensor(on_device(x.astype(dtype)), requires_grad=True)
        _, (h, _) = m(xt)
        h.sum().backward()
        grads[dtype] = (tt.to_numpy(xt.grad), tt.to_numpy(m.weight_hh_l0.grad))
    for g32, g64 in zip(grads["float32"], grads["float64"]):
        assert numpy.isfinite(g32).all()
        numpy.testing.assert_allclose(g32, g64, rtol=1e-3, atol=1e-4 * numpy.abs(g64).max())
    gx = grads["float32"][0]
    tiny = numpy.finfo(numpy.float32).tiny
    assert not ((gx != 0) & (numpy.abs(gx) < tiny)).any()


def test_matches_torch_lstm():
    torch = pytest.importorskip("torch")
    rng = numpy.random.default_rng(10)
    B, T, I, H, L = 3, 6, 4, 5, 2
    m = _random_model(L, True, input_size=I, hidden=H)
    tm = torch.nn.LSTM(I, H, num_layers=L, bidirectional=True, batch_first=True).double()
    with torch.no_grad():
        for layer in range(L):
            for sfx in ("", "_reverse"):
                name = f"l{layer}{sfx}"
                for kind in ("ih", "hh"):
                    w = tt.to_numpy(getattr(m, f"weight_{kind}_{name}").data)
                    getattr(tm, f"weight_{kind}_{name}").copy_(torch.from_numpy(w.T.copy()))
                bias = tt.to_numpy(getattr(m, f"bias_{name}").data)
                getattr(tm, f"bias_ih_{name}").copy_(torch.from_numpy(bias.copy()))
                getattr(tm, f"bias_hh_{name}").zero_()
    x = rng.standard_normal((B, T, I))
    lengths = numpy.array([6, 3, 4])
    out, (h, c) = m(tt.Tensor(on_device(x)), lengths=lengths)
    packed = torch.nn.utils.rnn.pack_padded_sequence(torch.from_numpy(x), torch.from_numpy(lengths),
                                                     batch_first=True, enforce_sorted=False)
    tout, (th, tc) = tm(packed)
    tout, _ = torch.nn.utils.rnn.pad_packed_sequence(tout, batch_first=True, total_length=T)
    assert_close(out.data, tout.detach().numpy(), rtol=1e-9, atol=1e-12)
    assert_close(h.data, th.detach().numpy(), rtol=1e-9, atol=1e-12)
    assert_close(c.data, tc.detach().numpy(), rtol=1e-9, atol=1e-12)


def test_inter_layer_dropout_train_only():
    m = nn.LSTM(3, 4, num_layers=2, dropout=0.5, dtype="float64", seed=0)
    x = on_device(numpy.random.default_rng(11).standard_normal((2, 5, 3)))
    m.eval()
    a, _ = m(x)
    b, _ = m(x)
    numpy.testing.assert_array_equal(tt.to_numpy(a.data), tt.to_numpy(b.data))
    m.fused = False
    ref, _ = m(x)
    assert_close(a.data, ref.data, rtol=RTOL, atol=ATOL)
    m.fused = True
    m.train()
    c, _ = m(x)
    assert not numpy.allclose(tt.to_numpy(c.data), tt.to_numpy(a.data))


def _threaded_paths(monkeypatch, threads, chunk_rows):
    """Make the small test LSTMs take the threaded paths of lstm.py: forward row blocks
    (MIN_BLOCK_ENTRIES) and the backward's weight-gradient pipeline (chunk_rows per chunk)."""
    from tinytt import blas_threads
    from tinytt.nn import lstm as lstm_mod

    if not blas_threads.available():
        pytest.skip("NumPy's BLAS thread count cannot be set here: the LSTM never uses threads")
    # under pytest NumPy loads before tinytt, so OpenBLAS spins long and cooperative() is
    # False: force the paths (their results do not depend on the spin)
    monkeypatch.setattr(blas_threads, "cooperative", lambda: True)
    monkeypatch.setenv("TINYTT_NUM_THREADS", str(threads))
    monkeypatch.setattr(lstm_mod, "MIN_BLOCK_ENTRIES", 1)
    monkeypatch.setattr(lstm_mod, "PIPELINE_MIN_ENTRIES", 1)
    monkeypatch.setattr(lstm_mod, "PIPELINE_CHUNK_ROWS", chunk_rows)
    return lstm_mod


@pytest.mark.parametrize("threads,chunk_rows,chunk_steps", [(2, 1, 1), (3, 1, 1), (2, 10**6, 2)])
@pytest.mark.parametrize("num_layers,bidirectional,lengths", [
    (1, False, None),
    (1, True, [5, 2, 4, 1, 5, 3, 2]),
    (2, True, [1, 1, 5, 5, 2, 4, 3]),
    (1, True, [3, 2, 1, 3, 2, 1, 2]),   # no row reaches T: the projection worker stops early
])
def test_threaded_paths_match_reference(monkeypatch, threads, chunk_rows, chunk_steps, num_layers,
                                        bidirectional, lengths):
    """The forward with its input projection computed ahead by a worker (two threads:
    lstm._ProjectionPipeline, chunks of one step or of ceil(T/4) steps) or its recurrence
    split over blocks of batch rows, each in its own thread with one-thread BLAS (three
    threads: lstm._row_blocks), and the backward's big products computed per chunk
    of steps by a worker while the recurrence runs (lstm._WeightGradPipeline: one step per
    chunk, or chunks of ceil(T/4) steps) equal the
    step-by-step reference; row blocks then have different lengths. (On CuPy there are no
    threaded paths: the same batches, NaN padding included, are compared on the device.)"""
    from tinytt import blas_threads

    lstm_mod = _threaded_paths(monkeypatch, threads, chunk_rows)
    assert len(lstm_mod._row_blocks(7, 4, numpy)) == threads
    # chunk_rows=1: one step (7 rows) per chunk; a huge chunk_rows: capped at ceil(T/4) = 2 steps
    assert lstm_mod._pipeline_chunk(5, 7, 4, numpy) == chunk_steps
    before = blas_threads.get_num_threads()
    rng = numpy.random.default_rng(5)
    x_np = rng.standard_normal((7, 5, 3))
    lengths = None if lengths is None else numpy.array(lengths)
    x_ref = x_np
    if lengths is not None and lengths.max() < 5:
        # padding never reaches a result, not even dW_ih: NaN there for the fused LSTM, zeros
        # for the reference (which, built from primitives, would carry the NaN into dW_ih)
        x_ref = x_np.copy()
        for b, n in enumerate(lengths):
            x_np[b, n:] = numpy.nan
            x_ref[b, n:] = 0.0
    results = []
    for fused in (True, False):
        m = _random_model(num_layers, bidirectional, seed=4)
        m.fused = fused
        x = tt.Tensor(on_device(x_np if fused else x_ref), requires_grad=True)
        out, (h, c) = m(x, lengths=lengths)
        _loss_parts(out, h, c).backward()
        results.append([out.data, h.data, c.data, x.grad] + [p.grad for p in m.parameters()])
    for a, e in zip(*results):
        assert_close(a, e, rtol=RTOL, atol=ATOL)
    assert blas_threads.get_num_threads() == before
    assert lstm_mod._PIPELINES.items == []  # every deferred weight sum was finished by backward()


def test_weight_gradient_pipeline_is_deterministic_and_cleans_up_after_errors(monkeypatch):
    """Chunk partial sums are added in a fixed order (bit-identical on every run, whatever
    thread took which chunk); an error inside the recurrence stops the worker and
    restores the BLAS thread count."""
    from tinytt import blas_threads

    lstm_mod = _threaded_paths(monkeypatch, 2, 3)
    rng = numpy.random.default_rng(8)
    B, T, n_in, H = 6, 9, 3, 4
    x_tm = rng.standard_normal((T, B, n_in))
    W_ih, W_hh = rng.uniform(-0.8, 0.8, (n_in, 4 * H)), rng.uniform(-0.8, 0.8, (H, 4 * H))
    b, zeros = rng.standard_normal(4 * H), numpy.zeros((B, H))
    lengths = numpy.array([9, 4, 9, 2, 7, 9])
    _, saved = lstm_mod._forward_kernel(x_tm, W_ih, W_hh, b, zeros, zeros, lengths, numpy)
    gY = rng.standard_normal((B, T + 2, H))
    need = {"x", "W_ih", "W_hh", "b"}
    runs = [lstm_mod._backward_kernel(gY, W_ih, W_hh, saved, need, numpy) for _ in range(5)]
    for other in runs[1:]:
        for name in runs[0]:
            numpy.testing.assert_array_equal(other[name], runs[0][name])
    before = blas_threads.get_num_threads()
    bad = rng.standard_normal((B, T + 2, H + 1))  # fails at the first `dh += gY[:, t]`
    with pytest.raises(ValueError):
        lstm_mod._backward_kernel(bad, W_ih, W_hh, saved, need, numpy)
    assert blas_threads.get_num_threads() == before
    again = lstm_mod._backward_kernel(gY, W_ih, W_hh, saved, need, numpy)
    numpy.testing.assert_array_equal(again["W_ih"], runs[0]["W_ih"])


def test_projection_pipeline_reraises_worker_errors_and_restores_blas():
    from tinytt import blas_threads
    from tinytt.nn import lstm as lstm_mod

    if not blas_threads.available():
        pytest.skip("NumPy's BLAS thread count cannot be set here: no pipeline")
    before = blas_threads.get_num_threads()
    x_tm = numpy.ones((6, 2, 3))
    acts = numpy.empty((6, 2, 8))
    bad = lstm_mod._DenseProjector(x_tm, numpy.ones((4, 8)), numpy.zeros(8), numpy)  # W rows != 3
    pipe = lstm_mod._ProjectionPipeline(bad, 6, acts, 0, 2)
    with pytest.raises(ValueError):
        pipe.wait_until(0)
    with pytest.raises(ValueError):
        pipe.close()
    assert blas_threads.get_num_threads() == before
    good = lstm_mod._ProjectionPipeline(lstm_mod._DenseProjector(x_tm, numpy.full((3, 8), 2.0), numpy.zeros(8), numpy), 6, acts, 0, 4)
    assert good.wait_until(5) == 6
    good.close()
    numpy.testing.assert_array_equal(acts, 6.0)
    assert blas_threads.get_num_threads() == before


def test_threaded_lstm_weight_gradients_deferred_or_not_and_cleanup_after_errors(monkeypatch):
    """With the backward pipeline, the weight gradients come back as tensor.Deferred and are
    summed after the rest of the graph: the same values when the weights are leaves, when
    they are computed (non-leaf: resolved at once) and as the serial path; an error in a
    VJP that runs after the LSTM's still ends the worker and restores the BLAS count."""
    from tinytt import blas_threads
    from tinytt.tensor import record

    lstm_mod = _threaded_paths(monkeypatch, 2, 1)
    rng = numpy.random.default_rng(9)
    B, T, n_in, H = 5, 6, 3, 4
    x_np = on_device(rng.standard_normal((B, T, n_in)))
    w = [on_device(rng.uniform(-0.8, 0.8, s)) for s in ((n_in, 4 * H), (H, 4 * H), (4 * H,))]

    def grads(scale_weights, threaded):
        if not threaded:
            monkeypatch.setattr(lstm_mod, "PIPELINE_MIN_ENTRIES", 10**9)
            monkeypatch.setattr(lstm_mod, "MIN_BLOCK_ENTRIES", 10**9)
        leaves = [tt.Tensor(a.copy(), requires_grad=True) for a in w]
        weights = [p * 1.0 for p in leaves] if scale_weights else leaves
        x = tt.Tensor(x_np, requires_grad=True)
        out, h, c = lstm_layer(x, *weights)
        _loss_parts(out, h, c).backward()
        monkeypatch.setattr(lstm_mod, "PIPELINE_MIN_ENTRIES", 1)
        monkeypatch.setattr(lstm_mod, "MIN_BLOCK_ENTRIES", 1)
        return [x.grad] + [p.grad for p in leaves]

    serial = grads(False, threaded=False)
    for scale in (False, True):
        for got, want in zip(grads(scale, threaded=True), serial):
            assert_close(got, want, rtol=RTOL, atol=ATOL)

    before = blas_threads.get_num_threads()

    def failing(g):
        raise ValueError("the embedding's VJP fails")
    x0 = tt.Tensor(x_np, requires_grad=True)
    x = record("fails", x0.data * 1.0, (x0,), (failing,))
    leaves = [tt.Tensor(a.copy(), requires_grad=True) for a in w]
    out, h, c = lstm_layer(x, *leaves)
    with pytest.raises(ValueError, match="embedding's VJP fails"):
        _loss_parts(out, h, c).backward()
    assert blas_threads.get_num_threads() == before
    assert all(p.grad is None for p in leaves)


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("bad", [numpy.nan, numpy.inf])
@pytest.mark.parametrize("fused", [True, False])
def test_nan_or_inf_padding_changes_nothing(bidirectional, bad, fused):
    # padded steps are blended out with a 0/1 mask; NaN * 0 is NaN, so padded inputs must
    # never enter the arithmetic (NaN padding made the row's outputs and every weight
    # gradient NaN; in the reference layer, the W_ih gradient)
    lstm = nn.LSTM(2, 3, num_layers=2, bidirectional=bidirectional, dtype="float64", seed=0, fused=fused)
    x = numpy.random.default_rng(0).standard_normal((3, 5, 2))
    lengths = [2, 5, 1]
    results = []
    for fill in (None, bad):
        xx = x.copy()
        if fill is not None:
            xx[0, 2:] = fill
            xx[2, 1:] = fill
        before = xx.copy()
        lstm.zero_grad()
        xt = tt.Tensor(tt.to_device(xx), requires_grad=True)
        out, (h, c) = lstm(xt, lengths=tt.to_device(numpy.array(lengths)))
        (out.sum() + (h * h).sum() + c.sum()).backward()
        assert numpy.array_equal(xx, before, equal_nan=True)  # the caller's array is untouched
        results.append([tt.to_numpy(a) for a in (out.data, h.data, c.data, xt.grad)]
                       + [tt.to_numpy(p.grad) for p in lstm.parameters()])
    for clean, padded in zip(*results):
        assert numpy.array_equal(clean, padded)


def test_nan_padding_of_a_single_row_batch():
    # B == 1: the time-major copy of x is a view, which must not be zeroed in place
    lstm = nn.LSTM(2, 3, dtype="float64", seed=0)
    x = numpy.random.default_rng(1).standard_normal((1, 4, 2))
    x[0, 3] = numpy.nan
    out, (h, _) = lstm(tt.to_device(x), lengths=tt.to_device(numpy.array([3])))
    assert numpy.isnan(x[0, 3]).all()
    assert numpy.isfinite(tt.to_numpy(out.data)).all() and numpy.isfinite(tt.to_numpy(h.data)).all()


def _pipeline_case(rng):
    x = tt.Tensor(rng.standard_normal((6, 9, 3)), requires_grad=True)
    weights = [tt.Tensor(rng.uniform(-0.8, 0.8, s), requires_grad=True) for s in ((3, 16), (4, 16), (16,))]
    return x, weights, rng.standard_normal((6, 9, 4))


def test_interrupt_between_an_lstm_nodes_vjps_still_ends_its_pipeline(monkeypatch):
    # a KeyboardInterrupt after the x gradient, before the engine asked for the weights,
    # left the worker's pipeline outstanding and OpenBLAS at one thread
    from tinytt import blas_threads
    from tinytt import tensor as tensor_mod

    lstm_mod = _threaded_paths(monkeypatch, 2, 3)
    x, weights, g = _pipeline_case(numpy.random.default_rng(11))
    before = blas_threads.get_num_threads()
    real = tensor_mod._checked_gradient

    def interrupted(node, parent, pg, xp):
        if node._op == "lstm" and parent is x:
            raise KeyboardInterrupt
        return real(node, parent, pg, xp)

    monkeypatch.setattr(tensor_mod, "_checked_gradient", interrupted)
    y, _, _ = lstm_layer(x, *weights)
    with pytest.raises(KeyboardInterrupt):
        (y * tt.Tensor(g)).sum().backward()
    assert blas_threads.get_num_threads() == before
    assert lstm_mod._PIPELINES.items == [] and tensor_mod._UNRESOLVED.items == []


def test_interrupt_after_the_backward_recurrence_stops_the_weight_worker(monkeypatch):
    # a KeyboardInterrupt arriving after the recurrence's loop but before finish_x lowered
    # ready_low was outside the try: the worker waited forever for the last chunk, the
    # thread's next backward hung in finish_w and so did interpreter exit
    import concurrent.futures

    from tinytt import blas_threads
    from tinytt import tensor as tensor_mod

    lstm_mod = _threaded_paths(monkeypatch, 2, 12)   # chunks of 2 steps, T = 9: (0, 1) is last
    x, weights, g = _pipeline_case(numpy.random.default_rng(13))
    before = blas_threads.get_num_threads()
    seen = []

    def interrupted(self):
        seen.append(self)
        raise KeyboardInterrupt

    monkeypatch.setattr(lstm_mod._WeightGradPipeline, "finish_x", interrupted)
    y, _, _ = lstm_layer(x, *weights)
    try:
        with pytest.raises(KeyboardInterrupt):
            (y * tt.Tensor(g)).sum().backward()
        concurrent.futures.wait([seen[0].future], timeout=10)
        assert seen[0].future.done()
        assert blas_threads.get_num_threads() == before
        assert lstm_mod._PIPELINES.items == [] and tensor_mod._UNRESOLVED.items == []
    finally:   # (never leave a blocked worker behind, even when this fails)
        for p in seen:
            with p.cond:
                p.ready_low = 0
                p.cond.notify_all()


def test_weights_frozen_after_the_forward_leave_no_pipeline_behind(monkeypatch):
    from tinytt import blas_threads

    lstm_mod = _threaded_paths(monkeypatch, 2, 3)
    x, weights, g = _pipeline_case(numpy.random.default_rng(12))
    before = blas_threads.get_num_threads()
    y, _, _ = lstm_layer(x, *weights)
    for w in weights:
        w.requires_grad = False
    (y * tt.Tensor(g)).sum().backward()
    assert x.grad is not None and all(w.grad is None for w in weights)
    assert blas_threads.get_num_threads() == before
    assert lstm_mod._PIPELINES.items == []


def test_an_lstm_failing_in_one_thread_does_not_break_another_threads_backward(monkeypatch):
    # pipelines were global: thread B finished thread A's pipeline and inherited its error
    import threading

    lstm_mod = _threaded_paths(monkeypatch, 2, 3)
    rng = numpy.random.default_rng(13)
    cases = {name: _pipeline_case(rng) for name in ("A", "B")}
    serial = {}
    for name, (x, weights, g) in cases.items():
        y, _, _ = reference_lstm_layer(x, *weights)
        (y * tt.Tensor(g)).sum().backward()
        serial[name] = [w.grad.copy() for w in weights]
        for t in (x, *weights):
            t.grad = None
    a_started = threading.Event()
    real_steps_done = lstm_mod._WeightGradPipeline.steps_done

    def a_fails(self, t):
        if threading.current_thread().name == "A":
            a_started.set()
            time.sleep(0.2)   # B's backward starts while A's recurrence is still running
            raise RuntimeError("A failed")
        return real_steps_done(self, t)

    monkeypatch.setattr(lstm_mod._WeightGradPipeline, "steps_done", a_fails)
    results = {}

    def run(name):
        x, weights, g = cases[name]
        if name == "B":
            a_started.wait(5)
        try:
            y, _, _ = lstm_layer(x, *weights)
            (y * tt.Tensor(g)).sum().backward()
            results[name] = [w.grad for w in weights]
        except Exception as exc:  # noqa: BLE001
            results[name] = exc

    threads = [threading.Thread(target=run, args=(n,), name=n) for n in ("A", "B")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert isinstance(results["A"], RuntimeError)
    for got, want in zip(results["B"], serial["B"]):
        assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_projection_worker_stopped_early_still_leaves_the_whole_time_major_input(monkeypatch):
    """With every row shorter than T the recurrence stops waiting at the longest row and the
    projection worker is stopped; the time-major copy of x it was filling chunk by chunk is
    completed anyway (padding zeroed), since the backward's dW_ih reads all of it."""
    lstm_mod = _threaded_paths(monkeypatch, 2, 1)
    real_call = lstm_mod._DenseProjector.__call__

    def slow_past_the_lengths(self, lo, hi, out):
        if lo >= 3:
            time.sleep(0.05)     # the recurrence is done by now: close() stops the worker
        real_call(self, lo, hi, out)

    monkeypatch.setattr(lstm_mod._DenseProjector, "__call__", slow_past_the_lengths)
    rng = numpy.random.default_rng(9)
    B, T, I, H = 2, 8, 3, 4
    x = rng.standard_normal((B, T, I))
    lengths = numpy.array([2, 3])
    x[0, 2:] = numpy.nan
    x[1, 3:] = numpy.nan
    pad = numpy.arange(T)[:, None] >= lengths[None, :]
    x_in = lstm_mod._TimeMajorInput(x, None, pad, numpy)
    W_ih, W_hh, b = rng.standard_normal((I, 4 * H)), rng.standard_normal((H, 4 * H)), numpy.zeros(4 * H)
    zeros = numpy.zeros((B, H))
    _, saved = lstm_mod._forward_kernel(x_in, W_ih, W_hh, b, zeros, zeros, lengths, numpy)
    want = numpy.where(pad[:, :, None], 0.0, x.transpose(1, 0, 2))
    numpy.testing.assert_array_equal(saved["x_tm"], want)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_empty_batch_gives_empty_outputs_and_gradients(bidirectional):
    """B = 0 (e.g. the last, empty slice of a dataset): empty outputs and states in the
    model's dtype (float64 x into a float32 model), zero weight gradients, and the shape
    checks of the states still apply."""
    m = nn.LSTM(3, 4, num_layers=2, bidirectional=bidirectional, seed=3)      # float32
    x = tt.Tensor(on_device(numpy.zeros((0, 5, 3))), requires_grad=True)     # float64
    out, (h, c) = m(x)
    n_dir = 2 if bidirectional else 1
    assert out.shape == (0, 5, 4 * n_dir) and h.shape == (2 * n_dir, 0, 4) == c.shape
    out_l, (h_l, c_l) = m(x, lengths=numpy.zeros(0, dtype=numpy.int64))    # empty lengths too
    assert out_l.shape == out.shape and h_l.shape == h.shape == c_l.shape
    assert out.dtype == h.dtype == c.dtype == numpy.float32
    (out.sum() + h.sum() + c.sum()).backward()
    assert x.grad.shape == (0, 5, 3)
    for p in m.parameters():
        assert p.grad is not None and p.grad.shape == p.shape and not p.grad.any()
    with pytest.raises(ValueError, match="h0 must have shape"):
        lstm_layer(*(on_device(numpy.zeros(s)) for s in ((0, 5, 3), (3, 16), (4, 16), (16,))),
                   h0=on_device(numpy.zeros((1, 4))))


@pytest.mark.parametrize("layer", [lstm_layer, reference_lstm_layer])
def test_both_layer_functions_check_their_arguments_alike(layer):
    """The reference path keeps lstm_layer's contract (it broadcast a (1, H) h0 and a (H,) c0
    silently); complex inputs are refused (their imaginary part was dropped with a warning);
    integer weights are refused up front (they failed inside the kernel)."""
    rng = numpy.random.default_rng(0)
    B, T, I, H = 2, 4, 3, 5
    x = on_device(rng.standard_normal((B, T, I)))
    W_ih, W_hh, b = on_device(rng.standard_normal((I, 4 * H))), on_device(rng.standard_normal((H, 4 * H))), \
        on_device(numpy.zeros(4 * H))
    ok = layer(x, W_ih, W_hh, b)
    assert ok[0].shape == (B, T, H)
    cases = [
        (dict(h0=on_device(numpy.zeros((1, H)))), ValueError, "h0"),
        (dict(c0=on_device(numpy.zeros(H))), ValueError, "c0"),
        (dict(b=on_device(numpy.zeros(11))), ValueError, "weight shapes"),
        (dict(x=x[0]), ValueError, "x must have shape"),
        (dict(x=x.astype(complex)), TypeError, "x must be a real"),
        (dict(h0=on_device(numpy.zeros((B, H), dtype=complex))), TypeError, "h0 must be a real"),
        (dict(W_hh=W_hh.astype(numpy.int64)), TypeError, "W_hh must be a floating"),
        (dict(x=on_device(numpy.zeros((B, 0, I)))), ValueError, "at least one time step"),
    ]
    for change, exc, needle in cases:
        args = dict(x=x, W_ih=W_ih, W_hh=W_hh, b=b)
        args.update(change)
        with pytest.raises(exc, match=needle):
            layer(**args)
    assert layer(x.astype(numpy.int64), W_ih, W_hh, b)[0].shape == (B, T, H)   # integer inputs are read as floats


def test_lstm_module_checks_flags_state_and_seed():
    for kw, exc, needle in ((dict(bidirectional="no"), TypeError, "bidirectional"), (dict(fused=1), TypeError, "fused"),
                            (dict(seed=-1), ValueError, "seed"), (dict(seed=1.5), ValueError, "seed"),
                            (dict(dropout=True), ValueError, "dropout")):
        with pytest.raises(exc, match=needle):
            nn.LSTM(3, 4, **kw)
    lstm = nn.LSTM(3, 4, bidirectional=numpy.bool_(True), seed=0)
    x = on_device(numpy.zeros((2, 5, 3), dtype=numpy.float32))
    h = on_device(numpy.zeros((2, 2, 4), dtype=numpy.float32))
    for state in ((h,), (h, h, h), on_device(numpy.zeros((3, 2, 2, 4))), 5):
        with pytest.raises(ValueError, match="state must be None or a pair"):
            lstm(x, state=state)
    assert lstm(x, state=(h, h))[0].shape == (2, 5, 8)
    assert lstm(x, state=tt.get_xp().stack([h, h]))[0].shape == (2, 5, 8)   # a stacked (2, L*D, B, H) array


def test_dropout_and_cross_entropy_options_are_checked():
    from tinytt.functional import dropout

    ints = on_device(numpy.arange(6).reshape(2, 3))
    for training in (True, False):
        with pytest.raises(TypeError, match="dropout: x must be a floating"):
            dropout(ints, 0.5, training=training)
    with pytest.raises(TypeError, match="floating"):
        nn.Dropout(0.5, seed=0)(ints)
    for kw, exc, needle in ((dict(label_smoothing=1.5), ValueError, "label_smoothing"),
                            (dict(ignore_index=True), TypeError, "ignore_index"),
                            (dict(ignore_index=1.5), TypeError, "ignore_index"),
                            (dict(ignore_index="a"), TypeError, "ignore_index")):
        with pytest.raises(exc, match=needle):
            nn.CrossEntropyLoss(**kw)
        with pytest.raises(exc, match=needle):
            tt.cross_entropy(numpy.zeros((2, 3)), numpy.array([0, 1]), **kw)
    assert nn.CrossEntropyLoss(ignore_index=numpy.int64(1))(numpy.zeros((2, 3)), numpy.array([0, 1])).shape == ()


def _numpy_lstm_forward(x, W_ih, W_hh, b):
    """Oracle in float64 NumPy, written from the equations (no tinytt): (outputs, h, c)."""
    x, W_ih, W_hh, b = (numpy.asarray(a, dtype=numpy.float64) for a in (x, W_ih, W_hh, b))
    B, T, _ = x.shape
    H = W_hh.shape[0]
    h = numpy.zeros((B, H))
    c = numpy.zeros((B, H))
    out = numpy.zeros((B, T, H))
    for t in range(T):
        z = x[:, t] @ W_ih + h @ W_hh + b
        i, f, o = (1.0 / (1.0 + numpy.exp(-z[:, k * H:(k + 1) * H])) for k in (0, 1, 3))
        g = numpy.tanh(z[:, 2 * H:3 * H])
        c = f * c + i * g
        h = o * numpy.tanh(c)
        out[:, t] = h
    return out, h, c


@pytest.mark.parametrize("dtype, scale, rtol", [("float32", 1e-4, 2e-6), ("float32", 1e-6, 2e-6),
                                                ("float64", 1e-12, 1e-14)])
def test_small_pre_activations_keep_their_relative_accuracy(dtype, scale, rtol):
    # g = tanh(z) of a tiny z: computed as 2 sigmoid(2z) - 1 it cancelled (1.7e-4 relative
    # error in c at z = 1e-4 in float32, 7e-2 at 1e-6, 9e-5 at 1e-12 in float64)
    rng = numpy.random.default_rng(3)
    x = (rng.uniform(0.5, 1.0, (2, 3, 2)) * scale).astype(dtype)
    W_ih = rng.uniform(0.5, 1.0, (2, 4 * 3)).astype(dtype)
    W_hh = numpy.zeros((3, 4 * 3), dtype)      # keeps h @ W_hh out: every z stays ~scale
    b = numpy.zeros(4 * 3, dtype)
    out, h, c = lstm_layer(*(tt.Tensor(on_device(a)) for a in (x, W_ih, W_hh, b)))
    want_out, want_h, want_c = _numpy_lstm_forward(x, W_ih, W_hh, b)
    for got, want in ((out, want_out), (h, want_h), (c, want_c)):
        rel = numpy.max(numpy.abs(tt.to_numpy(got) - want) / numpy.abs(want))
        assert rel < rtol, (dtype, scale, rel)


@pytest.mark.parametrize("dtype, z, rtol", [("float32", -17.0, 1e-5), ("float32", -10.0, 1e-5),
                                            ("float64", -30.0, 1e-13)])
def test_gradient_through_a_closed_gate_keeps_its_relative_accuracy(dtype, z, rtol):
    # d c / d W[i] = x * tanh(z_g) * s (1 - s) with s = sigmoid(z_i): the derivative was
    # 1/4 - (s - 1/2)^2, which cancels for s near 0 (28 % off at z = -17 in float32)
    W = tt.Tensor(on_device(numpy.array([[z, 0.0, 3.0, 0.0]], dtype)), requires_grad=True)
    x = tt.Tensor(on_device(numpy.ones((1, 1, 1), dtype)))
    _, _, c = lstm_layer(x, W, tt.Tensor(on_device(numpy.zeros((1, 4), dtype))),
                         tt.Tensor(on_device(numpy.zeros(4, dtype))))
    c.sum().backward()
    s = 1.0 / (1.0 + numpy.exp(-z))
    want = numpy.tanh(3.0) * s * (1.0 - s)
    assert abs(float(tt.to_numpy(W.grad)[0, 0]) - want) <= rtol * want


def test_generator_seed_makes_dropout_reproducible():
    """LSTM(seed=Generator) seeded the weights but left the dropout between layers unseeded."""
    from conftest import assert_same_runs

    x = tt.Tensor(on_device(numpy.ones((2, 3, 2), dtype=numpy.float32)))
    outs = []
    for _ in range(2):
        lstm = nn.LSTM(2, 4, num_layers=2, dropout=0.5, seed=numpy.random.default_rng(0))
        outs.append(lstm(x)[0].numpy())
    assert_same_runs(outs[0], outs[1])
