"""tinytt.testing: check_grads catches wrong VJPs, assert_close tolerances, hypothesis strategies."""

import numpy as np
import pytest
from hypothesis import given

import tinytt as tt
from conftest import on_device
from tinytt.tensor import record
from tinytt.testing import TOLERANCES, assert_close, available_backends, check_grads, tolerances
from tinytt.testing.strategies import (
    broadcastable_shapes, embedding_ids, float_arrays, lstm_problems, shapes, tt_matrix_cores, tt_matrix_shapes,
    tt_ranks, tt_shapes,
)


def square_with_vjp(scale_a, scale_b=1.0):
    """a**2 * b as a custom op whose VJP for a is scaled by ``scale_a`` (1.0 is correct)."""
    def op(a, b):
        out = a.data ** 2 * b.data
        return record("custom_square", out, (a, b),
                      (lambda g: g * 2 * a.data * b.data * scale_a,
                       lambda g: g * a.data ** 2 * scale_b))
    return op


def test_check_grads_passes_on_correct_vjp():
    a = on_device(np.random.default_rng(0).standard_normal((3, 2)))
    b = on_device(np.random.default_rng(1).standard_normal((3, 2)))
    check_grads(square_with_vjp(1.0), a, b)


def test_check_grads_fails_on_wrong_vjp_and_names_the_input():
    a = on_device(np.random.default_rng(0).standard_normal((3, 2)))
    b = on_device(np.random.default_rng(1).standard_normal((3, 2)))
    with pytest.raises(AssertionError, match=r"input 0 \(weights\).*shape \(3, 2\)"):
        check_grads(square_with_vjp(1.1), a, b, names=("weights", "scale"))
    with pytest.raises(AssertionError, match=r"input 1 \(scale\)"):
        check_grads(square_with_vjp(1.0, scale_b=-1.0), a, b, names=("weights", "scale"))
    with pytest.raises(AssertionError, match="input 1"):
        check_grads(square_with_vjp(1.0, scale_b=0.0), a, b)


def test_check_grads_allows_the_rounding_floor_of_large_outputs_but_not_wrong_vjps():
    """Outputs of size ~2 whose directional derivative is ~1e-4: the central difference
    loses ~1e-9 to cancellation alone (a hypothesis example of clip failed on that before
    the floor was allowed); a 1 % error in the VJP is still caught at that scale."""
    a = on_device(np.array([[[-2., -2., -2., 0.], [2.02, 2.02, 0., 0.]],
                            [[2.02, 2.02, 0., 1.], [2.02, 2.02, 2.02, 2.02]]]))
    check_grads(lambda x: tt.clip(x, -1.0, 2.0), a)
    big = on_device(np.full((4, 4), 50.0))
    small = on_device(np.full((4, 4), 1e-3))
    check_grads(square_with_vjp(1.0), small, big)
    with pytest.raises(AssertionError, match="input 0"):
        check_grads(square_with_vjp(1.01), small, big)


def test_check_grads_fails_on_a_missing_gradient():
    def op(a):  # differentiable in a, but records no VJP
        return record("no_vjp", a.data * 3.0, (a,), (None,))
    with pytest.raises(AssertionError, match="input 0"):
        check_grads(op, on_device(np.ones(3)))


def test_check_grads_passes_integer_inputs_through():
    x = on_device(np.random.default_rng(0).standard_normal((4, 3)))
    ids = on_device(np.array([0, 3, 3]))
    check_grads(lambda t, i: tt.take(t, i) * 2.0, x, ids)


def test_check_grads_rejects_float32_and_non_tensor_outputs():
    with pytest.raises(TypeError, match="float64"):
        check_grads(lambda t: t * 2.0, on_device(np.ones(3, np.float32)))
    with pytest.raises(TypeError, match="Tensor"):
        check_grads(lambda t: 3.0, on_device(np.ones(3)))
    with pytest.raises(ValueError, match="no floating-point input"):
        check_grads(lambda i: i, on_device(np.arange(3)))


def test_tolerances_and_assert_close():
    assert tolerances(np.float64) == TOLERANCES["float64"] == (1e-10, 1e-12)
    assert tolerances("float32") == TOLERANCES["float32"] == (1e-4, 1e-5)
    with pytest.raises(ValueError, match="float16"):
        tolerances(np.float16)
    assert_close(np.float32(1.00005), 1.0)  # within float32 rtol 1e-4
    with pytest.raises(AssertionError):
        assert_close(np.float64(1.00005), 1.0)  # float64 inputs: rtol 1e-10
    with pytest.raises(AssertionError):
        assert_close(np.float32(1.001), np.float32(1.0))
    assert_close(tt.Tensor(on_device(np.ones(2))), np.ones(2))
    with pytest.raises(AssertionError, match="my message"):
        assert_close(np.ones(2), np.zeros(2), err_msg="my message")
    with pytest.raises(AssertionError):
        assert_close(np.ones(2), np.ones(3))


def test_available_backends():
    assert "numpy" in available_backends()


@given(shape=shapes(min_dims=1, max_dims=3, min_side=2, max_side=4))
def test_shapes_strategy(shape):
    assert 1 <= len(shape) <= 3 and all(2 <= n <= 4 for n in shape)


@given(shape_pair=broadcastable_shapes(3, max_dims=3))
def test_broadcastable_shapes_strategy(shape_pair):
    assert len(shape_pair) == 3
    np.broadcast_shapes(*shape_pair)


@given(a=float_arrays((3, 2), bound=2.0), b=float_arrays(shapes(max_dims=2), dtype=np.float32))
def test_float_arrays_strategy(a, b):
    assert a.shape == (3, 2) and a.dtype == np.float64 and np.all(np.abs(a) <= 2.0)
    assert b.dtype == np.float32 and np.all(np.isfinite(b)) and np.all(np.abs(b) <= 5.0)


@given(small=float_arrays((4,), dtype=np.float16, bound=1e-3), big=float_arrays((4,), dtype=np.float16, bound=1e5))
def test_float_arrays_strategy_float16_bounds(small, big):
    # the bound is rounded down to a float16 value (0.001 is 0.0010004 in float16), and
    # clipped to float16's largest finite value
    assert small.dtype == big.dtype == np.float16
    assert np.all(small.astype(np.float64) <= 1e-3) and np.all(small.astype(np.float64) >= -1e-3)
    assert np.all(np.isfinite(big))


def test_float_arrays_strategy_checks_its_dtype():
    for bad in (np.int32, np.complex64):
        with pytest.raises(ValueError, match="dtype"):
            float_arrays((2,), dtype=bad)
    with pytest.raises(ValueError, match="rounds to 0"):
        float_arrays((2,), dtype=np.float16, bound=1e-10)


@given(modes=tt_shapes(max_order=4), matrix=tt_matrix_shapes())
def test_tt_strategies(modes, matrix):
    assert 1 <= len(modes) <= 4
    rows, cols = matrix
    assert len(rows) == len(cols) >= 1


@given(ranks=tt_ranks(order=4, max_rank=3))
def test_tt_ranks_strategy(ranks):
    assert len(ranks) == 5 and ranks[0] == ranks[-1] == 1 and all(1 <= r <= 3 for r in ranks)


@given(cores=tt_matrix_cores(max_order=3, max_mode=4, max_rank=3, dtype=np.float32))
def test_tt_matrix_cores_strategy(cores):
    assert 1 <= len(cores) <= 3 and all(c.ndim == 4 and c.dtype == np.float32 for c in cores)
    assert cores[0].shape[0] == cores[-1].shape[3] == 1
    assert all(a.shape[3] == b.shape[0] for a, b in zip(cores, cores[1:]))
    assert all(1 <= c.shape[1] <= 4 and 1 <= c.shape[2] <= 4 and c.shape[3] <= 3 for c in cores)


@given(ids=embedding_ids(7, max_dims=2, max_side=5, padding_idx=3))
def test_embedding_ids_strategy(ids):
    assert ids.dtype == np.int64 and 1 <= ids.ndim <= 2 and all(1 <= n <= 5 for n in ids.shape)
    assert ids.min() >= 0 and ids.max() < 7


def test_embedding_ids_strategy_checks_its_arguments():
    from hypothesis import find  # noqa: PLC0415

    with pytest.raises(ValueError, match="padding_idx"):
        find(embedding_ids(5, padding_idx=5), lambda ids: True)
    with pytest.raises(ValueError, match="padding_idx"):
        find(embedding_ids(5, padding_idx=True), lambda ids: True)
    # a NumPy integer or a 0-d integer array (as the reference file stores it) is an id
    for pad in (np.int64(3), np.array(3)):
        found = find(embedding_ids(5, padding_idx=pad), lambda ids: bool((ids == 3).any()))
        assert (found == 3).any()
    with pytest.raises(ValueError, match="num_embeddings"):
        find(embedding_ids(0), lambda ids: True)
    with_padding = find(embedding_ids(50, padding_idx=7), lambda ids: bool((ids == 7).any()))
    assert (with_padding == 7).any()


@given(problem=lstm_problems(max_batch=3, max_time=4, max_size=3))
def test_lstm_problems_strategy_loads_into_an_lstm(problem):
    from tinytt import nn

    batch, time, n_in = problem["x"].shape
    assert n_in == problem["input_size"] and 1 <= batch <= 3 and 1 <= time <= 4
    if problem["lengths"] is not None:
        assert problem["lengths"].shape == (batch,) and 1 <= problem["lengths"].min() <= problem["lengths"].max() <= time
    n_dir = 2 if problem["bidirectional"] else 1
    if problem["h0"] is not None:
        assert problem["h0"].shape == problem["c0"].shape == (problem["num_layers"] * n_dir, batch,
                                                              problem["hidden_size"])
    m = nn.LSTM(problem["input_size"], problem["hidden_size"], num_layers=problem["num_layers"],
                bidirectional=problem["bidirectional"], dtype="float64")
    m.load_state_dict(problem["weights"])   # names, shapes and dtypes all match


def test_assert_close_is_strict_about_shapes_nan_and_integers():
    with pytest.raises(AssertionError, match="shapes differ"):
        assert_close(np.zeros(5), 0.0)          # a scalar used to match any shape
    with pytest.raises(AssertionError):
        assert_close(np.array([np.nan, 1.0]), np.array([np.nan, 1.0]))
    assert_close(np.array([np.nan, 1.0]), np.array([np.nan, 1.0]), equal_nan=True)
    with pytest.raises(AssertionError):
        assert_close(np.array([10000]), np.array([10001]))   # integers: exact (float32 tolerances before)
    assert_close(np.array([1 + 1e-6j], dtype=np.complex64), np.array([1.0], dtype=np.complex64))
    with pytest.raises(ValueError, match="float16"):
        assert_close(np.ones(2, np.float16), np.ones(2, np.float16))   # no float16 tolerances
    assert_close(np.ones(2, np.float16), np.ones(2, np.float16), rtol=1e-3, atol=1e-3)


def test_check_grads_needs_at_least_one_direction():
    x = on_device(np.ones(3))
    for bad in (0, -1, 1.5):
        with pytest.raises(ValueError, match="n_directions"):
            check_grads(lambda a: a * a, x, n_directions=bad)


def test_strategies_reject_empty_shapes_and_handle_float32_bounds():
    from hypothesis import find  # noqa: PLC0415

    for make in (lambda: tt_shapes(min_order=0, max_order=0), lambda: tt_shapes(min_mode=0, max_mode=0),
                 lambda: tt_matrix_shapes(min_order=0, max_order=0)):
        with pytest.raises(ValueError, match=">= 1"):
            find(make(), lambda value: True)
    with pytest.raises(ValueError, match="bound"):
        float_arrays((2,), np.float32, bound=-1.0)
    a = find(float_arrays((3,), np.float32, bound=0.1), lambda v: bool(np.abs(v).max() > 0.09))
    assert a.dtype == np.float32 and np.abs(a).max() <= 0.1   # bound 0.1 raised InvalidArgument


def test_testing_kit_checks_its_arguments_at_the_call():
    """The strategies checked their arguments only when a value was drawn (inside hypothesis),
    refused NumPy integers, and tt_matrix_cores took any dtype; check_grads did not check step,
    rtol and atol (rtol=inf passed a zero VJP); assert_close compared large integers through
    float64; reference_cases truncated a float seed."""
    from tinytt.testing import reference_cases
    from tinytt.testing import strategies as S

    for make, needle in ((lambda: S.tt_matrix_shapes(min_order=0), "min_order"),
                         (lambda: S.tt_matrix_shapes(min_order=5, max_order=2), "greater than"),
                         (lambda: S.tt_shapes(min_order=4, max_order=2), "greater than"),
                         (lambda: S.embedding_ids(0), "num_embeddings"),
                         (lambda: S.embedding_ids(5, padding_idx=7), "padding_idx"),
                         (lambda: S.tt_ranks(0), "order"), (lambda: S.tt_ranks(3, max_rank=0), "max_rank"),
                         (lambda: S.tt_matrix_cores(dtype=np.int64), "dtype"),
                         (lambda: S.lstm_problems(weight_scales=(-1.0,)), "weight_scales"),
                         (lambda: S.lstm_problems(max_batch=0), "max_batch"),
                         (lambda: S.shapes(min_dims=3, max_dims=2), "greater than"),
                         (lambda: S.shapes(max_side=-1), "max_side"),
                         (lambda: S.shapes(min_side=1.5), "min_side"),
                         (lambda: S.broadcastable_shapes(num_shapes=0), "num_shapes"),
                         (lambda: S.broadcastable_shapes(max_dims=40), "max_dims"),
                         (lambda: S.float_arrays((2,), bound="x"), "bound"),
                         (lambda: S.float_arrays((2,), bound=np.ones(2)), "bound"),
                         (lambda: S.float_arrays((2,), bound=True), "bound")):
        with pytest.raises(ValueError, match=needle):
            make()                                   # at the call: no .example() needed

    def f(x):
        return x * 2.0

    for kw in (dict(step=0), dict(step="1e-6"), dict(rtol=-1), dict(rtol=np.inf), dict(atol=np.inf)):
        with pytest.raises(ValueError, match="check_grads"):
            check_grads(f, np.ones(3), **kw)
    with pytest.raises(AssertionError, match="integer arrays differ"):
        assert_close(np.array([2 ** 53]), np.array([2 ** 53 + 1]))
    with pytest.raises(AssertionError):
        assert_close(np.array([2 ** 64 - 1], dtype=np.uint64), np.array([2 ** 64 - 2], dtype=np.uint64))
    assert_close(np.array([2 ** 53 + 1]), np.array([2 ** 53 + 1]))
    for seed in (1.7, "3", -1, True):
        with pytest.raises(ValueError, match="seed"):
            reference_cases("/nonexistent/never-written.npz", seed=seed)


@given(ids=embedding_ids(np.int64(24)), cores=tt_matrix_cores(dtype="float32"),
       complex_cores=tt_matrix_cores(dtype=np.complex128), problem=lstm_problems(weight_scales=(0.0,)))
def test_strategies_take_numpy_ints_float32_complex_and_zero_scales(ids, cores, complex_cores, problem):
    assert ids.dtype == np.int64 and 0 <= ids.min() and ids.max() < 24
    assert all(c.dtype == np.float32 for c in cores) and all(c.dtype == np.complex128 for c in complex_cores)
    assert all(not w.any() for w in problem["weights"].values())


def test_tt_matrix_cores_complex_draws_have_imaginary_parts():
    """tt_matrix_cores(dtype=complex) drew real values cast to complex (imaginary parts all zero)."""
    from hypothesis import settings
    from tinytt.testing.strategies import tt_matrix_cores

    seen = []

    @settings(max_examples=20, deadline=None, database=None)
    @given(tt_matrix_cores(max_order=2, max_mode=3, max_rank=2, dtype=np.complex64))
    def draw(cores):
        assert all(c.dtype == np.complex64 for c in cores)
        seen.append(any(np.abs(c.imag).max() > 0 for c in cores))

    draw()
    assert any(seen)


def test_check_grads_is_not_fooled_by_a_vjp_writing_into_its_gradient():
    """backward(v) handed v itself to the VJP: a VJP doubling g in place (true gradient 1,
    returned 2) passed, since the finite differences then used the doubled v; a correct VJP
    that scales its own input in place failed."""
    def doubled_in_place(x):
        def vjp(g):
            g *= 2.0
            return g
        return record("wrong", x.data.copy(), (x,), (vjp,))

    def tripled_right(x):
        def vjp(g):
            g *= 3.0
            return g
        return record("triple", 3.0 * x.data, (x,), (vjp,))

    a = on_device(np.random.default_rng(0).standard_normal(4))
    with pytest.raises(AssertionError):
        check_grads(doubled_in_place, a)
    check_grads(tripled_right, a)


def test_check_grads_refuses_float_inputs_it_would_not_check():
    """Python floats and lists of floats went to f unchecked, silently."""
    for value in ([1.0, 2.0], 1.5, (0.5,)):
        with pytest.raises(TypeError, match="would go unchecked"):
            check_grads(lambda x, y: tt.Tensor(y) * x, value, on_device(np.ones(2)))
    check_grads(lambda x, ids: tt.take(x, ids), on_device(np.ones((3, 2))), [0, 2])   # ints pass through
