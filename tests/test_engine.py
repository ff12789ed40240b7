"""The autodiff engine (tinytt/tensor.py): graph walk, accumulation, dtypes, aliasing, errors."""

import itertools

import numpy as np
import pytest

import tinytt as tt
from conftest import on_device
from tinytt.tensor import record
from tinytt.testing import assert_close


def T(a, requires_grad=False, dtype=None):
    return tt.Tensor(on_device(np.asarray(a, dtype=dtype)), requires_grad=requires_grad)


def is_backend_array(a):
    xp = tt.get_xp()
    return isinstance(a, xp.ndarray)


# --- graph shapes ----------------------------------------------------------------------------
def test_reuse_x_times_x_gives_2x():
    x = T([1.0, -2.0, 3.0], True)
    (x * x).sum().backward()
    assert_close(x.grad, [2.0, -4.0, 6.0], dtype=np.float64)


def test_diamond_graph():
    x = T([0.5, 2.0], True)
    a = x * 3.0
    b = tt.exp(a)
    c = tt.tanh(a)
    d = (b * c + a).sum()
    d.backward()
    xv = np.array([0.5, 2.0])
    av = 3 * xv
    expected = 3 * (np.exp(av) * np.tanh(av) + np.exp(av) * (1 - np.tanh(av) ** 2) + 1)
    assert_close(x.grad, expected, dtype=np.float64)


def test_fan_out_accumulates():
    x = T(np.arange(4.0), True)
    ys = [x * float(k) for k in range(1, 6)]
    total = ys[0]
    for y in ys[1:]:
        total = total + y
    total.sum().backward()
    assert_close(x.grad, np.full(4, 15.0), dtype=np.float64)


def test_deep_chain_without_recursion_error():
    x = T([1.0], True)
    y = x
    for _ in range(100_000):
        y = y + 1e-6
    y.sum().backward()
    assert_close(x.grad, [1.0], dtype=np.float64)
    assert_close(y, [1.1], dtype=np.float64, rtol=1e-9)


def test_grads_accumulate_over_two_backward_calls():
    x = T([1.0, 2.0], True)
    (x * 3.0).sum().backward()
    first = x.grad
    (x * x).sum().backward()
    assert_close(x.grad, [3.0 + 2.0, 3.0 + 4.0], dtype=np.float64)
    assert_close(first, [3.0, 3.0], dtype=np.float64)  # the first array was not modified in place


def test_no_grad_records_nothing_and_enable_grad_restores():
    x = T([1.0, 2.0], True)
    with tt.no_grad():
        assert not tt.is_grad_enabled()
        y = tt.tanh(x * 2.0 + 1.0).sum()
        with tt.enable_grad():
            z = (x * 2.0).sum()
    assert tt.is_grad_enabled()
    assert not y.requires_grad and y.is_leaf and y._parents == ()
    assert z.requires_grad
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.backward()
    assert x.grad is None


def test_no_grad_restores_state_after_exception():
    with pytest.raises(KeyError):
        with tt.no_grad():
            raise KeyError("x")
    assert tt.is_grad_enabled()


def test_detach_cuts_the_graph():
    x = T([1.0, 2.0], True)
    d = (x * 2.0).detach()
    assert not d.requires_grad and d.is_leaf
    (x * d).sum().backward()
    assert_close(x.grad, [2.0, 4.0], dtype=np.float64)  # d treated as a constant


def test_requires_grad_propagation():
    a = T([1.0], True)
    b = T([2.0])
    assert (a + b).requires_grad and (b + a).requires_grad
    assert not (b * b).requires_grad
    assert not (b * 2.0).requires_grad
    c = a * b
    c.sum().backward()
    assert b.grad is None and a.grad is not None
    assert not c.is_leaf
    with pytest.raises(RuntimeError, match="leaf"):
        c.requires_grad_(False)
    b.requires_grad_()
    assert b.requires_grad


def test_integer_tensors_cannot_require_grad():
    with pytest.raises(TypeError, match="floating-point"):
        T([1, 2, 3], True)
    with pytest.raises(TypeError, match="floating-point"):
        T([True, False], True)
    with pytest.raises(TypeError, match="floating-point"):
        T([1, 2]).requires_grad_()


def test_grad_is_backend_array_with_input_shape_and_dtype():
    for dtype in (np.float32, np.float64):
        for shape in [(), (1,), (3, 1, 2)]:
            x = T(np.ones(shape, dtype), True)
            (x * 2.0).sum().backward()
            assert is_backend_array(x.grad), type(x.grad)
            assert x.grad.shape == shape and x.grad.dtype == dtype
            s = T(np.float64(1.5).astype(dtype), True)
            tt.sum(s).backward()  # 0-d reductions must not leave a NumPy scalar
            assert is_backend_array(s.grad) and s.grad.shape == () and s.grad.dtype == dtype


def test_backward_on_non_scalar_without_grad():
    x = T(np.ones((2, 3)), True)
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        (x * 2.0).backward()


def test_backward_with_wrong_shape_grad():
    x = T(np.ones((2, 3)), True)
    y = x * 2.0
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(3, 2\)"):
        y.backward(on_device(np.ones((3, 2))))
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        y.backward(on_device(np.ones(6)))
    y.backward(tt.Tensor(on_device(np.full((2, 3), 0.5))))  # a Tensor seed is fine
    assert_close(x.grad, np.ones((2, 3)), dtype=np.float64)


def test_one_element_non_scalar_defaults_to_one():
    x = T(np.array([[2.0]]), True)
    (x * 3.0).backward()
    assert_close(x.grad, [[3.0]], dtype=np.float64)


def test_backward_on_a_leaf_and_seed_dtype_cast():
    x = T(np.ones(3, np.float32), True)
    x.backward(on_device(np.array([1.0, 2.0, 3.0])))  # float64 seed cast to float32
    assert x.grad.dtype == np.float32
    assert_close(x.grad, [1.0, 2.0, 3.0])


def test_wrong_shape_vjp_is_reported_with_op_name():
    x = T(np.ones(3), True)
    bad = record("bad_op", x.data * 2, (x,), (lambda g: g[:2],))
    with pytest.raises(RuntimeError, match="bad_op"):
        bad.sum().backward()


# --- dtype preservation -------------------------------------------------------------------------
def _ops_float(dtype):
    """(name, fn(x, y) -> Tensor) with x, y of shape (2, 3), positive values."""
    ids = on_device(np.array([1, 0, 1]))
    mask = on_device(np.array([[True, False, True], [False, True, False]]))
    targets = on_device(np.array([0, 2]))
    return [
        ("add", lambda x, y: x + y), ("sub", lambda x, y: x - y), ("mul", lambda x, y: x * y),
        ("div", lambda x, y: x / y), ("neg", lambda x, y: -x),
        ("scalar_mul", lambda x, y: x * 2.0), ("rscalar_mul", lambda x, y: 2.0 * x),
        ("scalar_div_int", lambda x, y: x / 3), ("rdiv", lambda x, y: 1 / x),
        ("scalar_add", lambda x, y: x + 1), ("rsub", lambda x, y: 1.0 - x),
        ("pow2", lambda x, y: x ** 2), ("pow_half", lambda x, y: x ** 0.5),
        ("pow_np", lambda x, y: x ** np.float64(2.0)),
        ("matmul", lambda x, y: x @ y.T), ("matmul_vec", lambda x, y: x @ y[0]),
        ("einsum", lambda x, y: tt.einsum("ij,kj->ik", x, y)),
        ("sum", lambda x, y: x.sum(axis=1)), ("mean", lambda x, y: x.mean()),
        ("max", lambda x, y: x.max(axis=0, keepdims=True)),
        ("reshape", lambda x, y: x.reshape(3, 2)), ("transpose", lambda x, y: x.T),
        ("getitem", lambda x, y: x[:, 1:]), ("getitem_ids", lambda x, y: x[ids]),
        ("getitem_mask", lambda x, y: x[mask]),
        ("take", lambda x, y: tt.take(x, ids)), ("concat", lambda x, y: tt.concat([x, y], axis=1)),
        ("stack", lambda x, y: tt.stack([x, y])), ("split", lambda x, y: tt.split(x, 3, axis=1)[1]),
        ("where", lambda x, y: tt.where(mask, x, y)), ("where_scalar", lambda x, y: tt.where(mask, x, 0.0)),
        ("exp", lambda x, y: tt.exp(x)), ("log", lambda x, y: tt.log(x)), ("sqrt", lambda x, y: tt.sqrt(x)),
        ("tanh", lambda x, y: tt.tanh(x)), ("sigmoid", lambda x, y: tt.sigmoid(x)),
        ("relu", lambda x, y: tt.relu(x - 1.0)), ("clip", lambda x, y: tt.clip(x, 0.5, 1.5)),
        ("softmax", lambda x, y: tt.softmax(x)), ("log_softmax", lambda x, y: tt.log_softmax(x, axis=0)),
        ("logsumexp", lambda x, y: tt.logsumexp(x)),
        ("cross_entropy", lambda x, y: tt.cross_entropy(x, targets)),
        ("cross_entropy_smooth", lambda x, y: tt.cross_entropy(x, targets, ignore_index=2,
                                                                label_smoothing=0.1)),
        ("bce", lambda x, y: tt.binary_cross_entropy_with_logits(x, on_device(np.ones((2, 3), dtype)))),
        ("mse", lambda x, y: tt.mse(x, y)),
        ("dropout", lambda x, y: tt.dropout(x, 0.5, rng=tt.backend.default_rng(0))),
    ]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("index", range(len(_ops_float(np.float32))))
def test_dtype_kept_end_to_end(dtype, index):
    name, fn = _ops_float(dtype)[index]
    x = T(np.array([[0.5, 1.0, 2.0], [1.5, 0.25, 3.0]], dtype), True)
    y = T(np.array([[1.0, 2.0, 0.5], [0.75, 1.25, 2.5]], dtype), True)
    out = fn(x, y)
    assert out.dtype == dtype, (name, out.dtype)
    out.backward(on_device(np.ones(out.shape, dtype)))
    for leaf in (x, y):
        if leaf.grad is not None:
            assert leaf.grad.dtype == dtype and leaf.grad.shape == leaf.shape, name
            assert is_backend_array(leaf.grad)


# --- no mutation, no aliasing ---------------------------------------------------------------------
ALIAS_CASES = {
    "add_same_upstream": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "add_broadcast": lambda a, b: a + b[0],
    "reshape_view": lambda a, b: a.reshape(6).reshape(2, 3) + b,
    "transpose_view": lambda a, b: a.T.T + b.T.T,
    "sum_broadcast": lambda a, b: (a.sum() + b.sum()) * on_device(np.ones((2, 3))),
    "getitem_slices": lambda a, b: tt.concat([a[:, :1], b[:, 1:]], axis=1) + a,
    "concat_stack": lambda a, b: tt.stack([a, b]).sum(axis=0) + tt.concat([a, b]).reshape(2, 2, 3)[0],
    "einsum_identity": lambda a, b: tt.einsum("ij->ij", a) + tt.einsum("ij->ji", b).T,
    "astype": lambda a, b: a.astype(np.float64) + b,
    "where": lambda a, b: tt.where(on_device(np.ones((2, 3), bool)), a, b),
    "leaf_only_a": lambda a, b: a,
}


@pytest.mark.parametrize("name", sorted(ALIAS_CASES))
def test_no_mutation_and_no_shared_grad_memory(name):
    fn = ALIAS_CASES[name]
    rng = np.random.default_rng(1)
    a0, b0 = rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    a, b = T(a0.copy(), True), T(b0.copy(), True)
    seed = on_device(rng.standard_normal((2, 3)))
    seed_copy = tt.to_numpy(seed).copy()
    out = fn(a, b)
    out.backward(seed)
    assert_close(a, a0, rtol=0, atol=0)
    assert_close(b, b0, rtol=0, atol=0)
    assert_close(seed, seed_copy, rtol=0, atol=0)
    arrays = {"a.grad": a.grad, "b.grad": b.grad, "a.data": a.data, "b.data": b.data, "seed": seed,
              "out.data": out.data}
    shares = tt.get_xp().shares_memory
    for (n1, x1), (n2, x2) in itertools.combinations(arrays.items(), 2):
        if x1 is None or x2 is None or not (n1.endswith("grad") or n2.endswith("grad")):
            continue
        assert not shares(x1, x2), f"{n1} shares memory with {n2}"
    # a second backward adds into fresh arrays, never in place into the first grads
    first = tt.to_numpy(a.grad).copy()
    held = a.grad
    fn(a, b).backward(seed)
    assert_close(held, first, rtol=0, atol=0)


def test_seed_grad_never_aliased_for_identity_chains():
    x = T(np.ones(3), True)
    seed = on_device(np.array([1.0, 2.0, 3.0]))
    x.backward(seed)  # backward on a leaf itself
    xp = tt.get_xp()
    assert not xp.shares_memory(x.grad, seed)
    y = T(np.ones(3), True)
    z = T(np.ones(3), True)
    (y + z).backward(seed)
    for g1, g2 in [(y.grad, z.grad), (y.grad, seed), (z.grad, seed)]:
        assert not xp.shares_memory(g1, g2)


# --- deferred gradients (a VJP whose result a worker thread is still computing) --------------
def _scale_op(events, factor, defer_leaf=True):
    """y = factor * a * b as an op whose VJP for ``a`` returns a tensor.Deferred that logs
    when it is resolved."""
    from tinytt.tensor import Deferred

    def op(a, b):
        def vjp_a(g):
            value = g * factor * b.data

            def resolve():
                events.append("resolved")
                return value
            return Deferred(resolve) if defer_leaf else value
        return record("scale", a.data * b.data * factor, (a, b),
                      (vjp_a, lambda g: g * factor * a.data))
    return op


def test_deferred_leaf_gradient_is_resolved_after_every_other_vjp():
    events = []
    a, b = T([1.0, 2.0], True), T([3.0, -1.0], True)
    y = _scale_op(events, 2.0)(a, b)

    def log_vjp(g):
        events.append("downstream vjp")
        return g
    z = record("log", y.data * 1.0, (y,), (log_vjp,))
    w = T([5.0, 7.0], True)
    (z * w).sum().backward()
    assert events == ["downstream vjp", "resolved"]
    assert_close(a.grad, 2.0 * b.data * w.data, dtype=np.float64)
    assert_close(b.grad, 2.0 * a.data * w.data, dtype=np.float64)
    # a second backward adds to the first, also through the deferred path
    (z * w).sum().backward()
    assert_close(a.grad, 4.0 * b.data * w.data, dtype=np.float64)


def test_deferred_gradient_of_a_non_leaf_is_resolved_at_once():
    events = []
    x = T([1.0, 2.0], True)
    a = x * 3.0                     # not a leaf: its gradient must flow on to x
    b = T([3.0, -1.0])
    _scale_op(events, 2.0)(a, b).sum().backward()
    assert events == ["resolved"]
    assert_close(x.grad, 6.0 * b.data, dtype=np.float64)


def test_deferred_gradient_is_resolved_but_not_used_when_another_vjp_fails():
    events = []

    def failing(g):
        raise ValueError("a later VJP fails")
    a, b0 = T([1.0, 2.0], True), T([3.0, -1.0], True)
    b = record("fail", b0.data * 1.0, (b0,), (failing,))   # its VJP runs after the scale op's
    with pytest.raises(ValueError, match="a later VJP fails"):
        _scale_op(events, 2.0)(a, b).sum().backward()
    assert events == ["resolved"] and a.grad is None


def test_deferred_gradient_with_a_wrong_shape_is_an_internal_error():
    from tinytt.tensor import Deferred

    a = T([1.0, 2.0], True)
    y = record("bad", a.data * 2.0, (a,), (lambda g: Deferred(lambda: g[:1]),))
    with pytest.raises(RuntimeError, match="VJP of op 'bad'"):
        y.sum().backward()


@pytest.mark.parametrize("data", [np.array(["a", "b"]), np.array([object(), 1], dtype=object),
                                  np.array(["2026-01-01"], dtype="datetime64[D]"), "text"])
def test_tensor_rejects_non_numeric_data(data):
    with pytest.raises(TypeError, match="numeric"):
        tt.Tensor(data)


def test_tensor_keeps_numeric_dtypes_and_only_floats_take_gradients():
    for dtype in (bool, np.int8, np.uint16, np.int64, np.float32, np.float64, np.complex128):
        assert tt.Tensor(np.zeros(2, dtype=dtype)).dtype == dtype
    with pytest.raises(TypeError, match="floating-point"):
        tt.Tensor(np.zeros(2, dtype=np.int64), requires_grad=True)


def test_gradient_of_a_0d_leaf_used_twice_is_an_array():
    # NumPy's sum of two 0-d arrays is a scalar: the engine makes it an array again
    for dtype in (np.float64, np.float32):
        x = tt.Tensor(on_device(np.array(1.5, dtype=dtype)), requires_grad=True)
        (x * 2.0 + x * 3.0).backward()
        assert x.grad.shape == () and x.grad.dtype == dtype and float(x.grad) == 5.0
        assert not isinstance(x.grad, np.generic)
        (x * 1.0).backward()             # accumulation into .grad keeps it an array too
        assert not isinstance(x.grad, np.generic) and float(x.grad) == 6.0


def test_a_no_grad_object_is_reusable_re_entrant_and_a_decorator():
    """A second ``with`` on one no_grad() object raised AttributeError (a contextlib generator
    runs once); torch's can be reused and nested. The state is per thread."""
    import threading

    ng = tt.no_grad()
    for _ in range(2):
        with ng:
            with ng:
                assert not tt.is_grad_enabled()
            assert not tt.is_grad_enabled()
        assert tt.is_grad_enabled()
    with pytest.raises(KeyError):
        with ng:
            raise KeyError
    assert tt.is_grad_enabled()
    with tt.no_grad():
        with tt.enable_grad():
            assert tt.is_grad_enabled()
        assert not tt.is_grad_enabled()

    @tt.no_grad()
    def recording():
        return tt.is_grad_enabled()

    assert recording() is False and recording() is False and tt.is_grad_enabled()
    seen = []
    with tt.no_grad():
        worker = threading.Thread(target=lambda: seen.append(tt.is_grad_enabled()))
        worker.start()
        worker.join()
    assert seen == [True]


def test_numpy_conversion_float_and_int_of_tensors():
    """Tensor had no __array__: numpy.asarray(t) built an object array of 0-d tensors and
    numpy.array(t, dtype=float) failed; float(t) and int(t) raised while bool(t) worked."""
    from conftest import BACKEND

    t = T([1.5, -2.5, 3.0], requires_grad=True)
    assert float(T([2.5])) == 2.5 and int(T(-2.7)) == -2 and isinstance(float(T(1.0)), float)
    for convert in (float, int):
        with pytest.raises(TypeError, match="one element"):
            convert(t)
    if BACKEND == "cupy":   # no implicit device -> host copy, as CuPy itself
        with pytest.raises(TypeError, match=r"tensor.numpy\(\)"):
            np.asarray(t)
        return
    assert np.asarray(t) is t.data                     # no copy by default
    assert np.array(t) is not t.data and np.array_equal(np.array(t), t.data)
    assert np.asarray(t, dtype=np.float32).dtype == np.float32
    assert np.asarray([t, t]).shape == (2, 3) and np.asarray([t, t]).dtype == np.float64
    with pytest.raises(ValueError, match="copy=False"):
        np.asarray(t, dtype=np.float32, copy=False)
    assert isinstance(np.ones(3) * t, tt.Tensor)       # operators still defer to the Tensor
