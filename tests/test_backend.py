"""Backends (tinytt/backend.py): selection, array namespaces, scatter-add, linear algebra, GPU parity."""

import os
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinytt as tt
from conftest import on_device
from tinytt import backend, segment_sum
from tinytt.testing import assert_close, available_backends
from tinytt.testing.strategies import float_arrays

HAS_CUPY = "cupy" in available_backends()


def test_available_backends_contains_numpy():
    names = available_backends()
    assert names[0] == "numpy" and set(names) <= {"numpy", "cupy"}


def test_set_backend_unknown_name():
    with pytest.raises(ValueError, match="bogus"):
        tt.set_backend("bogus")
    with pytest.raises(ValueError, match="backend name"):
        tt.set_backend(None)


@pytest.mark.skipif(HAS_CUPY, reason="CuPy and a GPU are available here")
def test_set_backend_cupy_without_cupy_is_a_clear_runtime_error():
    before = tt.get_backend()
    with pytest.raises(RuntimeError, match="cupy") as exc:
        tt.set_backend("cupy")
    assert "numpy" in str(exc.value)  # says what to use instead
    assert tt.get_backend() == before  # the failed switch changed nothing


def test_set_backend_numpy_round_trip():
    tt.set_backend("NumPy")
    assert tt.get_backend() == "numpy" and tt.get_xp() is np


def test_get_xp():
    assert tt.get_xp(np.ones(2)) is np
    assert tt.get_xp(np.float32(1.0)) is np
    assert tt.get_xp(tt.Tensor(np.ones(2))) is np
    assert tt.get_xp(1.0, None, 3) is tt.get_xp()  # scalars fall back to the default backend
    assert tt.get_xp() is (np if tt.get_backend() == "numpy" else sys.modules["cupy"])
    assert tt.get_xp(2.0, np.ones(1)) is np


def test_to_numpy_and_to_device():
    a = np.arange(3.0)
    assert isinstance(tt.to_numpy(tt.Tensor(on_device(a))), np.ndarray)
    assert_close(tt.to_numpy(tt.Tensor(on_device(a))), a, dtype=np.float64)
    d = tt.to_device(a, dtype=np.float32)
    assert d.dtype == np.float32 and isinstance(d, tt.get_xp().ndarray)
    assert isinstance(tt.to_numpy(3.0), np.ndarray)


@st.composite
def scatter_case(draw):
    num_rows = draw(st.integers(1, 6))
    k = draw(st.integers(0, 12))
    rest = tuple(draw(st.lists(st.integers(0, 3), max_size=2)))
    ids = np.array(draw(st.lists(st.integers(0, num_rows - 1), min_size=k, max_size=k)), dtype=np.int64)
    values = draw(float_arrays((k,) + rest))
    return ids, values, num_rows


@given(case=scatter_case())
def test_scatter_add_matches_dense_loop(case):
    ids, values, num_rows = case
    expected = np.zeros((num_rows,) + values.shape[1:])
    for k, i in enumerate(ids):
        expected[i] += values[k]
    got = backend.scatter_add(on_device(ids), on_device(values), num_rows)
    assert got.shape == expected.shape and got.dtype == values.dtype
    assert_close(got, expected, dtype=np.float64)
    v32 = values.astype(np.float32)
    got32 = backend.scatter_add(on_device(ids), on_device(v32), num_rows)
    assert got32.dtype == np.float32
    assert_close(got32, expected, dtype=np.float32)


@given(st.integers(1, 40), st.integers(0, 60), st.integers(0, 300), st.booleans(), st.integers(0, 2**31 - 1))
def test_scatter_add_when_every_row_occurs(num_rows, extra, long_run, presorted, seed):
    # every row at least once (the take-initialised path), some rows repeated, and one row
    # repeated long_run more times (segments longer than 64 are summed one by one)
    rng = np.random.default_rng(seed)
    ids = np.concatenate([rng.permutation(num_rows), rng.integers(0, num_rows, extra),
                          np.full(long_run, rng.integers(0, num_rows))])
    ids = np.sort(ids) if presorted else rng.permutation(ids)
    values = rng.standard_normal((ids.shape[0], 3))
    expected = np.zeros((num_rows, 3))
    for k, i in enumerate(ids):
        expected[i] += values[k]
    got = backend.scatter_add(on_device(ids), on_device(values), num_rows)
    assert_close(got, expected, dtype=np.float64)


def test_scatter_add_deterministic_and_close_to_a_sequential_sum():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 5, 2000)
    values = rng.standard_normal((2000, 3)).astype(np.float32) * 1e4
    runs = [tt.to_numpy(backend.scatter_add(on_device(ids), on_device(values), 5)) for _ in range(4)]
    first = runs[0]
    if tt.get_backend() != "numpy":
        # cupyx.scatter_add's atomic adds sum in no fixed order: runs may differ in their last
        # bits, each within the float32 bound of a sum in any order, (n - 1) eps sum |v|
        exact, magnitude = np.zeros((5, 3)), np.zeros((5, 3))
        np.add.at(exact, ids, values.astype(np.float64))
        np.add.at(magnitude, ids, np.abs(values).astype(np.float64))
        bound = (np.bincount(ids, minlength=5)[:, None] - 1) * np.finfo(np.float32).eps * magnitude
        for run in runs:
            assert np.all(np.abs(run - exact) <= bound)
    else:
        for run in runs[1:]:
            np.testing.assert_array_equal(run, first)
        # repeated indices are summed in the order they appear (sequential float32 sums)
        expected = np.zeros((5, 3), np.float32)
        for k, i in enumerate(ids):
            expected[i] += values[k]
        assert_close(first, expected, rtol=1e-5, atol=1e-2)


def test_index_add_accumulates_repeats():
    target = on_device(np.zeros(4))
    backend.index_add(target, on_device(np.array([0, 0, 3])), on_device(np.array([1.0, 2.0, 5.0])))
    assert_close(target, [3.0, 0.0, 0.0, 5.0], dtype=np.float64)


@pytest.mark.parametrize("shape", [(5, 3), (3, 5), (4, 4), (1, 6), (6, 1)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_svd_and_qr_reconstruct(shape, dtype):
    a = on_device(np.random.default_rng(1).standard_normal(shape).astype(dtype))
    u, s, vt = backend.svd(a)
    k = min(shape)
    assert u.shape == (shape[0], k) and s.shape == (k,) and vt.shape == (k, shape[1])
    rtol = 1e-10 if dtype == np.float64 else 1e-4
    assert_close((u * s) @ vt, a, rtol=rtol, atol=rtol)
    q, r = backend.qr(a)
    assert q.shape == (shape[0], k) and r.shape == (k, shape[1])
    assert_close(q @ r, a, rtol=rtol, atol=rtol)
    assert_close(q.T @ q, np.eye(k), rtol=rtol, atol=rtol)
    assert np.allclose(np.triu(tt.to_numpy(r)), tt.to_numpy(r))


def test_default_rng_is_seeded():
    a = tt.to_numpy(backend.default_rng(5).random(4))
    b = tt.to_numpy(backend.default_rng(5).random(4))
    np.testing.assert_array_equal(a, b)
    backend.synchronize()  # a no-op on NumPy, a device sync on CuPy


@pytest.mark.skipif(not HAS_CUPY, reason="needs CuPy and a GPU")
def test_mixing_numpy_and_cupy_is_a_type_error():
    import cupy

    host = tt.Tensor(np.ones(3), requires_grad=True)
    dev = tt.Tensor(cupy.ones(3), requires_grad=True)
    with pytest.raises(TypeError, match="different backends"):
        host + dev
    with pytest.raises(TypeError, match="different backends"):
        tt.einsum("i,i->", host, dev)
    with pytest.raises(TypeError, match="different backends"):
        tt.get_xp(np.ones(1), cupy.ones(1))
    with pytest.raises(TypeError, match="different backends"):
        (dev * 2.0).backward(np.ones(3))


# --- GPU parity: the same computation on every available backend agrees with NumPy -----------------
def _parity_inputs():
    rng = np.random.default_rng(3)
    return rng.standard_normal((4, 5)), rng.standard_normal((5, 3)), np.array([0, 2, 2, 1])


PARITY = {
    "matmul_tanh": lambda xp, a, b, ids: tt.tanh(a @ b).sum(),
    "einsum": lambda xp, a, b, ids: tt.einsum("ij,jk->ik", a, b).sum(),
    "take_softmax": lambda xp, a, b, ids: (tt.softmax(tt.take(a, xp.asarray(ids))) * 2.0).sum(),
    "cross_entropy": lambda xp, a, b, ids: tt.cross_entropy(a @ b, xp.asarray(ids[:4] % 3)),
    "getitem_repeat": lambda xp, a, b, ids: (a[xp.asarray(ids)] ** 2).sum(),
    "sigmoid_max": lambda xp, a, b, ids: tt.sigmoid(a).max(axis=1).sum(),
}


@pytest.mark.parametrize("name", sorted(PARITY))
@pytest.mark.parametrize("backend_name", available_backends())
def test_backend_parity(backend_name, name):
    fn = PARITY[name]
    a0, b0, ids = _parity_inputs()
    results = {}
    for bname in ("numpy", backend_name):
        tt.set_backend(bname)
        xp = tt.get_xp()
        a = tt.Tensor(xp.asarray(a0), requires_grad=True)
        b = tt.Tensor(xp.asarray(b0), requires_grad=True)
        out = fn(xp, a, b, ids)
        out.backward()
        assert isinstance(a.grad, xp.ndarray)
        results[bname] = (tt.to_numpy(out), tt.to_numpy(a.grad),
                          None if b.grad is None else tt.to_numpy(b.grad))
    for ref, got in zip(results["numpy"], results[backend_name]):
        if ref is not None:
            assert_close(got, ref, rtol=1e-9, atol=1e-11)


def test_tensor_subclasses_unwrap_like_tensors():
    # a Parameter (Tensor subclass) must convert to its data, not to an object array
    from tinytt.nn import Parameter

    p = Parameter(np.arange(3.0))
    assert backend.is_tensor(p)
    assert tt.to_numpy(p).dtype == np.float64
    assert tt.get_xp(p) is tt.get_xp(p.data)


def test_scatter_add_many_long_segments_use_the_buckets():
    # more long segments than scatter_add sums one by one: the padded buckets take them
    rng = np.random.default_rng(3)
    num_rows = segment_sum._MAX_LONG_SEGMENTS + 20
    ids = rng.permutation(np.repeat(np.arange(num_rows), segment_sum._LONG_SEGMENT + 3))
    values = rng.standard_normal((ids.shape[0], 2))
    expected = np.zeros((num_rows, 2))
    np.add.at(expected, ids, values)
    assert_close(backend.scatter_add(on_device(ids), on_device(values), num_rows), expected, dtype=np.float64)


@given(st.integers(1, 5), st.integers(1, 7), st.integers(1, 9), st.integers(0, 2**31 - 1))
def test_scatter_add_reads_broadcast_values_in_place(batch, time, num_rows, seed):
    # indices (batch, time) and values (batch, time, 3) broadcast along time, as the
    # gradient of a mean over the sequence arrives: same sums as the materialised copy
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, num_rows, (batch, time))
    per_row = rng.standard_normal((batch, 1, 3))
    values = np.broadcast_to(per_row, (batch, time, 3))
    expected = np.zeros((num_rows, 3))
    for b in range(batch):
        for t in range(time):
            expected[ids[b, t]] += per_row[b, 0]
    got = backend.scatter_add(on_device(ids), tt.get_xp().broadcast_to(on_device(per_row), values.shape), num_rows)
    assert_close(got, expected, dtype=np.float64)


def test_scatter_add_rejects_values_of_another_shape():
    with pytest.raises(ValueError, match="must start with the indices' shape"):
        backend.scatter_add(on_device(np.array([0, 1, 1])), on_device(np.ones((4, 2))), 2)


def test_numpy_scalars_count_as_numpy_and_generator_seeds_work_on_other_backends(monkeypatch):
    # numpy.float64 is a subclass of float: it was skipped as a Python scalar, so with CuPy
    # as the default a float64 NumPy reduction got a GPU output
    class FakeBackend:
        class random:
            seeds = []

            @staticmethod
            def default_rng(seed=None):
                FakeBackend.random.seeds.append(seed)
                return seed

    monkeypatch.setitem(backend._state, "xp", FakeBackend)
    assert backend.get_xp(np.float64(2.0)) is np and backend.get_xp(np.float32(2.0)) is np
    assert backend.get_xp(2.0) is FakeBackend
    backend.default_rng(np.random.default_rng(0))    # CuPy cannot take a NumPy Generator
    assert isinstance(FakeBackend.random.seeds[-1], int)


@given(case=scatter_case(), skip_frac=st.floats(0, 0.999))
def test_scatter_add_skip_leaves_that_row_zero(case, skip_frac):
    ids, values, num_rows = case
    skip = int(skip_frac * num_rows)
    expected = np.zeros((num_rows,) + values.shape[1:])
    for k, i in enumerate(ids):
        if i != skip:
            expected[i] += values[k]
    values = values.copy()
    values[ids == skip] = np.nan      # whatever the skipped row's values are, it stays 0
    got = backend.scatter_add(on_device(ids), on_device(values), num_rows, skip=skip)
    assert_close(got, expected, dtype=np.float64)


@given(st.integers(1, 6), st.integers(1, 6), st.integers(1, 5), st.integers(1, 40),
       st.sampled_from(["time", "batch", "both"]), st.booleans(), st.integers(0, 2**31 - 1))
def test_scatter_add_broadcast_gemm_path_matches_dense_loop(batch, time, width, num_rows, axes, skip, seed):
    # values broadcast along one or both lead axes (the GEMM of counts): dense ground truth,
    # with rows that never occur and an optional skipped row
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, num_rows, (batch, time))
    shape = {"time": (batch, 1, width), "batch": (1, time, width), "both": (1, 1, width)}[axes]
    compact = rng.standard_normal(shape)
    values = np.broadcast_to(compact, (batch, time, width))
    skip_row = int(ids[0, 0]) if skip else None
    expected = np.zeros((num_rows, width))
    for b in range(batch):
        for t in range(time):
            if ids[b, t] != skip_row:
                expected[ids[b, t]] += values[b, t]
    xp = tt.get_xp()
    got = backend.scatter_add(on_device(ids), xp.broadcast_to(on_device(compact), values.shape), num_rows,
                              skip=skip_row)
    assert got.shape == (num_rows, width)
    assert_close(got, expected, dtype=np.float64)


def test_segment_sum_broadcast_path_is_taken_and_exact_for_counts():
    # a (64, 200) batch whose values are ONE row broadcast everywhere: the count GEMM runs
    # (not the gathers) and each sum is one multiply, exactly count * value -- where
    # adding 0.1 count times in float32 would drift
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 50, (64, 200))
    values = np.broadcast_to(np.full((1, 1, 8), 0.1, np.float32), (64, 200, 8))
    counts = np.bincount(ids.reshape(-1), minlength=50)
    direct = segment_sum._broadcast_sum(ids, values, 50, counts, None)
    assert direct is not None
    np.testing.assert_array_equal(direct, (counts.astype(np.float32)[:, None] * np.float32(0.1)) * np.ones(8, np.float32))
    # too many distinct rows per index: falls back to the gathers (None)
    wide = rng.integers(0, 10**6, (64, 200))
    per_sequence = np.broadcast_to(np.ones((64, 1, 8), np.float32), (64, 200, 8))
    counts = np.bincount(wide.reshape(-1), minlength=10**6)
    assert segment_sum._broadcast_sum(wide, per_sequence, 10**6, counts, None) is None


class _NanEmptyNumpy:
    """NumPy, except that ``empty`` returns NaN-filled arrays: memory a buggy zero-fill
    would leave behind is then visible."""

    def __getattr__(self, name):
        return getattr(np, name)

    @staticmethod
    def empty(shape, dtype=float, **kwargs):
        return np.full(shape, np.nan, dtype=dtype)


@pytest.mark.parametrize("threads", ["1", "2", "3"])
@pytest.mark.parametrize("materialised", [True, False])
def test_segment_sum_large_sparse_output_zero_filled_by_all_cores(monkeypatch, threads, materialised):
    # few of the rows occur: the rest must be exactly zero, also when several cores fill them
    monkeypatch.setenv("TINYTT_NUM_THREADS", threads)
    monkeypatch.setattr(segment_sum, "_PARALLEL_ZERO_MIN", 256)
    monkeypatch.setattr(segment_sum, "numpy", _NanEmptyNumpy())
    rng = np.random.default_rng(4)
    ids = rng.integers(0, 997, size=(6, 40))
    values = rng.standard_normal((6, 40, 8))
    if not materialised:   # a mean over tokens: the broadcast (GEMM) path
        values = np.broadcast_to(values[:, :1], values.shape)
    got = segment_sum.segment_sum(ids, values, 997)
    expected = np.zeros((997, 8))
    np.add.at(expected, ids.reshape(-1), values.reshape(-1, 8))
    assert not np.isnan(got).any()
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("materialised", [True, False])
def test_segment_sum_bit_identical_for_any_thread_count(monkeypatch, materialised):
    # jobs dealt to threads write disjoint rows with the same operations: same bits
    rng = np.random.default_rng(1)
    ids = np.concatenate([rng.integers(0, 3000, 20000), np.zeros(3000, np.int64), np.full(500, 7)])
    ids = rng.permutation(ids).reshape(47, 500)
    values = rng.standard_normal((47, 500, 64)).astype(np.float32)
    if not materialised:
        values = np.broadcast_to(values[:, :1], values.shape)
    results = []
    for threads in ("1", "2", "3"):
        monkeypatch.setenv("TINYTT_NUM_THREADS", threads)
        results.append(segment_sum.segment_sum(ids, values, 3000, skip=7))
    for other in results[1:]:
        np.testing.assert_array_equal(other, results[0])
    expected = np.zeros((3000, 64))
    magnitude = np.zeros((3000, 64))
    np.add.at(expected, ids.reshape(-1), values.reshape(-1, 64).astype(np.float64))
    np.add.at(magnitude, ids.reshape(-1), np.abs(values.reshape(-1, 64)).astype(np.float64))
    expected[7] = 0
    # float32 sums of up to 3,000 terms: error bounded by a multiple of eps * sum |terms|
    assert np.all(np.abs(results[0] - expected) <= 64 * np.finfo(np.float32).eps * magnitude + 1e-30)


@given(st.integers(1, 30), st.lists(st.integers(1, 4), max_size=2), st.sampled_from([(7,), (3, 5), (2, 1, 4), (0,)]),
       st.sampled_from(["1", "2", "3"]), st.booleans(), st.booleans(), st.integers(0, 2**31 - 1))
def test_take_rows_equals_take_for_any_split(n_rows, rest, index_shape, threads, split, given_out, seed):
    # forced split (threshold 0) or none, over 1-3 threads, into a new array or a given
    # one: the same array as numpy.take
    rng = np.random.default_rng(seed)
    src = rng.standard_normal((n_rows,) + tuple(rest)).astype(np.float32)
    index = rng.integers(0, n_rows, index_shape)
    old_env = os.environ.get("TINYTT_NUM_THREADS")
    old = backend._PARALLEL_TAKE_BYTES
    os.environ["TINYTT_NUM_THREADS"] = threads
    backend._PARALLEL_TAKE_BYTES = 0 if split else old
    out = tt.get_xp().full(tuple(index_shape) + tuple(rest), np.nan, dtype=np.float32) if given_out else None
    try:
        got = backend.take_rows(on_device(src), on_device(index), out=out)
    finally:
        backend._PARALLEL_TAKE_BYTES = old
        if old_env is None:
            del os.environ["TINYTT_NUM_THREADS"]
        else:
            os.environ["TINYTT_NUM_THREADS"] = old_env
    expected = src[index]
    assert got.shape == expected.shape and got.dtype == expected.dtype
    np.testing.assert_array_equal(tt.to_numpy(got), expected)
    if given_out:
        assert got is out


@pytest.mark.parametrize("split", [False, True])
def test_take_rows_into_out_checks_out_and_indices(monkeypatch, split):
    monkeypatch.setenv("TINYTT_NUM_THREADS", "2")
    if split:
        monkeypatch.setattr(backend, "_PARALLEL_TAKE_BYTES", 0)
    src = on_device(np.arange(40.0).reshape(10, 4))
    xp = tt.get_xp()
    for bad, says in ((xp.empty((3, 5)), "got shape \\(3, 5\\)"), (xp.empty((3, 4), dtype=np.float32), "dtype float32"),
                      (xp.empty((4, 3)).T, "C-contiguous False")):
        with pytest.raises(ValueError, match="take_rows: out must be a C-contiguous array of shape .*" + says):
            backend.take_rows(src, on_device(np.array([1, 2, 3])), out=bad)
    with pytest.raises(TypeError, match="take_rows: out must be None or an array, got list"):
        backend.take_rows(src, on_device(np.array([1, 2, 3])), out=[[0.0] * 4] * 3)
    out = xp.empty((4, 4))
    got = backend.take_rows(src, on_device(np.array([-1, 2, 3, 4])), out=out)   # wraps like numpy.take
    np.testing.assert_array_equal(tt.to_numpy(got), np.take(np.arange(40.0).reshape(10, 4), [-1, 2, 3, 4], axis=0))
    if tt.get_backend() == "numpy":
        with pytest.raises(IndexError):
            backend.take_rows(src, np.array([0, 12, 2, 3]), out=out)
        # out overlapping src: the rows as they were before the call
        table = np.arange(40.0).reshape(10, 4)
        index = np.array([9, 8, 7, 6, 5, 4, 3, 2, 1, 0])
        np.testing.assert_array_equal(backend.take_rows(table, index, out=table), np.arange(40.0).reshape(10, 4)[::-1])


def test_scatter_add_broadcast_inf_and_nan_stay_in_their_own_rows():
    # a GEMM of counts would compute 0 * inf = nan for rows the inf never reaches
    ids = np.array([[0, 0, 1], [2, 2, 2]])
    per_row = np.array([[[np.inf, 1.0]], [[2.0, np.nan]]])
    values = np.broadcast_to(per_row, (2, 3, 2))
    got = tt.to_numpy(backend.scatter_add(on_device(ids), tt.get_xp().broadcast_to(on_device(per_row), (2, 3, 2)), 4))
    expected = np.array([[np.inf, 2.0], [np.inf, 1.0], [6.0, np.nan], [0.0, 0.0]])
    np.testing.assert_array_equal(got, expected)
    assert values.strides[1] == 0


@pytest.mark.parametrize("broadcast", [False, True])
def test_scatter_add_float16_sums_accumulate_in_float32(broadcast):
    # 76,800 float16 terms of 1/76,800 onto one row: ~1.0, not a stalled float16 sum
    # (0.03125) or an inf count in a float16 GEMM
    ids = np.full((128, 600), 5)
    compact = np.full((1, 1, 2), 1 / 76800, dtype=np.float16)
    values = np.broadcast_to(compact, (128, 600, 2))
    if not broadcast:
        values = np.ascontiguousarray(values)
    xp = tt.get_xp()
    dev = xp.broadcast_to(on_device(compact), values.shape) if broadcast else on_device(values)
    got = tt.to_numpy(backend.scatter_add(on_device(ids), dev, 10))
    assert got.dtype == np.float16
    expected = 76800 * float(np.float16(1 / 76800))
    np.testing.assert_allclose(got[5].astype(np.float64), expected, rtol=2e-3)
    assert not got[[0, 1, 2, 3, 4, 6, 7, 8, 9]].any()


def test_scatter_add_integer_sums_wrap_like_add_at():
    ids = np.zeros(100, dtype=np.int64)
    for dtype in (np.int8, np.int16):
        values = np.full(100, 3, dtype=dtype)
        expected = np.zeros(1, dtype=dtype)
        np.add.at(expected, ids, values)
        if tt.get_backend() == "numpy":
            np.testing.assert_array_equal(backend.scatter_add(ids, values, 1), expected)


def test_take_rows_invalid_indices_behave_like_numpy_take(monkeypatch):
    monkeypatch.setenv("TINYTT_NUM_THREADS", "2")
    monkeypatch.setattr(backend, "_PARALLEL_TAKE_BYTES", 0)
    src = np.arange(40.0).reshape(10, 4)
    np.testing.assert_array_equal(backend.take_rows(src, np.array([-1, 2, 3, 4])), np.take(src, [-1, 2, 3, 4], axis=0))
    with pytest.raises(IndexError):
        backend.take_rows(src, np.array([0, 12, 2, 3]))
    np.testing.assert_array_equal(backend.take_rows(src, [1, 2, 3]), src[[1, 2, 3]])
    assert segment_sum.segment_sum(np.zeros(0, np.int64), np.zeros((0, 3)), 0).shape == (0, 3)


@given(st.integers(1, 6), st.integers(1, 7), st.integers(1, 12), st.integers(0, 2**31 - 1))
def test_scatter_add_reads_permuted_views_in_memory_order(batch, time, num_rows, seed):
    # a (batch, time, D) view of a time-major (time, batch, D) array, as an LSTM hands its
    # input gradient to the embedding: same sums as the contiguous copy
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, num_rows, (batch, time))
    time_major = rng.integers(-50, 50, (time, batch, 3)).astype(np.float64)
    view = time_major.transpose(1, 0, 2)
    expected = np.zeros((num_rows, 3))
    np.add.at(expected, ids.reshape(-1), np.ascontiguousarray(view).reshape(-1, 3))
    got = backend.scatter_add(on_device(ids), on_device(time_major).transpose(1, 0, 2), num_rows)
    np.testing.assert_array_equal(tt.to_numpy(got), expected)   # integers in float64: exact
    if tt.get_backend() == "numpy" and batch > 1 and time > 1:
        assert segment_sum._memory_order(view, 2) == (1, 0)
        assert segment_sum._memory_order(np.ascontiguousarray(view), 2) is None


def test_scatter_add_of_float16_sums_in_float32():
    # 5,000 x 0.01 into one row: a float16 accumulator stalls at 32. On NumPy this checks
    # segment_sum; it is the CuPy atomic-add path (TINYTT_BACKEND=cupy) that summed in float16
    values = on_device(np.full((5000, 2), 0.01, dtype=np.float16))
    ids = on_device(np.zeros(5000, dtype=np.int64))
    out = backend.scatter_add(ids, values, 3)
    assert out.dtype == np.float16
    assert abs(float(tt.to_numpy(out)[0, 0]) - 50.0) < 0.1 and not tt.to_numpy(out)[1:].any()


def test_take_rows_refuses_a_numpy_cupy_mix():
    if "cupy" not in available_backends():
        pytest.skip("needs CuPy and a GPU to mix backends")
    import cupy  # noqa: PLC0415

    with pytest.raises(TypeError):
        backend.take_rows(np.ones((3, 2)), cupy.asarray([0, 1]))


def test_backend_is_the_only_module_that_imports_cupy():
    """The foundation's contract: CuPy is known to tinytt/backend.py alone (cupyx included)."""
    import ast
    import pathlib

    root = pathlib.Path(tt.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n.split(".")[0] in ("cupy", "cupyx") for n in names):
                offenders.append(f"{path.relative_to(root)}:{node.lineno}")
    assert offenders and all(o.startswith("backend.py:") for o in offenders), offenders


def test_scatter_add_of_zero_width_rows_is_zeros():
    # values (K, 0) with K > 0: the CuPy branch reshaped them to (-1, 0), which raises
    out = backend.scatter_add(on_device(np.array([0, 2])), on_device(np.zeros((2, 0))), 3)
    assert tuple(out.shape) == (3, 0)
    w = tt.Tensor(on_device(np.zeros((4, 0))), requires_grad=True)
    tt.take(w, on_device(np.array([1, 1, 2]))).sum().backward()
    assert tuple(w.grad.shape) == (4, 0)


@pytest.mark.parametrize("lead", [(2, 0), (0, 2), (0,)])
def test_segment_sum_of_empty_multidimensional_indices_is_zeros(lead):
    # (2, 0) and (0, 2) indices raised "cannot reshape array of size 0" from inside
    out = segment_sum.segment_sum(np.zeros(lead, np.int64), np.ones(lead + (3,), np.float32), 4)
    assert out.shape == (4, 3) and out.dtype == np.float32 and not out.any()
    with pytest.raises(ValueError, match="must start with the indices' shape"):
        segment_sum.segment_sum(np.zeros((2,), np.int64), np.ones((3, 3)), 4)
