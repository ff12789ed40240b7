"""The fused TT-matrix row lookup against dense ground truth, for every strategy."""

import numpy
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinytt as tt
from tinytt.testing import assert_close, check_grads
from tinytt.tt import lookup as lookup_module
from tinytt.tt.lookup import STRATEGIES, estimate_costs, plan_lookup, tt_matrix_rows

from conftest import assert_same_runs

# every strategy, plus the prefix strategy forced into each of its two level modes
VARIANTS = [(s, None) for s in STRATEGIES] + [("prefix", "select"), ("prefix", "expand"), ("auto", None)]


class select_kernel:
    """Context manager forcing select levels to per-digit GEMMs ("grouped") or to one
    small matmul per node ("batched")."""

    def __init__(self, kind):
        self.value = {"grouped": 1, "batched": 10**9}[kind]

    def __enter__(self):
        self.old = lookup_module.GROUP_MIN_NODES_PER_DIGIT
        lookup_module.GROUP_MIN_NODES_PER_DIGIT = self.value

    def __exit__(self, *exc):
        lookup_module.GROUP_MIN_NODES_PER_DIGIT = self.old


def dense_tt_matrix(cores):
    """V' x D matrix of NumPy cores by explicit index loops over digits (no shared code)."""
    row_shape = [c.shape[1] for c in cores]
    col_shape = [c.shape[2] for c in cores]
    n_rows, n_cols = int(numpy.prod(row_shape)), int(numpy.prod(col_shape))
    out = numpy.empty((n_rows, n_cols), dtype=numpy.float64)
    for i in range(n_rows):
        ri = numpy.unravel_index(i, row_shape)
        for j in range(n_cols):
            cj = numpy.unravel_index(j, col_shape)
            m = numpy.ones((1, 1))
            for k, c in enumerate(cores):
                m = m @ c[:, ri[k], cj[k], :]
            out[i, j] = m[0, 0]
    return out


def random_cores(rng, row_shape, col_shape, ranks):
    """(host cores, their dense matrix, the cores on the backend under test) of a random TT-matrix."""
    cores = [rng.standard_normal((ranks[k], row_shape[k], col_shape[k], ranks[k + 1])) for k in range(len(row_shape))]
    return cores, dense_tt_matrix(cores), [tt.to_device(c) for c in cores]


@st.composite
def tt_matrix_and_ids(draw, max_cores=6):
    n = draw(st.integers(2, max_cores))
    budget = 4 if n <= 3 else 2
    row_shape = [draw(st.integers(1, budget + 1)) for _ in range(n)]
    col_shape = [draw(st.integers(1, budget)) for _ in range(n)]
    ranks = [1] + [draw(st.integers(1, 3)) for _ in range(n - 1)] + [1]
    seed = draw(st.integers(0, 2**31 - 1))
    rng = numpy.random.default_rng(seed)
    cores = [rng.standard_normal((ranks[k], row_shape[k], col_shape[k], ranks[k + 1])) for k in range(n)]
    n_rows = int(numpy.prod(row_shape))
    id_shape = draw(st.sampled_from([(5,), (2, 3), (3, 1, 2)]))
    ids = rng.integers(0, n_rows, size=id_shape)
    ids.reshape(-1)[0] = ids.reshape(-1)[-1]  # always at least one repeat
    return cores, ids


@given(tt_matrix_and_ids())
def test_rows_equal_dense_rows_for_every_strategy(case):
    cores, ids = case
    dense = dense_tt_matrix(cores)
    device_cores = [tt.to_device(c) for c in cores]
    for (strategy, mode), kernel in ((v, k) for v in VARIANTS for k in ("grouped", "batched")):
        with select_kernel(kernel):
            out = tt_matrix_rows(device_cores, tt.to_device(ids), [c.shape[1] for c in cores],
                                 [c.shape[2] for c in cores], strategy=strategy, mode=mode)
        assert out.shape == ids.shape + (dense.shape[1],)
        assert_close(out, dense[ids], rtol=1e-10, atol=1e-12, err_msg=f"{strategy}/{mode}/{kernel}")


@given(tt_matrix_and_ids(max_cores=4))
def test_core_gradients_equal_dense_path(case):
    cores, ids = case
    rng = numpy.random.default_rng(1)
    row_shape, col_shape = [c.shape[1] for c in cores], [c.shape[2] for c in cores]
    upstream = tt.to_device(rng.standard_normal(ids.shape + (int(numpy.prod(col_shape)),)))
    # dense path: full matrix through the autodiff, then integer-array indexing
    leaves = [tt.Tensor(tt.to_device(c), requires_grad=True) for c in cores]
    tt.TTMatrix(leaves).full()[tt.to_device(ids)].backward(upstream)
    expected = [leaf.grad for leaf in leaves]
    for (strategy, mode), kernel in ((v, k) for v in VARIANTS for k in ("grouped", "batched")):
        leaves = [tt.Tensor(tt.to_device(c), requires_grad=True) for c in cores]
        with select_kernel(kernel):
            tt_matrix_rows(leaves, tt.to_device(ids), row_shape, col_shape, strategy=strategy,
                           mode=mode).backward(upstream)
        for k, (leaf, want) in enumerate(zip(leaves, expected)):
            assert leaf.grad.shape == want.shape
            assert_close(leaf.grad, want, rtol=1e-9, atol=1e-10, err_msg=f"core {k}, {strategy}/{mode}/{kernel}")


@pytest.mark.parametrize("strategy,mode", VARIANTS)
def test_check_grads_with_padding(strategy, mode):
    rng = numpy.random.default_rng(3)
    row_shape, col_shape, ranks = (3, 2, 4), (2, 3, 2), (1, 2, 3, 1)
    cores = [tt.to_device(rng.standard_normal((ranks[k], row_shape[k], col_shape[k], ranks[k + 1]))) for k in range(3)]
    ids = tt.to_device(numpy.array([[0, 5, 5], [23, 7, 0]]))
    check_grads(lambda *cs: tt_matrix_rows(list(cs), ids, row_shape, col_shape, strategy=strategy, padding_idx=5,
                                           mode=mode), *cores)


def test_padding_rows_are_zero_and_get_no_gradient():
    rng = numpy.random.default_rng(4)
    cores = [rng.standard_normal((1, 4, 2, 2)), rng.standard_normal((2, 5, 3, 1))]
    ids = numpy.array([3, 7, 3, 19])
    for strategy in STRATEGIES:
        leaves = [tt.Tensor(tt.to_device(c), requires_grad=True) for c in cores]
        out = tt_matrix_rows(leaves, tt.to_device(ids), (4, 5), (2, 3), strategy=strategy, padding_idx=3)
        assert numpy.all(tt.to_numpy(out)[[0, 2]] == 0)
        out.backward(tt.to_device(numpy.ones(out.shape)))
        # the same gradient as a lookup of the non-padding ids only
        ref = [tt.Tensor(tt.to_device(c), requires_grad=True) for c in cores]
        tt_matrix_rows(ref, tt.to_device(ids[[1, 3]]), (4, 5), (2, 3)).backward(tt.to_device(numpy.ones((2, 6))))
        for a, b in zip(leaves, ref):
            assert_close(a.grad, b.grad, rtol=1e-12, atol=1e-12)


def test_gradients_only_at_digits_that_occur():
    rng = numpy.random.default_rng(5)
    cores = [tt.Tensor(tt.to_device(rng.standard_normal(s)), requires_grad=True)
             for s in [(1, 4, 2, 3), (3, 5, 2, 2), (2, 6, 2, 1)]]
    ids = numpy.array([0 * 30 + 1 * 6 + 2, 3 * 30 + 1 * 6 + 5])  # digits (0,1,2) and (3,1,5)
    tt_matrix_rows(cores, tt.to_device(ids), (4, 5, 6), (2, 2, 2)).backward(tt.to_device(numpy.ones((2, 8))))
    touched = [{0, 3}, {1}, {2, 5}]
    for core, digits in zip(cores, touched):
        grad = tt.to_numpy(core.grad)
        for digit in range(grad.shape[1]):
            assert (numpy.abs(grad[:, digit]).max() > 0) == (digit in digits)


def test_float32_stays_float32():
    rng = numpy.random.default_rng(6)
    cores = [tt.Tensor(tt.to_device(rng.standard_normal(s).astype(numpy.float32)), requires_grad=True)
             for s in [(1, 5, 4, 3), (3, 6, 2, 1)]]
    out = tt_matrix_rows(cores, tt.to_device(numpy.array([1, 2, 29])), (5, 6), (4, 2))
    assert out.dtype == numpy.float32
    out.backward(tt.to_device(numpy.ones(out.shape, dtype=numpy.float32)))
    assert all(c.grad.dtype == numpy.float32 for c in cores)


def test_bad_ids_and_strategy():
    cores = [tt.to_device(numpy.ones((1, 2, 2, 1)))] * 2
    with pytest.raises(TypeError, match="integer"):
        tt_matrix_rows(cores, tt.to_device(numpy.array([0.5])), (2, 2), (2, 2))
    with pytest.raises(IndexError, match=r"\[0, 4\)"):
        tt_matrix_rows(cores, tt.to_device(numpy.array([4])), (2, 2), (2, 2))
    with pytest.raises(IndexError):
        tt_matrix_rows(cores, tt.to_device(numpy.array([-1])), (2, 2), (2, 2))
    with pytest.raises(ValueError, match="strategy"):
        tt_matrix_rows(cores, tt.to_device(numpy.array([1])), (2, 2), (2, 2), strategy="fastest")


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int16", "uint16", "int32", "uint32", "uint64"])
def test_narrow_and_unsigned_id_dtypes_give_the_int64_rows_and_gradients(dtype):
    # the plan's digit codes and sort keys (digit * parents + parent) exceed int8/int16:
    # they must not wrap around in the ids' own dtype (they did under "gather")
    rng = numpy.random.default_rng(7)
    row_shape, col_shape, ranks = (5, 6, 9), (2, 2, 2), (1, 2, 2, 1)
    cores, dense, dev_cores = random_cores(rng, row_shape, col_shape, ranks)
    high = min(int(numpy.iinfo(dtype).max) + 1, dense.shape[0])
    ids = rng.integers(0, high, 300)
    upstream = tt.to_device(rng.standard_normal((300, 8)))
    for strategy, mode in VARIANTS:
        leaves = [tt.Tensor(tt.to_device(c), requires_grad=True) for c in cores]
        out = tt_matrix_rows(leaves, tt.to_device(ids.astype(dtype)), row_shape, col_shape, strategy=strategy, mode=mode)
        assert_close(out, dense[ids], rtol=1e-10, atol=1e-12, err_msg=f"{dtype} {strategy}/{mode}")
        out.backward(upstream)
        ref = [tt.Tensor(tt.to_device(c), requires_grad=True) for c in cores]
        tt_matrix_rows(ref, tt.to_device(ids), row_shape, col_shape, strategy=strategy, mode=mode).backward(upstream)
        for a, b in zip(leaves, ref):
            assert_close(a.grad, b.grad, rtol=1e-12, atol=1e-12, err_msg=f"{dtype} {strategy}/{mode}")


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_int16_ids_over_a_large_vocabulary(strategy):
    # 15,000 distinct int16 ids < 30,000: sort keys digit * parents + parent overflow int16
    rng = numpy.random.default_rng(9)
    row_shape, col_shape, ranks = (25, 30, 40), (2, 2, 2), (1, 2, 2, 1)
    cores = [tt.to_device(rng.standard_normal((ranks[k], row_shape[k], col_shape[k], ranks[k + 1]))) for k in range(3)]
    ids = numpy.arange(0, 30000, 2)
    full = tt.to_numpy(tt.TTMatrix([tt.Tensor(c) for c in cores]).full().data)
    out = tt_matrix_rows(cores, tt.to_device(ids.astype(numpy.int16)), row_shape, col_shape, strategy=strategy)
    assert_close(out, full[ids], rtol=1e-10, atol=1e-12)


def test_backward_twice_recomputes_and_never_shares_gradient_arrays():
    # a second backward() of the same output with the same array changed in place must see
    # the new values (the VJPs once cached their result by the gradient's identity)
    rng = numpy.random.default_rng(8)
    cores = [tt.Tensor(tt.to_device(rng.standard_normal(s)), requires_grad=True) for s in [(1, 4, 2, 3), (3, 5, 2, 1)]]
    out = tt_matrix_rows(cores, tt.to_device(numpy.array([1, 7, 7, 19])), (4, 5), (2, 2))
    upstream = tt.to_device(rng.standard_normal((4, 4)))
    out.backward(upstream)
    first = [tt.to_numpy(c.grad).copy() for c in cores]
    first_arrays = [c.grad for c in cores]
    for c in cores:
        c.grad = None
    upstream *= 2
    out.backward(upstream)
    for c, want, old in zip(cores, first, first_arrays):
        assert_close(c.grad, 2 * want, rtol=1e-12, atol=1e-12)
        assert c.grad is not old
    # only some cores trainable: still one fresh pass per backward()
    cores[0].requires_grad = False
    cores[1].grad = None
    out.backward(upstream)
    assert_close(cores[1].grad, 2 * first[1], rtol=1e-12, atol=1e-12)


def test_arguments_are_checked_against_the_cores():
    cores = [tt.to_device(numpy.ones((1, 2, 2, 1)))] * 2
    ids = tt.to_device(numpy.array([1]))
    for bad in (-1, 4, "1", 1.0, True):
        with pytest.raises(ValueError, match="padding_idx"):
            tt_matrix_rows(cores, ids, (2, 2), (2, 2), padding_idx=bad)
    with pytest.raises(ValueError, match="row_shape"):
        tt_matrix_rows(cores, ids, (4, 1), (2, 2))   # same V', different digits: was silently wrong
    with pytest.raises(ValueError, match="col_shape"):
        tt_matrix_rows(cores, ids, (2, 2), (4, 1))
    with pytest.raises(ValueError, match="row_shape"):
        tt_matrix_rows(cores, ids, (2, 2, 1), (2, 2, 1))
    with pytest.raises(ValueError, match="strategy"):
        tt_matrix_rows(cores, tt.to_device(numpy.zeros(0, dtype=numpy.int64)), (2, 2), (2, 2), strategy="nope")


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_cores_are_checked_as_a_tt_matrix(strategy):
    """Boundary ranks other than 1 were read silently (r_0 = 2 used the first slice, r_N = 3
    widened the rows to 3 D); mixed or integer dtypes came out promoted or as integers."""
    ids = tt.to_device(numpy.array([0, 3]))
    rng = numpy.random.default_rng(0)

    def core(*shape, dtype=numpy.float64):
        return tt.to_device(rng.standard_normal(shape).astype(dtype))

    cases = [
        ([core(2, 2, 3, 2), core(2, 2, 2, 1)], ValueError, "boundary ranks"),
        ([core(1, 2, 3, 2), core(2, 2, 2, 3)], ValueError, "boundary ranks"),
        ([core(1, 2, 3, 2), core(1, 2, 2, 1)], ValueError, "rank mismatch"),
        ([core(1, 2, 3, 2, dtype=numpy.float32), core(2, 2, 2, 1)], TypeError, "dtype"),
        ([tt.to_device(numpy.ones((1, 2, 3, 2), dtype=numpy.int64)),
          tt.to_device(numpy.ones((2, 2, 2, 1), dtype=numpy.int64))], TypeError, "floating"),
    ]
    for cores, exc, needle in cases:
        with pytest.raises(exc, match=f"tt_matrix_rows: .*{needle}"):
            tt_matrix_rows(cores, ids, (2, 2), (3, 2), strategy=strategy)


def test_cost_model_prefers_sharing_for_clustered_ids_and_full_for_dense_batches():
    row_shape, col_shape, ranks = (25, 30, 40), (4, 8, 8), (1, 16, 16, 1)
    few = numpy.array([3, 17, 41, 1000])
    assert plan_lookup(few, row_shape, col_shape, ranks).strategy != "full"
    everything = numpy.arange(30000)
    costs = estimate_costs(everything, row_shape, col_shape, ranks)
    assert costs["full"] < costs["gather"]
    assert plan_lookup(everything, row_shape, col_shape, ranks).strategy in ("full", "prefix")


@given(bound=st.integers(1, 3000), data=st.data())
def test_unique_inverse_matches_numpy_unique_on_both_paths(bound, data):
    from tinytt.tt import lookup

    ids = numpy.asarray(data.draw(st.lists(st.integers(0, bound - 1), min_size=1, max_size=300)),
                        dtype=numpy.int64)
    want_u, want_inv = numpy.unique(ids, return_inverse=True)
    old = lookup._MARK_TABLE_LIMIT
    try:
        for limit in (old, 0):  # the marking table, then (limit 0, small bound) the sort
            lookup._MARK_TABLE_LIMIT = limit
            u, inv = lookup._unique_inverse(ids, bound if limit else 10**9, numpy)
            assert u.dtype == ids.dtype
            assert numpy.array_equal(u, want_u) and numpy.array_equal(inv, want_inv.reshape(-1))
            assert numpy.array_equal(u[inv], ids)
    finally:
        lookup._MARK_TABLE_LIMIT = old


@pytest.mark.parametrize("strategy", ["prefix", "gather"])
@pytest.mark.parametrize("threshold", [3, 6, 12])
@pytest.mark.parametrize("row_shape", [(2, 3, 6, 4), (2, 3, 4, 40)])
def test_mixed_per_digit_and_batched_levels_match_dense(strategy, threshold, row_shape):
    # many ids: some levels run per digit (their nodes are relabelled digit-major by the
    # plan), others as batched matmuls, in either order (the second shape ends with a level
    # of few nodes per digit); padding sits somewhere in the order
    rng = numpy.random.default_rng(threshold)
    col_shape, ranks = (2, 1, 2, 2), (1, 2, 3, 2, 1)
    cores = [rng.standard_normal((ranks[k], row_shape[k], col_shape[k], ranks[k + 1])) for k in range(4)]
    ids = rng.integers(0, int(numpy.prod(row_shape)), (6, 25))
    pad = int(ids[2, 3])
    dense = dense_tt_matrix(cores)
    upstream = rng.standard_normal(ids.shape + (8,))
    leaves = [tt.Tensor(tt.to_device(c), requires_grad=True) for c in cores]
    tt.TTMatrix(leaves).full()[tt.to_device(numpy.where(ids == pad, 0, ids))].backward(
        tt.to_device(numpy.where((ids == pad)[..., None], 0.0, upstream)))
    # the dense path above with the padding rows' gradient removed, except row 0's own use
    expected_rows = numpy.where((ids == pad)[..., None], 0.0, dense[ids])
    old = lookup_module.GROUP_MIN_NODES_PER_DIGIT
    lookup_module.GROUP_MIN_NODES_PER_DIGIT = threshold
    try:
        plan = plan_lookup(ids.reshape(-1), row_shape, col_shape, list(ranks), strategy, "select")
        kinds = {lv.spans is not None for lv in plan.levels[1:]}
        got_leaves = [tt.Tensor(tt.to_device(c), requires_grad=True) for c in cores]
        out = tt_matrix_rows(got_leaves, tt.to_device(ids), row_shape, col_shape, strategy=strategy,
                             padding_idx=pad, mode="select")
        out.backward(tt.to_device(upstream))
    finally:
        lookup_module.GROUP_MIN_NODES_PER_DIGIT = old
    assert_close(out, expected_rows, rtol=1e-10, atol=1e-12)
    want = [leaf.grad for leaf in leaves]
    for k, (leaf, w) in enumerate(zip(got_leaves, want)):
        assert_close(leaf.grad, w, rtol=1e-9, atol=1e-10, err_msg=f"core {k}, levels per digit: {kinds}")


@pytest.mark.parametrize("strategy", ["prefix", "gather", "auto"])
def test_threaded_per_digit_levels_match_dense_and_one_thread_bit_for_bit(monkeypatch, strategy):
    # the per-digit forward jobs and the threaded segment sum, forced on for a small batch:
    # dense ground truth, and the same bits as with one thread (on NumPy; CuPy has no threads
    # here, and its scatter_add's atomic adds agree between two runs only to rounding)
    monkeypatch.setattr(lookup_module, "PARALLEL_MIN_MADDS", 0)
    monkeypatch.setattr(tt.segment_sum, "_PARALLEL_MIN_FLOATS", 0)
    rng = numpy.random.default_rng(5)
    row_shape, col_shape, ranks = (5, 6, 7), (2, 3, 2), (1, 3, 4, 1)
    cores = [rng.standard_normal((ranks[k], row_shape[k], col_shape[k], ranks[k + 1])) for k in range(3)]
    ids = rng.integers(0, 210, (8, 50))
    upstream = rng.standard_normal(ids.shape + (12,))
    dense = dense_tt_matrix(cores)
    results = []
    for threads in ("1", "2"):
        monkeypatch.setenv("TINYTT_NUM_THREADS", threads)
        leaves = [tt.Tensor(tt.to_device(c), requires_grad=True) for c in cores]
        with select_kernel("grouped"):
            out = tt_matrix_rows(leaves, tt.to_device(ids), row_shape, col_shape, strategy=strategy)
            out.backward(tt.to_device(upstream))
        results.append((tt.to_numpy(out), [tt.to_numpy(leaf.grad) for leaf in leaves]))
    assert_close(results[1][0], dense[ids], rtol=1e-10, atol=1e-12)
    for a, b in zip([results[0][0]] + results[0][1], [results[1][0]] + results[1][1]):
        assert_same_runs(b, a)
    # core gradients against the dense path through the autodiff
    leaves = [tt.Tensor(tt.to_device(c), requires_grad=True) for c in cores]
    tt.TTMatrix(leaves).full()[tt.to_device(ids)].backward(tt.to_device(upstream))
    for got, leaf in zip(results[1][1], leaves):
        assert_close(got, leaf.grad, rtol=1e-9, atol=1e-10)


class _PlanCounter:
    """Counts the calls of ``plan_lookup`` behind ``cached_plan`` (the cache's misses)."""

    def __init__(self, monkeypatch):
        self.calls = 0
        real = lookup_module.plan_lookup

        def counted(*args, **kwargs):
            self.calls += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(lookup_module, "plan_lookup", counted)


def test_plan_cache_reuses_plans_only_for_equal_ids(monkeypatch):
    rng = numpy.random.default_rng(11)
    row_shape, col_shape, ranks = (3, 4, 5), (2, 2, 1), (1, 2, 3, 1)
    _, dense, dev_cores = random_cores(rng, row_shape, col_shape, ranks)
    lookup_module.plan_cache_clear()
    counter = _PlanCounter(monkeypatch)

    def rows(ids):
        return tt.to_numpy(tt_matrix_rows(dev_cores, tt.to_device(ids), row_shape, col_shape).data)

    ids = rng.integers(0, 60, (4, 9))
    first = rows(ids)
    assert counter.calls == 1
    again = rows(ids.copy())            # equal ids in another buffer: the cached plan
    assert counter.calls == 1 and lookup_module.plan_cache_info().hits == 1
    numpy.testing.assert_array_equal(again, first)
    assert_close(first, dense[ids], rtol=1e-12, atol=1e-14)
    # same ends, different middle: a new plan, right rows
    other = ids.copy()
    other[1, 4] = (other[1, 4] + 1) % 60
    assert_close(rows(other), dense[other], rtol=1e-12, atol=1e-14)
    assert counter.calls == 2
    # the caller changing its buffer after the lookup cannot corrupt the cached plan
    buffer = rng.integers(0, 60, (4, 9))
    rows(buffer)                        # a new batch: planned and cached
    buffer[1:3] = (buffer[1:3] + 1 + rng.integers(0, 58, (2, 9))) % 60   # new middle, same ends
    assert_close(rows(buffer), dense[buffer], rtol=1e-12, atol=1e-14)
    assert_close(rows(ids), dense[ids], rtol=1e-12, atol=1e-14)
    # another layout or strategy never shares a plan
    calls = counter.calls
    tt_matrix_rows(dev_cores, tt.to_device(ids), row_shape, col_shape, strategy="gather")
    assert counter.calls == calls + 1


def test_plan_cache_is_bounded_and_can_be_switched_off(monkeypatch):
    rng = numpy.random.default_rng(12)
    row_shape, col_shape, ranks = (4, 5), (2, 2), (1, 2, 1)
    _, _, cores = random_cores(rng, row_shape, col_shape, ranks)
    lookup_module.plan_cache_clear()
    batches = [rng.integers(0, 20, 7) for _ in range(lookup_module.PLAN_CACHE_SIZE + 3)]
    for ids in batches:
        tt_matrix_rows(cores, tt.to_device(ids), row_shape, col_shape)
    assert lookup_module.plan_cache_info().size == lookup_module.PLAN_CACHE_SIZE
    counter = _PlanCounter(monkeypatch)
    tt_matrix_rows(cores, tt.to_device(batches[-1]), row_shape, col_shape)   # recent: kept
    tt_matrix_rows(cores, tt.to_device(batches[0]), row_shape, col_shape)    # oldest: evicted
    assert counter.calls == 1
    monkeypatch.setattr(lookup_module, "PLAN_CACHE_MAX_IDS", 6)   # batches of 7 ids: too big to keep
    tt_matrix_rows(cores, tt.to_device(batches[-1]), row_shape, col_shape)
    assert counter.calls == 2
    monkeypatch.setattr(lookup_module, "PLAN_CACHE_MAX_IDS", 7)
    monkeypatch.setattr(lookup_module, "PLAN_CACHE_SIZE", 0)
    tt_matrix_rows(cores, tt.to_device(batches[-1]), row_shape, col_shape)
    assert counter.calls == 3
    lookup_module.plan_cache_clear()
    assert lookup_module.plan_cache_info() == (0, 0, 0)


@pytest.mark.parametrize("n_cores", [5, 6])
def test_five_and_six_cores_with_a_padding_id_against_the_dense_path(n_cores):
    # the drawn tests above go to 6 cores without padding and to 4 cores for gradients:
    # here 5 and 6 cores, repeated ids and the padding id, rows and core gradients
    rng = numpy.random.default_rng(n_cores)
    row_shape, col_shape = (2, 3, 2, 2, 3, 2)[:n_cores], (2, 1, 2, 2, 1, 2)[:n_cores]
    ranks = [1] + [2, 3, 2, 3, 2][:n_cores - 1] + [1]
    cores = [rng.standard_normal((ranks[k], row_shape[k], col_shape[k], ranks[k + 1])) for k in range(n_cores)]
    n_rows = int(numpy.prod(row_shape))
    pad = 5
    ids = rng.integers(0, n_rows, size=(4, 6))
    ids[0, :3] = pad
    ids[1, 1] = ids[2, 4]
    dense = dense_tt_matrix(cores)
    want_rows = dense[ids] * (ids != pad)[..., None]
    upstream = tt.to_device(rng.standard_normal(ids.shape + (int(numpy.prod(col_shape)),)))
    keep = tt.to_device((ids != pad)[..., None].astype(numpy.float64))
    leaves = [tt.Tensor(tt.to_device(c), requires_grad=True) for c in cores]
    (tt.TTMatrix(leaves).full()[tt.to_device(ids)] * keep).backward(upstream)
    expected = [leaf.grad for leaf in leaves]
    for strategy, mode in VARIANTS:
        leaves = [tt.Tensor(tt.to_device(c), requires_grad=True) for c in cores]
        out = tt_matrix_rows(leaves, tt.to_device(ids), row_shape, col_shape, strategy=strategy, mode=mode,
                             padding_idx=pad)
        assert_close(out, want_rows, rtol=1e-10, atol=1e-12, err_msg=f"{strategy}/{mode}")
        out.backward(upstream)
        for k, (leaf, want) in enumerate(zip(leaves, expected)):
            assert_close(leaf.grad, want, rtol=1e-9, atol=1e-10, err_msg=f"core {k}, {strategy}/{mode}")


def test_cost_model_prices_select_as_the_plan_runs_it():
    """200 children sharing one digit value run as one GEMM (8+ children per value present);
    the model prices them that way too, not as batched matmuls (8 per *possible* value)."""
    from tinytt.tt.lookup import _digits_present, _level_costs

    row_shape, col_shape, ranks = (25, 30, 40), (4, 8, 8), (1, 16, 16, 1)
    ids = numpy.arange(200) * 40 + 3                      # last digit 3 for every id
    plan = plan_lookup(ids, row_shape, col_shape, ranks, strategy="prefix")
    last = plan.levels[-1]
    assert last.mode == "select" and last.spans == [(3, 0, 200)]
    assert _digits_present(ids, row_shape, numpy)[-1] == 1
    args = (200, 200, 32, 16, 40, 8, 1)
    madds = 200 * 32 * 16 * 8
    per_digit = 6 * madds + lookup_module._FLOAT_MOVE_COST * 200 * 32 * (4 * 16 + 2 * 8)
    assert _level_costs(*args, present=1)[1] == per_digit
    assert _level_costs(*args)[1] > per_digit             # priced batched when all 40 could occur


def test_plan_passes_the_digits_present_to_the_cost_model(monkeypatch):
    """8 parents x the same 16 last digits: 8 children per digit value present, so select runs
    as per-digit GEMMs and is priced so (cheaper than expand); priced as batched matmuls (as
    if all 40 values could occur) the plan took expand for the last level."""
    row_shape, col_shape, ranks = (25, 30, 40), (4, 8, 8), (1, 16, 16, 1)
    parents = numpy.arange(8) * 7
    ids = (parents[:, None] * 40 + numpy.arange(16)[None, :]).reshape(-1)
    last = plan_lookup(ids, row_shape, col_shape, ranks, strategy="prefix").levels[-1]
    assert last.mode == "select" and len(last.spans) == 16
    monkeypatch.setattr(lookup_module, "_digits_present", lambda uniq, shape, xp: list(shape))
    assert plan_lookup(ids, row_shape, col_shape, ranks, strategy="prefix").levels[-1].mode == "expand"


def test_plan_and_checked_rows_check_their_own_arguments():
    """plan_lookup computed digits in the ids' own dtype (int8 ids gave wrong rows, uint8 ids
    overflowed) and read id -1 as the last row; rows_of_checked_ids skipped every check but the
    ids' (a wrong row_shape gave other rows, a bad padding_idx was ignored); mode was checked
    late or not at all."""
    from tinytt.tt.lookup import rows_of_checked_ids

    rng = numpy.random.default_rng(0)
    row_shape, col_shape, ranks = (4, 8, 8), (2, 2, 2), (1, 3, 3, 1)
    cores = [rng.standard_normal((ranks[k], v, d, ranks[k + 1])) for k, (v, d) in enumerate(zip(row_shape, col_shape))]
    dense = tt.to_numpy(tt.TTMatrix([tt.Tensor(tt.to_device(c)) for c in cores]).full().data)
    ids = rng.integers(0, 127, size=100)
    for strategy in STRATEGIES:
        plan = plan_lookup(ids.astype(numpy.int8), row_shape, col_shape, ranks, strategy=strategy)
        wide = plan_lookup(ids, row_shape, col_shape, ranks, strategy=strategy)
        assert numpy.array_equal(plan.inverse, wide.inverse) and numpy.array_equal(plan.uniq, wide.uniq)
    plan_lookup(numpy.array([0, 5, 200], dtype=numpy.uint8), (2, 300), (1, 1), (1, 1, 1))
    with pytest.raises(IndexError, match=r"ids must lie in \[0, 256\)"):
        plan_lookup(numpy.array([-1, 0]), row_shape, col_shape, ranks)
    with pytest.raises(ValueError, match="mode"):
        plan_lookup(ids, row_shape, col_shape, ranks, mode=["select"])
    tensors = [tt.Tensor(tt.to_device(c)) for c in cores]
    first = tt.to_device(ids[:5])
    good = rows_of_checked_ids(tensors, first, row_shape, col_shape)
    assert_close(good.data, dense[ids[:5]])
    with pytest.raises(ValueError, match="row_shape"):
        rows_of_checked_ids(tensors, first, (8, 4, 8), col_shape)
    for pad in (-1, 256, 1.5):
        with pytest.raises(ValueError, match="padding_idx"):
            rows_of_checked_ids(tensors, first, row_shape, col_shape, padding_idx=pad)
    for mode in ("bogus", ["select"]):
        with pytest.raises(ValueError, match="mode"):
            tt_matrix_rows(tensors, tt.to_device(numpy.zeros(0, dtype=numpy.int64)), row_shape, col_shape, mode=mode)
    assert tt_matrix_rows(tensors, first, row_shape, col_shape, padding_idx=numpy.array(5)).shape == (5, 8)
