"""Every layer against dense ground truth on hypothesis-drawn sizes, ranks and values (float64).

The other ``tests/nn`` files pin chosen configurations (the paper's shapes, padding corner
cases, threads); here hypothesis draws them:

- ``LSTM``: the fused op equals the step-by-step reference built from primitive ops (values,
  final states, gradients of inputs, initial state and every weight), for drawn batch, time,
  sizes, layers, directions, lengths and initial states, on the serial and the threaded
  paths; plus finite differences; and side by side with ``torch.nn.LSTM`` (packed sequences for
  ``lengths``) in values and every gradient, when torch is installed;
- ``TTEmbedding``: rows equal ``to_dense()[ids]`` for every strategy, and the core gradients
  equal those of the dense path (the full matrix through the autodiff, then indexed);
- ``TTLinear``: both forward paths equal ``x @ full() + b``, gradients by finite differences;
- ``Linear`` and ``Embedding``: against NumPy products and an ``numpy.add.at`` gradient;
- ``Dropout``: kept entries scaled by 1/(1-p), the gradient through the same mask.

The problems come from ``tinytt.testing.strategies`` (``lstm_problems``, ``tt_matrix_cores``,
``embedding_ids``), which other projects can draw from for their own layers.
"""

import contextlib
import os
from unittest import mock

import numpy
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinytt as tt
from tinytt import blas_threads, nn
from tinytt.nn import lstm as lstm_mod
from tinytt.testing import assert_close, check_grads
from tinytt.testing.strategies import embedding_ids, lstm_problems, tt_matrix_cores, tt_matrix_shapes

RTOL, ATOL = 1e-9, 1e-12


def _host(a):
    return tt.to_numpy(a.data if isinstance(a, tt.Tensor) else a)


# --- LSTM ------------------------------------------------------------------------------------------------
def _lstm_model(problem):
    m = nn.LSTM(problem["input_size"], problem["hidden_size"], num_layers=problem["num_layers"],
                bidirectional=problem["bidirectional"], dtype="float64", seed=0)
    m.load_state_dict({k: tt.to_device(v) for k, v in problem["weights"].items()})
    return m


def _state(problem):
    """The problem's (h0, c0) as differentiable Tensors, or None."""
    if problem["h0"] is None:
        return None
    return tuple(tt.Tensor(tt.to_device(problem[k]), requires_grad=True) for k in ("h0", "c0"))


def _run_lstm(problem, fused: bool):
    """Outputs, final states and every gradient of a random linear readout of all three."""
    m = _lstm_model(problem)
    m.fused = fused
    x = tt.Tensor(tt.to_device(problem["x"]), requires_grad=True)
    state = _state(problem)
    out, (h, c) = m(x, lengths=problem["lengths"], state=state)
    rng = numpy.random.default_rng(problem["x"].size)
    loss = sum(((t * tt.to_device(rng.standard_normal(t.shape))).sum() for t in (out, h, c)), tt.Tensor(0.0))
    loss.backward()
    grads = [x.grad] + ([s.grad for s in state] if state is not None else []) + [p.grad for p in m.parameters()]
    return [out.data, h.data, c.data] + grads


@contextlib.contextmanager
def _threaded_lstm(threads: int, chunk_rows: int):
    """Make small LSTMs take the threaded paths (row blocks, projection and weight pipelines)."""
    with mock.patch.object(blas_threads, "cooperative", lambda: True), \
            mock.patch.dict(os.environ, {"TINYTT_NUM_THREADS": str(threads)}), \
            mock.patch.object(lstm_mod, "MIN_BLOCK_ENTRIES", 1), \
            mock.patch.object(lstm_mod, "PIPELINE_MIN_ENTRIES", 1), \
            mock.patch.object(lstm_mod, "PIPELINE_CHUNK_ROWS", chunk_rows):
        yield


@given(problem=lstm_problems(), threads=st.sampled_from([None, 2, 3]), chunk_rows=st.sampled_from([1, 7, 10 ** 6]))
def test_fused_lstm_equals_step_by_step_reference(problem, threads, chunk_rows):
    if threads is not None and (tt.get_backend() != "numpy" or not blas_threads.available()):
        threads = None   # the threaded paths exist on NumPy with a settable BLAS only
    paths = _threaded_lstm(threads, chunk_rows) if threads else contextlib.nullcontext()
    with paths:
        fused = _run_lstm(problem, fused=True)
    reference = _run_lstm(problem, fused=False)
    n_dir = 2 if problem["bidirectional"] else 1
    batch, time, _ = problem["x"].shape
    hidden = problem["hidden_size"]
    assert fused[0].shape == (batch, time, hidden * n_dir)
    assert fused[1].shape == fused[2].shape == (problem["num_layers"] * n_dir, batch, hidden)
    for got, want in zip(fused, reference):
        assert_close(got, want, rtol=RTOL, atol=ATOL)
    if problem["lengths"] is not None:   # positions past a row's length output zeros
        out = _host(fused[0])
        for b, n in enumerate(problem["lengths"]):
            assert not out[b, n:].any()


@given(problem=lstm_problems(max_batch=3, max_time=4))
def test_fused_lstm_gradients_by_finite_differences(problem):
    m = _lstm_model(problem)
    names = [n for n, _ in m.named_parameters()]
    batch, lengths = problem["x"].shape[0], problem["lengths"]
    with_state = problem["h0"] is not None
    inputs = [problem["x"]] + ([problem["h0"], problem["c0"]] if with_state else [])
    n_state = 2 if with_state else 0

    def f(x, *rest):
        state = tuple(rest[:n_state]) if n_state else None
        for name, w in zip(names, rest[n_state:]):
            setattr(m, name, w)
        out, (h, c) = m(x, lengths=lengths, state=state)
        return tt.concat([out.reshape(batch, -1), h.transpose(1, 0, 2).reshape(batch, -1),
                          c.transpose(1, 0, 2).reshape(batch, -1)], axis=1)

    weights = [problem["weights"][n] for n in names]
    check_grads(f, *[tt.to_device(a) for a in inputs + weights],
                names=["x"] + ["h0", "c0"][:n_state] + names)


# --- TTEmbedding -----------------------------------------------------------------------------------------
@given(cores=tt_matrix_cores(max_order=4, max_mode=5, max_rank=4), data=st.data())
def test_tt_embedding_rows_and_gradients_equal_the_dense_path(cores, data):
    row_shape = tuple(c.shape[1] for c in cores)
    col_shape = tuple(c.shape[2] for c in cores)
    n_rows, dim = int(numpy.prod(row_shape)), int(numpy.prod(col_shape))
    vocab = data.draw(st.integers(max(1, n_rows // 2), n_rows), label="vocab")   # rows past it: padding
    padding_idx = data.draw(st.none() | st.integers(0, vocab - 1), label="padding_idx")
    ids = data.draw(embedding_ids(vocab, padding_idx=padding_idx), label="ids")
    strategy = data.draw(st.sampled_from(["auto", "gather", "prefix", "full"]), label="strategy")
    layer = nn.TTEmbedding(vocab, dim, rank=[1] + [c.shape[3] for c in cores], shape=(row_shape, col_shape),
                           padding_idx=padding_idx, dtype="float64", seed=0)
    for p, c in zip(layer.cores, cores):
        p.data[...] = tt.to_device(c)
    upstream = tt.to_device(numpy.random.default_rng(ids.size).standard_normal(ids.shape + (dim,)))
    out = layer(tt.to_device(ids), strategy=strategy)
    out.backward(upstream)
    got = [p.grad for p in layer.parameters()]
    layer.zero_grad()
    dense = layer.to_dense()                   # (vocab, D) through the autodiff
    dense[tt.to_device(ids)].backward(upstream)
    want = [p.grad for p in layer.parameters()]
    assert out.shape == ids.shape + (dim,) and dense.shape == (vocab, dim)
    assert_close(out, _host(dense)[ids], rtol=1e-10, atol=1e-12)
    for a, b in zip(got, want):
        assert_close(a, b, rtol=1e-9, atol=1e-11)
    if padding_idx is not None:
        assert not _host(dense)[padding_idx].any()
        assert not _host(out)[ids == padding_idx].any()


# --- TTLinear --------------------------------------------------------------------------------------------
@given(shapes=tt_matrix_shapes(min_order=1, max_order=3, max_mode=4), rank=st.integers(1, 3),
       lead=st.lists(st.integers(1, 4), min_size=0, max_size=2).map(tuple), path=st.sampled_from(["direct", "full"]),
       seed=st.integers(0, 2 ** 16))
def test_tt_linear_equals_the_dense_product_on_both_paths(shapes, rank, lead, path, seed):
    row_shape, col_shape = shapes
    n_in, n_out = int(numpy.prod(row_shape)), int(numpy.prod(col_shape))
    rng = numpy.random.default_rng(seed)
    layer = nn.TTLinear(n_in, n_out, rank=rank, shape=shapes, dtype="float64", seed=seed)
    layer.bias.data[...] = tt.to_device(rng.standard_normal(n_out))
    x = rng.standard_normal(lead + (n_in,))
    costs = (lambda self, b: (0, 1)) if path == "direct" else (lambda self, b: (1, 0))
    with mock.patch.object(nn.TTLinear, "_costs", costs):
        y = layer(tt.Tensor(tt.to_device(x)))
        w = _host(layer.matrix.full())
        assert y.shape == lead + (n_out,)
        assert_close(y, x @ w + _host(layer.bias), rtol=1e-10, atol=1e-12)

        def f(x, b, *cores):
            probe = nn.TTLinear(n_in, n_out, rank=rank, shape=shapes, dtype="float64")
            probe.cores, probe.bias = list(cores), b
            return probe(x)

        check_grads(f, tt.to_device(x), layer.bias.data.copy(), *[c.data.copy() for c in layer.cores],
                    names=["x", "bias"] + [f"cores.{k}" for k in range(len(row_shape))])


# --- Linear, Embedding -------------------------------------------------------------------------------------
@given(n_in=st.integers(1, 6), n_out=st.integers(1, 6), lead=st.lists(st.integers(1, 4), max_size=2).map(tuple),
       bias=st.booleans(), init=st.sampled_from(["glorot", "he"]), seed=st.integers(0, 2 ** 16))
def test_linear_equals_the_numpy_product_and_its_gradients(n_in, n_out, lead, bias, init, seed):
    layer = nn.Linear(n_in, n_out, bias=bias, init=init, dtype="float64", seed=seed)
    x = numpy.random.default_rng(seed).standard_normal(lead + (n_in,))
    y = layer(tt.Tensor(tt.to_device(x)))
    want = x @ _host(layer.weight) + (_host(layer.bias) if bias else 0.0)
    assert_close(y, want, rtol=1e-12, atol=1e-14)
    params = [p.data.copy() for p in layer.parameters()]

    def f(x, *ps):
        probe = nn.Linear(n_in, n_out, bias=bias, dtype="float64")
        probe.weight = ps[0]
        if bias:
            probe.bias = ps[1]
        return probe(x)

    check_grads(f, tt.to_device(x), *params)


@given(vocab=st.integers(1, 30), dim=st.integers(1, 6), data=st.data())
def test_embedding_rows_and_gradient_equal_numpy(vocab, dim, data):
    padding_idx = data.draw(st.none() | st.integers(-vocab, vocab - 1), label="padding_idx")
    id_shape = data.draw(st.lists(st.integers(1, 6), min_size=1, max_size=3).map(tuple), label="id_shape")
    ids = numpy.array(data.draw(st.lists(st.integers(0, vocab - 1), min_size=int(numpy.prod(id_shape)),
                                         max_size=int(numpy.prod(id_shape))), label="ids")).reshape(id_shape)
    layer = nn.Embedding(vocab, dim, padding_idx=padding_idx, dtype="float64", seed=0)
    weight = _host(layer.weight)
    upstream = numpy.random.default_rng(vocab * 7 + dim).standard_normal(id_shape + (dim,))
    out = layer(tt.to_device(ids))
    out.backward(tt.to_device(upstream))
    want_grad = numpy.zeros((vocab, dim))
    numpy.add.at(want_grad, ids.reshape(-1), upstream.reshape(-1, dim))
    if padding_idx is not None:
        want_grad[padding_idx] = 0   # the padding row is zero and gets no gradient
        assert not weight[padding_idx].any()
    assert_close(out, weight[ids], rtol=0, atol=0)
    assert_close(layer.weight.grad, want_grad, rtol=1e-12, atol=1e-14)


@given(shape=st.lists(st.integers(1, 40), min_size=1, max_size=3).map(tuple),
       p=st.floats(0.0, 0.9), seed=st.integers(0, 2 ** 16))
def test_dropout_scales_the_kept_entries_and_routes_the_gradient_through_the_same_mask(shape, p, seed):
    rng = numpy.random.default_rng(seed)
    x_np = rng.uniform(0.5, 2.0, shape)   # no zeros: every dropped entry is visible in the output
    layer = nn.Dropout(p, seed=seed)
    x = tt.Tensor(tt.to_device(x_np), requires_grad=True)
    y = layer(x)
    upstream = rng.standard_normal(shape)
    y.backward(tt.to_device(upstream))
    kept = _host(y) != 0
    assert_close(_host(y)[kept], x_np[kept] / (1 - p), rtol=1e-15, atol=0)
    assert_close(x.grad, numpy.where(kept, upstream / (1 - p), 0.0), rtol=1e-15, atol=0)
    if p == 0.0:
        assert kept.all()
    layer.eval()
    assert_close(layer(tt.Tensor(tt.to_device(x_np))), x_np, rtol=0, atol=0)


@given(problem=lstm_problems(max_batch=3, max_time=5, max_size=3))
def test_fused_lstm_matches_torch_on_drawn_problems(problem):
    """Side by side with ``torch.nn.LSTM`` (float64, packed sequences for ``lengths``): outputs,
    final states and the gradients of inputs, initial state and every weight. tinytt runs on
    the backend under test, torch on the CPU; the results are compared on the host."""
    torch = pytest.importorskip("torch")
    n_in, hidden, layers = problem["input_size"], problem["hidden_size"], problem["num_layers"]
    bidirectional, lengths = problem["bidirectional"], problem["lengths"]
    batch, time, _ = problem["x"].shape
    n_dir = 2 if bidirectional else 1
    state_shape = (layers * n_dir, batch, hidden)
    h0 = problem["h0"] if problem["h0"] is not None else numpy.zeros(state_shape)
    c0 = problem["c0"] if problem["c0"] is not None else numpy.zeros(state_shape)
    rng = numpy.random.default_rng(problem["x"].size + 1)
    g_out = rng.standard_normal((batch, time, hidden * n_dir))
    if lengths is not None:   # padded outputs are zero in both; give them no weight
        g_out *= (numpy.arange(time)[None, :] < lengths[:, None])[..., None]
    g_h, g_c = rng.standard_normal(state_shape), rng.standard_normal(state_shape)

    m = _lstm_model(problem)
    x = tt.Tensor(tt.to_device(problem["x"]), requires_grad=True)
    state = (tt.Tensor(tt.to_device(h0), requires_grad=True), tt.Tensor(tt.to_device(c0), requires_grad=True))
    out, (h, c) = m(x, lengths=lengths, state=state)
    ((out * tt.to_device(g_out)).sum() + (h * tt.to_device(g_h)).sum() + (c * tt.to_device(g_c)).sum()).backward()

    tm = torch.nn.LSTM(n_in, hidden, num_layers=layers, bidirectional=bidirectional, batch_first=True).double()
    with torch.no_grad():
        for name, w in problem["weights"].items():
            if name.startswith("bias_"):
                getattr(tm, name.replace("bias_", "bias_ih_")).copy_(torch.from_numpy(w))
                getattr(tm, name.replace("bias_", "bias_hh_")).zero_()
            else:
                getattr(tm, name).copy_(torch.from_numpy(w.T.copy()))
    tx = torch.tensor(problem["x"], requires_grad=True)
    th0, tc0 = torch.tensor(h0, requires_grad=True), torch.tensor(c0, requires_grad=True)
    if lengths is None:
        tout, (th, tcn) = tm(tx, (th0, tc0))
    else:
        packed = torch.nn.utils.rnn.pack_padded_sequence(tx, torch.from_numpy(lengths), batch_first=True,
                                                         enforce_sorted=False)
        tout, (th, tcn) = tm(packed, (th0, tc0))
        tout, _ = torch.nn.utils.rnn.pad_packed_sequence(tout, batch_first=True, total_length=time)
    ((tout * torch.from_numpy(g_out)).sum() + (th * torch.from_numpy(g_h)).sum()
     + (tcn * torch.from_numpy(g_c)).sum()).backward()

    for got, want in ((out.data, tout), (h.data, th), (c.data, tcn), (x.grad, tx.grad),
                      (state[0].grad, th0.grad), (state[1].grad, tc0.grad)):
        assert_close(got, want.detach().numpy(), rtol=1e-9, atol=1e-12)
    for name, p in m.named_parameters():
        if name.startswith("bias_"):
            want = getattr(tm, name.replace("bias_", "bias_ih_")).grad.numpy()
        else:
            want = getattr(tm, name).grad.numpy().T
        assert_close(p.grad, want, rtol=1e-9, atol=1e-12, err_msg=name)
