"""Primitive ops (tinytt/ops.py): forward against NumPy float64, gradients by check_grads.

Every op is tested with hypothesis-drawn shapes (broadcasting, size-1 and, where
meaningful, zero-size dimensions) on the backend under test; a float32 variant
checks the dtype is kept and the values agree within the float32 tolerances.
"""

import contextlib
import os
from unittest import mock

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinytt as tt
from conftest import on_device
from tinytt.testing import assert_close, check_grads
from tinytt.testing.strategies import broadcastable_shapes, float_arrays, shapes


def T(a, requires_grad=False):
    return tt.Tensor(on_device(a), requires_grad=requires_grad)


def away_from(a, points, gap=1e-2):
    """Move values within ``gap`` of a kink (relu at 0, clip bounds, ties) off it."""
    a = np.array(a, dtype=np.float64, copy=True)
    for p in points:
        close = np.abs(a - p) < gap
        a[close] = p + 2 * gap
    return a


def distinct(a):
    """Values ordered like ``a`` but at least 0.4 apart (no ties for max), in [-5, 5] or so."""
    a = np.asarray(a, dtype=np.float64)
    flat = a.reshape(-1)
    out = np.empty_like(flat)
    out[np.argsort(flat, kind="stable")] = 0.5 * np.arange(flat.size) - 0.25 * flat.size
    return (out + 0.01 * flat).reshape(a.shape)


def check_forward_and_grads(op, ref, *arrays, float32=True, names=None):
    """op on Tensors vs ref on float64 NumPy arrays; check_grads; float32 keeps dtype and values."""
    expected = ref(*arrays)
    got = op(*[T(a) for a in arrays])
    assert_close(got, expected, dtype=np.float64)
    check_grads(op, *[on_device(a) for a in arrays], names=names)
    if float32:
        xs = [T(a.astype(np.float32), requires_grad=True) for a in arrays]
        out = op(*xs)
        assert out.dtype == np.float32
        ref32 = ref(*[a.astype(np.float32).astype(np.float64) for a in arrays])
        assert_close(out, ref32, dtype=np.float32)
        out.backward(on_device(np.ones(out.shape, np.float32)))
        for x in xs:
            assert x.grad.dtype == np.float32 and x.grad.shape == x.shape


# --- binary elementwise ----------------------------------------------------------------------
BINARY = {
    "add": (lambda a, b: a + b, np.add),
    "sub": (lambda a, b: a - b, np.subtract),
    "mul": (lambda a, b: a * b, np.multiply),
    "div": (lambda a, b: a / b, np.divide),
    "add_fn": (tt.add, np.add),
    "sub_fn": (tt.sub, np.subtract),
    "mul_fn": (tt.mul, np.multiply),
    "div_fn": (tt.div, np.divide),
}


@pytest.mark.parametrize("name", sorted(BINARY))
@given(data=st.data(), shapes_=broadcastable_shapes(2, min_dims=0, max_dims=3, max_side=4))
def test_binary_ops_broadcast(name, data, shapes_):
    op, ref = BINARY[name]
    a = data.draw(float_arrays(shapes_[0]), label="a")
    b = data.draw(float_arrays(shapes_[1]), label="b")
    if name.startswith("div"):
        b = np.where(np.abs(b) < 0.5, 0.5 + np.abs(b), b)  # keep the divisor away from 0
    check_forward_and_grads(op, ref, a, b, names=("a", "b"))


@given(shape=shapes(min_dims=1, max_dims=3, min_side=1, max_side=3), data=st.data())
def test_binary_zero_size(shape, data):
    zero_at = data.draw(st.integers(0, len(shape) - 1), label="zero_at")
    shape = shape[:zero_at] + (0,) + shape[zero_at + 1:]
    a, b = np.ones(shape), np.ones(shape[-1:])
    x, y = T(a, True), T(b, True)
    (x * y + x).sum().backward()
    assert x.grad.shape == shape and y.grad.shape == b.shape
    assert_close(y.grad, np.zeros(b.shape), dtype=np.float64)


@pytest.mark.parametrize("scalar", [2.0, 3, -0.5, np.float32(1.5), np.float64(2.5)])
def test_python_and_numpy_scalar_operands_keep_dtype(scalar):
    for dtype in (np.float32, np.float64):
        x = T(np.array([1.0, 2.0, 4.0], dtype), True)
        outs = [x + scalar, scalar + x, x - scalar, scalar - x, x * scalar, scalar * x,
                x / scalar, scalar / x]
        for out in outs:
            assert out.dtype == dtype, (scalar, dtype)
            out.sum().backward()
            assert x.grad.dtype == dtype
        s = float(scalar)
        expected = 2 + 2 * s + 1 / s - s / np.array([1.0, 2.0, 4.0]) ** 2
        assert_close(x.grad, expected, dtype=dtype)


def test_neg():
    a = np.array([[1.0, -2.0], [0.0, 3.5]])
    check_forward_and_grads(lambda x: -x, np.negative, a)
    check_forward_and_grads(tt.neg, np.negative, a)


@pytest.mark.parametrize("exponent", [2, 3, 0, 1, -1, 0.5, 1.5, -2.5, np.float64(2.0), np.int64(3)])
@given(a=float_arrays(shapes(max_dims=3, max_side=4), bound=3.0))
def test_pow_scalar_exponent(exponent, a):
    a = np.abs(a) + 0.5  # positive base: fractional and negative exponents are defined
    check_forward_and_grads(lambda x: x ** exponent, lambda x: np.power(x, float(exponent)), a)
    check_forward_and_grads(lambda x: tt.power(x, exponent), lambda x: np.power(x, float(exponent)), a)


def test_pow_negative_base_integer_exponent():
    a = np.array([-2.0, -0.5, 1.5])
    check_forward_and_grads(lambda x: x ** 3, lambda x: x ** 3, a)


def test_pow_rejects_tensor_exponent():
    x = T(np.ones(3), True)
    with pytest.raises(TypeError, match="exponent"):
        x ** T(np.ones(3))
    with pytest.raises(TypeError, match="exponent"):
        tt.power(x, np.ones(3))
    with pytest.raises(TypeError):
        2.0 ** x


# --- matmul ----------------------------------------------------------------------------------
@st.composite
def matmul_shapes(draw):
    n, k, m = draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    batch_a, batch_b = draw(broadcastable_shapes(2, min_dims=0, max_dims=2, max_side=3))
    kind = draw(st.sampled_from(["mm", "vec_mat", "mat_vec", "vec_vec"]))
    sa = (k,) if kind in ("vec_mat", "vec_vec") else batch_a + (n, k)
    sb = (k,) if kind in ("mat_vec", "vec_vec") else batch_b + (k, m)
    return sa, sb


@given(data=st.data(), sh=matmul_shapes())
def test_matmul(data, sh):
    a = data.draw(float_arrays(sh[0]), label="a")
    b = data.draw(float_arrays(sh[1]), label="b")
    check_forward_and_grads(lambda x, y: x @ y, np.matmul, a, b, names=("a", "b"))
    check_forward_and_grads(tt.matmul, np.matmul, a, b, names=("a", "b"))


def test_matmul_with_array_operand_and_zero_k():
    a = np.random.default_rng(0).standard_normal((3, 4))
    x = T(a, True)
    out = on_device(np.ones((2, 3))) @ x  # ndarray @ Tensor goes to Tensor.__rmatmul__
    assert isinstance(out, tt.Tensor)
    assert_close(out, np.ones((2, 3)) @ a, dtype=np.float64)
    z = T(np.ones((2, 0)), True) @ T(np.ones((0, 3)), True)
    assert_close(z, np.zeros((2, 3)), dtype=np.float64)


@pytest.mark.parametrize("sa, sb", [((2, 3), (4, 5)), ((3,), (4,)), ((2, 3), (4,)), ((3,), (4, 2)),
                                    ((2, 2, 3), (3, 3, 4)), ((), (3,))])
def test_matmul_shape_errors(sa, sb):
    with pytest.raises(ValueError, match="matmul") as exc:
        T(np.ones(sa)) @ T(np.ones(sb))
    assert str(sa) in str(exc.value) and str(sb) in str(exc.value)


# --- reductions ------------------------------------------------------------------------------
@st.composite
def array_and_axis(draw, min_side=1, min_dims=0):
    shape = draw(shapes(min_dims=min_dims, max_dims=3, min_side=min_side, max_side=4))
    a = draw(float_arrays(shape))
    nd = len(shape)
    axis = draw(st.one_of(
        st.none(),
        st.integers(-nd, nd - 1) if nd else st.none(),
        st.lists(st.integers(0, max(nd - 1, 0)), unique=True, max_size=nd).map(tuple) if nd else st.none(),
    ))
    keepdims = draw(st.booleans())
    return a, axis, keepdims


@given(args=array_and_axis(min_side=0))
def test_sum(args):
    a, axis, keepdims = args
    check_forward_and_grads(lambda x: tt.sum(x, axis=axis, keepdims=keepdims),
                            lambda x: np.sum(x, axis=axis, keepdims=keepdims), a)
    check_forward_and_grads(lambda x: x.sum(axis, keepdims),
                            lambda x: np.sum(x, axis=axis, keepdims=keepdims), a, float32=False)


@given(args=array_and_axis())
def test_mean(args):
    a, axis, keepdims = args
    check_forward_and_grads(lambda x: tt.mean(x, axis=axis, keepdims=keepdims),
                            lambda x: np.mean(x, axis=axis, keepdims=keepdims), a)


@given(args=array_and_axis())
def test_max(args):
    a, axis, keepdims = args
    a = distinct(a)
    check_forward_and_grads(lambda x: tt.max(x, axis=axis, keepdims=keepdims),
                            lambda x: np.max(x, axis=axis, keepdims=keepdims), a)


def test_max_ties_share_gradient_and_zero_size_error():
    x = T(np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]]), True)
    x.max(axis=1).sum().backward()
    assert_close(x.grad, [[0, 0.5, 0.5], [1 / 3, 1 / 3, 1 / 3]], dtype=np.float64)
    with pytest.raises(ValueError, match="zero-size"):
        tt.max(T(np.ones((0, 2))))


@pytest.mark.parametrize("fn", [tt.sum, tt.mean, tt.max])
def test_reduction_axis_errors(fn):
    with pytest.raises(ValueError, match="out of range"):
        fn(T(np.ones((2, 3))), axis=2)
    with pytest.raises(ValueError, match="out of range"):
        fn(T(np.float64(1.0)), axis=0)  # a 0-d tensor has no axis 0
    with pytest.raises(ValueError, match="repeats"):
        fn(T(np.ones((2, 3))), axis=(1, -1))


# --- shape ops -------------------------------------------------------------------------------
@given(a=float_arrays(shapes(max_dims=4, min_side=0, max_side=4)), data=st.data())
def test_reshape(a, data):
    perm = data.draw(st.permutations(a.shape), label="perm")
    new = tuple(perm)
    check_forward_and_grads(lambda x: x.reshape(new), lambda x: x.reshape(new), a)
    check_forward_and_grads(lambda x: tt.reshape(x, -1), lambda x: x.reshape(-1), a, float32=False)
    if a.ndim:
        check_forward_and_grads(lambda x: x.reshape(*new), lambda x: x.reshape(new), a, float32=False)


def test_reshape_error_names_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4,\)"):
        T(np.ones((2, 3))).reshape(4)


@given(a=float_arrays(shapes(max_dims=4, max_side=4)), data=st.data())
def test_transpose(a, data):
    axes = tuple(data.draw(st.permutations(range(a.ndim)), label="axes"))
    check_forward_and_grads(lambda x: tt.transpose(x, axes), lambda x: np.transpose(x, axes), a)
    check_forward_and_grads(lambda x: x.T, lambda x: x.T, a, float32=False)


def test_transpose_errors():
    x = T(np.ones((2, 3)))
    for axes in [(0,), (0, 0), (3, 0), (0, 1, 2)]:
        with pytest.raises(ValueError, match="permutation"):
            tt.transpose(x, axes)


@st.composite
def array_and_basic_index(draw):
    shape = draw(shapes(min_dims=1, max_dims=3, min_side=1, max_side=5))
    a = draw(float_arrays(shape))
    idx = []
    for n in shape:
        kind = draw(st.sampled_from(["int", "slice", "full"]))
        if kind == "int":
            idx.append(draw(st.integers(-n, n - 1)))
        elif kind == "slice":
            idx.append(slice(draw(st.integers(-n, n)), draw(st.integers(-n, n)),
                             draw(st.sampled_from([1, 2, -1]))))
        else:
            idx.append(slice(None))
    if draw(st.booleans()):
        idx.insert(draw(st.integers(0, len(idx))), None)
    return a, tuple(idx)


@given(args=array_and_basic_index())
def test_getitem_basic(args):
    a, idx = args
    check_forward_and_grads(lambda x: x[idx], lambda x: x[idx], a)
    check_forward_and_grads(lambda x: tt.getitem(x, idx), lambda x: x[idx], a, float32=False)


@given(a=float_arrays(shapes(min_dims=1, max_dims=3, max_side=4)), data=st.data())
def test_getitem_integer_arrays_repeat_and_accumulate(a, data):
    n = a.shape[0]
    ids = np.array(data.draw(st.lists(st.integers(-n, n - 1), min_size=0, max_size=8), label="ids"),
                   dtype=np.int64)
    check_forward_and_grads(lambda x: x[on_device(ids)], lambda x: x[ids], a)
    # also through a list and a Tensor index, and mixed with a slice
    check_forward_and_grads(lambda x: x[list(ids)] if len(ids) else x[on_device(ids)],
                            lambda x: x[ids], a, float32=False)
    check_forward_and_grads(lambda x: x[tt.Tensor(on_device(ids)), ...], lambda x: x[ids, ...], a,
                            float32=False)


def test_getitem_repeated_index_accumulates_exactly():
    x = T(np.zeros(4), True)
    x[on_device(np.array([1, 1, 3, 1]))].sum().backward()
    assert_close(x.grad, [0, 3, 0, 1], dtype=np.float64)
    y = T(np.arange(6.0).reshape(2, 3), True)
    mask = on_device(np.array([[True, False, True], [False, True, True]]))
    assert_close(y[mask], [0, 2, 4, 5], dtype=np.float64)
    y[mask].sum().backward()
    assert_close(y.grad, [[1, 0, 1], [0, 1, 1]], dtype=np.float64)


def test_getitem_rejects_float_indices():
    x = T(np.ones((3, 2)))
    with pytest.raises(TypeError, match="integer"):
        x[on_device(np.array([0.0, 1.0]))]
    with pytest.raises(TypeError, match="integer"):
        x[tt.Tensor(on_device(np.array([1.0])))]
    with pytest.raises(TypeError, match="float"):
        x[1.0]
    with pytest.raises(TypeError, match="integer"):
        tt.take(x, on_device(np.array([0.5])))


@given(a=float_arrays(shapes(min_dims=1, max_dims=3, max_side=4)), data=st.data())
def test_take_axis0(a, data):
    n = a.shape[0]
    ishape = data.draw(shapes(min_dims=0, max_dims=2, min_side=0, max_side=4), label="ishape")
    ids = np.array(data.draw(st.lists(st.integers(0, n - 1), min_size=int(np.prod(ishape)),
                                      max_size=int(np.prod(ishape))), label="ids"),
                   dtype=np.int64).reshape(ishape)
    check_forward_and_grads(lambda x: tt.take(x, on_device(ids)), lambda x: np.take(x, ids, axis=0), a)


def test_take_errors():
    x = T(np.ones((3, 2)))
    with pytest.raises(IndexError, match=r"\[0, 3\)"):
        tt.take(x, on_device(np.array([0, 3])))
    with pytest.raises(IndexError):
        tt.take(x, on_device(np.array([-1])))
    with pytest.raises(ValueError, match="at least one dimension"):
        tt.take(T(np.float64(1.0)), on_device(np.array([0])))


@given(data=st.data(), base=shapes(min_dims=1, max_dims=3, max_side=3))
def test_concat_stack_split(data, base):
    axis = data.draw(st.integers(-len(base), len(base) - 1), label="axis")
    k = data.draw(st.integers(1, 3), label="k")
    arrays = []
    for _ in range(k):
        s = list(base)
        s[axis] = data.draw(st.integers(0, 3), label="len")
        arrays.append(data.draw(float_arrays(tuple(s)), label="part"))
    check_forward_and_grads(lambda *xs: tt.concat(list(xs), axis=axis),
                            lambda *xs: np.concatenate(xs, axis=axis), *arrays)
    same = [data.draw(float_arrays(base), label="same") for _ in range(k)]
    saxis = data.draw(st.integers(-len(base) - 1, len(base)), label="saxis")
    check_forward_and_grads(lambda *xs: tt.stack(list(xs), axis=saxis),
                            lambda *xs: np.stack(xs, axis=saxis), *same)
    # split: equal sections and explicit points, recombined with weights so each piece matters
    whole = np.concatenate(arrays, axis=axis)
    n = whole.shape[axis]
    points = sorted(data.draw(st.lists(st.integers(0, n), max_size=3), label="points"))

    def split_fn(x):
        parts = tt.split(x, points, axis=axis)
        return tt.concat([p * float(i + 1) for i, p in enumerate(parts)], axis=axis)

    def split_ref(x):
        parts = np.split(x, points, axis=axis)
        return np.concatenate([p * float(i + 1) for i, p in enumerate(parts)], axis=axis)

    check_forward_and_grads(split_fn, split_ref, whole)
    if n:
        pieces = tt.split(T(whole), 1, axis=axis)
        assert len(pieces) == 1 and pieces[0].shape == whole.shape


def test_concat_stack_split_errors():
    with pytest.raises(ValueError, match="tensor 1"):
        tt.concat([T(np.ones((2, 3))), T(np.ones((2, 4)))], axis=0)
    with pytest.raises(ValueError, match="tensor 1"):
        tt.stack([T(np.ones((2, 3))), T(np.ones((3, 2)))])
    with pytest.raises(ValueError, match="sections"):
        tt.split(T(np.ones(5)), 2)
    with pytest.raises(ValueError):
        tt.concat([])


def test_concat_same_tensor_twice_accumulates():
    x = T(np.array([1.0, 2.0]), True)
    (tt.concat([x, x * 2.0, x]) ** 2).sum().backward()
    assert_close(x.grad, 2 * np.array([1.0, 2.0]) * (1 + 4 + 1), dtype=np.float64)


@given(data=st.data(), sh=broadcastable_shapes(3, min_dims=0, max_dims=3, max_side=3))
def test_where(data, sh):
    cond = data.draw(st.lists(st.booleans(), min_size=int(np.prod(sh[0])), max_size=int(np.prod(sh[0]))),
                     label="cond")
    cond = np.array(cond, dtype=bool).reshape(sh[0])
    a = data.draw(float_arrays(sh[1]), label="a")
    b = data.draw(float_arrays(sh[2]), label="b")
    check_forward_and_grads(lambda x, y: tt.where(on_device(cond), x, y),
                            lambda x, y: np.where(cond, x, y), a, b)
    with pytest.raises(TypeError, match="boolean"):
        tt.where(on_device(cond.astype(np.float64)), T(a), T(b))


def test_where_with_scalar_branch():
    x = T(np.array([-1.0, 2.0], np.float32), True)
    out = tt.where(x.data > 0, x, 0.0)
    assert out.dtype == np.float32
    out.sum().backward()
    assert_close(x.grad, [0.0, 1.0])


def test_astype_round_trip():
    x = T(np.array([1.5, -2.0]), True)
    y = x.astype(np.float32)
    assert y.dtype == np.float32
    (y * 3.0).sum().backward()
    assert x.grad.dtype == np.float64
    assert_close(x.grad, [3.0, 3.0], dtype=np.float64)


# --- unary elementwise -----------------------------------------------------------------------
def _np_sigmoid(x):
    return 1 / (1 + np.exp(-x))


UNARY = {
    # name: (tinytt op, numpy reference, value transform for the domain, kinks)
    "exp": (tt.exp, np.exp, lambda a: a, ()),
    "exp_method": (lambda x: x.exp(), np.exp, lambda a: a, ()),
    "log": (tt.log, np.log, lambda a: np.abs(a) + 0.1, ()),
    "sqrt": (tt.sqrt, np.sqrt, lambda a: np.abs(a) + 0.1, ()),
    "tanh": (tt.tanh, np.tanh, lambda a: a, ()),
    "sigmoid": (tt.sigmoid, _np_sigmoid, lambda a: a, ()),
    "relu": (tt.relu, lambda x: np.maximum(x, 0), lambda a: a, (0.0,)),
    "clip": (lambda x: tt.clip(x, -1.0, 2.0), lambda x: np.clip(x, -1.0, 2.0), lambda a: a, (-1.0, 2.0)),
    "clip_min": (lambda x: tt.clip(x, a_min=0.5), lambda x: np.clip(x, 0.5, None), lambda a: a, (0.5,)),
    "clip_max": (lambda x: tt.clip(x, a_max=0.5), lambda x: np.clip(x, None, 0.5), lambda a: a, (0.5,)),
}


@pytest.mark.parametrize("name", sorted(UNARY))
@given(a=float_arrays(shapes(max_dims=3, min_side=0, max_side=4)))
def test_unary_ops(name, a):
    op, ref, domain, kinks = UNARY[name]
    a = away_from(domain(a), kinks)
    check_forward_and_grads(op, ref, a)


def test_clip_errors_and_bound_gradient():
    with pytest.raises(ValueError, match="a_min"):
        tt.clip(T(np.ones(2)))
    with pytest.raises(ValueError, match="greater"):
        tt.clip(T(np.ones(2)), 2.0, 1.0)
    x = T(np.array([-1.0, 0.0, 2.0, 3.0]), True)
    tt.clip(x, -1.0, 2.0).sum().backward()
    assert_close(x.grad, [1.0, 1.0, 1.0, 0.0], dtype=np.float64)  # bounds included


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_stable_for_large_inputs(dtype):
    a = np.array([-1000.0, -100.0, -30.0, 0.0, 30.0, 100.0, 1000.0], dtype)
    x = T(a, True)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        s = tt.sigmoid(x)
        s.sum().backward()
    got = tt.to_numpy(s)
    assert s.dtype == dtype and np.all(np.isfinite(got)) and np.all(np.isfinite(tt.to_numpy(x.grad)))
    assert got[0] == 0.0 and got[-1] == 1.0 and got[3] == 0.5
    assert_close(got, _np_sigmoid(np.clip(a.astype(np.float64), -700, 700)), dtype=dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        tanh = tt.tanh(T(a))
    assert np.all(np.isfinite(tt.to_numpy(tanh)))


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64"])
def test_check_ids_returns_intp_for_every_integer_dtype(dtype):
    # callers do index arithmetic on the result (digit codes, sort keys): no narrow dtype
    ids = np.array([[0, 5], [7, 100]], dtype=dtype)
    got = tt.ops.check_ids(on_device(ids), 101, tt.get_xp(), "ids")
    assert got.dtype == np.intp
    assert np.array_equal(tt.to_numpy(got), ids.astype(np.int64))


def test_check_ids_list_forms():
    xp = tt.get_xp()
    assert tt.ops.check_ids([], 3, xp, "ids").shape == (0,)
    assert tt.ops.check_ids(2, 3, xp, "ids").shape == ()
    with pytest.raises(ValueError, match="rectangular"):
        tt.ops.check_ids([[1, 2], [0]], 3, xp, "ids")
    with pytest.raises(TypeError, match="integer"):
        tt.ops.check_ids(np.array([True]), 3, xp, "ids")


def test_bool_tensor_with_python_numbers_follows_numpy():
    # the number was cast to bool (1 and 2 both True): t + 1 gave [True, True]
    b = np.array([True, False])
    t = tt.Tensor(on_device(b))
    for got, want in ((t + 1, b + 1), (t * 3, b * 3), (t / 2, b / 2), (1 - t, 1 - b), (t + 2.5, b + 2.5)):
        assert np.array_equal(tt.to_numpy(got.data), want)
        assert got.dtype == want.dtype


def test_cast_to_integer_is_not_differentiable():
    x = tt.Tensor(on_device(np.array([1.7, 2.2])), requires_grad=True)
    y = x.astype(np.int64)
    assert not y.requires_grad   # it was, and passed on gradients truncated to int
    assert tt.to_numpy(y.data).tolist() == [1, 2]
    z = x.astype(np.float32)
    assert z.requires_grad
    (z * 0.5).sum().backward()
    assert_close(x.grad, np.full(2, 0.5))


def test_relu_keeps_nan_and_clip_promotes_int_inputs():
    out = tt.relu(tt.Tensor(on_device(np.array([np.nan, -1.0, 2.0]))))
    got = tt.to_numpy(out.data)
    assert np.isnan(got[0]) and got[1:].tolist() == [0.0, 2.0]
    clipped = tt.clip(tt.Tensor(on_device(np.array([0, 1, 2, 3]))), 0.5, 2.5)
    assert tt.to_numpy(clipped.data).tolist() == [0.5, 1.0, 2.0, 2.5]
    x = tt.Tensor(on_device(np.array([0.0, 5.0, -5.0])), requires_grad=True)
    y = tt.clip(x, on_device(np.array([-1.0, 0.0, -6.0])), on_device(np.array([1.0, 4.0, -4.0])))
    assert tt.to_numpy(y.data).tolist() == [0.0, 4.0, -5.0]
    y.sum().backward()
    assert tt.to_numpy(x.grad).tolist() == [1.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="greater"):
        tt.clip(x, on_device(np.array([0.0, 2.0, 0.0])), on_device(np.array([1.0, 1.0, 1.0])))


def test_truth_value_of_tensors():
    assert bool(tt.Tensor(on_device(np.array(2.0))))
    assert not bool(tt.Tensor(on_device(np.array([0.0]))))
    with pytest.raises(ValueError, match="ambiguous"):
        bool(tt.Tensor(on_device(np.zeros(3))))


def test_max_of_a_0d_tensor_is_a_new_array():
    a = on_device(np.array(3.0))
    out = tt.Tensor(a).max()
    out.data[...] = 7.0
    assert float(tt.to_numpy(a)) == 3.0


@contextlib.contextmanager
def _split_reductions(threads):
    """ops' sums and means split over ``threads`` threads from 0 bytes on."""
    from tinytt import ops

    with mock.patch.object(ops, "_PARALLEL_REDUCE_BYTES", 0), \
            mock.patch.dict(os.environ, {"TINYTT_NUM_THREADS": str(threads)}):
        yield


def _assert_numpys_reduction(out, a, name, axis, keepdims=False):
    """``out`` has the bits of NumPy's ``a.<name>(axis)`` (on the NumPy backend). CuPy reduces
    in its own order: there ``out`` is within (n + 1) eps of the same reduction of ``|a|``."""
    want = getattr(a, name)(axis=axis, keepdims=keepdims)
    got = tt.to_numpy(out.data)
    if tt.get_backend() == "numpy":
        np.testing.assert_array_equal(got, want)
        return
    n = np.prod([a.shape[i] for i in np.atleast_1d(axis)])
    bound = (n + 1) * np.finfo(a.dtype).eps * getattr(np.abs(a), name)(axis=axis, keepdims=keepdims)
    assert np.all(np.abs(got - want) <= bound)


@given(shape=shapes(min_dims=2, max_dims=4, min_side=2, max_side=6), data=st.data(),
       dtype=st.sampled_from([np.float32, np.float64]), threads=st.sampled_from([2, 3]),
       keepdims=st.booleans())
def test_split_reductions_are_bit_identical_to_numpy(shape, data, dtype, threads, keepdims):
    """Large sums and means that keep axis 0 are split over the cores by blocks of axis 0
    (forced here for small arrays): the same bits as NumPy's own call, and the same gradient.
    (CuPy has no split path and reduces in its own order: there the values agree with NumPy's
    to rounding.)"""
    from tinytt import ops

    a = data.draw(float_arrays(shape, dtype=dtype, bound=100.0), label="a")
    # other memory layouts too: there NumPy may sum in another order than in a block, so
    # they must not be split (a transposed or Fortran-order input differed by 2.7e-5)
    layout = data.draw(st.sampled_from(["C", "F", "transposed"]), label="layout")
    if layout == "F":
        a = np.asfortranarray(a)
    elif layout == "transposed":
        a = np.ascontiguousarray(a.transpose()).transpose()
    axes = data.draw(st.lists(st.integers(1, len(shape) - 1), min_size=1, unique=True), label="axes")
    axis = tuple(axes) if len(axes) > 1 else axes[0]
    with _split_reductions(threads):
        for name in ("sum", "mean"):
            x = tt.Tensor(on_device(a), requires_grad=True)
            out = getattr(ops, name)(x, axis=axis, keepdims=keepdims)
            want = getattr(a, name)(axis=axis, keepdims=keepdims)
            assert out.dtype == want.dtype and out.shape == want.shape
            _assert_numpys_reduction(out, a, name, axis, keepdims)
            out.sum().backward()
            scale = 1.0 if name == "sum" else 1.0 / np.prod([shape[i] for i in axes])
            assert_close(x.grad, np.full(shape, scale, dtype=dtype), rtol=1e-6, atol=0)


# --- cases from a black-box review (session 12) ---------------------------------------------
def test_tuple_inside_an_index_is_an_integer_array_and_accumulates():
    # NumPy reads x[:, (0, 0)] and x[((0, 0), (1, 1))] as integer-array indices: the
    # gradient of a repeated position must add up, as for a list
    a = np.arange(6.0).reshape(2, 3)
    for index in [(slice(None), (0, 0)), ((0, 0), (1, 1)), (0, (2, 2, 1)), (Ellipsis, [2, 2, 0])]:
        x = T(a, requires_grad=True)
        y = x[index]
        assert_close(y.data, a[index])
        y.sum().backward()
        want = np.zeros_like(a)
        np.add.at(want, index, 1.0)
        assert_close(x.grad, want)
    for empty in [(slice(None), ()), []]:     # an empty index array is an int array in NumPy
        assert T(a)[empty].shape == a[empty].shape


def test_a_scalar_takes_the_other_operands_dtype_on_either_side():
    a32 = np.ones(3, np.float32)
    m = np.array([True, False, True])
    for out in (tt.sub(1.0, a32), tt.mul(2, a32), tt.where(m, 0.0, a32), tt.where(m, a32, 0.0),
                tt.sub(a32, 1.0), 1.0 - T(a32), T(a32) * 2):
        assert out.dtype == np.float32
    # complex operands and scalars, and int true division, as NumPy does
    z64 = T(np.ones(2, np.complex64))
    assert (z64 * 2.0).dtype == np.complex64 and (2.0 * z64).dtype == np.complex64
    assert (T(a32) * 1j).dtype == np.complex64 == (1j * a32).dtype
    assert (T(np.ones(2)) * 1j).dtype == np.complex128
    i8 = T(np.array([1, 2], np.int8))
    assert (i8 / 300).dtype == np.float64 and (i8 + 1).dtype == np.int8
    assert_close((i8 / 300).data, np.array([1, 2]) / 300)


def test_clip_with_array_bounds_that_broadcast_x():
    x_np = np.array([0.5, 2.0, -1.0])
    lo = np.array([[0.0, 0.0, 0.0], [1.0, 1.0, -2.0]])
    x = T(x_np, requires_grad=True)
    y = tt.clip(x, on_device(lo), 1.5)
    assert_close(y.data, np.clip(x_np, lo, 1.5))
    weights = np.arange(6.0).reshape(2, 3)
    (y * T(weights)).sum().backward()
    inside = (x_np >= lo) & (x_np <= 1.5)
    assert_close(x.grad, (weights * inside).sum(axis=0))


def test_iterating_tensors_follows_numpy():
    with pytest.raises(TypeError, match="0-d"):
        list(T(np.array(3.0)))
    rows = list(T(np.arange(6.0).reshape(2, 3)))
    assert len(rows) == 2 and all(isinstance(r, tt.Tensor) for r in rows)
    assert_close(rows[1].data, np.array([3.0, 4.0, 5.0]))


def test_max_of_a_zero_size_tensor_over_a_non_empty_axis():
    x = T(np.zeros((0, 3)), requires_grad=True)
    y = tt.max(x, axis=1)
    assert y.shape == (0,)
    y.sum().backward()
    assert x.grad.shape == (0, 3)
    with pytest.raises(ValueError, match="empty axis"):
        tt.max(x, axis=0)
    with pytest.raises(ValueError, match="empty axis"):
        tt.max(x)


def test_a_bool_axis_is_a_type_error():
    for reduce in (tt.sum, tt.mean, tt.max):
        with pytest.raises(TypeError, match="axis must be an int"):
            reduce(T(np.ones((2, 3))), axis=True)


def test_backward_from_two_threads_into_one_leaf_loses_nothing():
    # NumPy releases the GIL inside the add that accumulates a leaf's gradient
    import threading

    w = T(np.ones(200_000), requires_grad=True)
    seed = on_device(np.ones(200_000))

    def work():
        for _ in range(30):
            (w * 2.0).backward(seed)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert float(w.grad[0]) == 120.0 and float(w.grad.min()) == 120.0


@pytest.mark.parametrize("layout", ["F", "transposed"])
def test_split_reductions_leave_other_layouts_to_numpy(layout):
    # a pinned case of the property above (it differed in the last bits when split)
    from tinytt import ops

    a = np.random.default_rng(0).standard_normal((16, 200, 64)).astype(np.float32)
    a = np.asfortranarray(a) if layout == "F" else np.ascontiguousarray(a.transpose()).transpose()
    with _split_reductions(2):
        for name in ("sum", "mean"):
            _assert_numpys_reduction(getattr(ops, name)(tt.Tensor(on_device(a)), axis=1), a, name, 1)


def test_api_contracts_from_a_review_against_the_docs():
    """Each case was a silent wrong result or an obscure error before."""
    import tinytt as tt

    ints = np.array([1, 2, 3])
    # the softmax family on integer input: computed in float64 (it came back as integers)
    np.testing.assert_allclose(tt.softmax(ints).data, np.exp(ints) / np.exp(ints).sum())
    np.testing.assert_allclose(tt.log_softmax(ints).data, ints - np.log(np.exp(ints).sum()))
    assert abs(float(tt.logsumexp(np.array([1000, 1000])).data) - (1000 + np.log(2))) < 1e-9
    x = tt.Tensor(np.arange(12.0).reshape(2, 6))
    for fn in (tt.softmax, tt.log_softmax, tt.logsumexp):
        for axis in (True, (0, 1), None):
            with pytest.raises(TypeError, match="axis must be a single int"):
                fn(x, axis=axis)
    with pytest.raises(TypeError, match="keepdims"):
        tt.logsumexp(x, keepdims="no")
    # split points must be ints (1.5 split at 1, True at 1, "12" at 1 and 2)
    for bad in ([1.5], [True], "12", 1.5):
        with pytest.raises(TypeError, match="split"):
            tt.split(x, bad, axis=1)
    assert [p.shape for p in tt.split(x, 3.0, axis=1)] == [(2, 2)] * 3
    with pytest.raises(TypeError, match="transpose: axes must be ints"):
        tt.transpose(x, True, False)
    with pytest.raises(TypeError, match="axis must be None, an int or a tuple"):
        tt.sum(x, axis=1.0)
    assert tt.reshape(x, np.array([3, 4])).shape == (3, 4)
    with pytest.raises(TypeError, match="clip"):
        tt.clip(x, tt.Tensor(np.array(1.0)), None)
    # requires_grad set by assignment on an integer tensor: the gradient was truncated to ints
    i = tt.Tensor(np.array([1, 2]))
    i.requires_grad = True
    with pytest.raises(TypeError, match="only floating-point tensors"):
        tt.mean(i * 1.0).backward()
    with pytest.raises(TypeError, match="requires_grad must be a bool"):
        tt.Tensor(np.ones(2), requires_grad="no")
    w = tt.Tensor(np.ones(2), requires_grad=True)
    for seed in (np.array(["1", "2"]), np.array([1, 2], dtype=object), np.array([1j, 2j])):
        with pytest.raises(TypeError, match="backward"):
            (w * 2).backward(seed)
    for loss in (tt.binary_cross_entropy_with_logits, tt.mse):
        with pytest.raises(TypeError, match="targets must be a real numeric"):
            loss(tt.Tensor(np.zeros(3)), ["0", "1", "1"])
    for kw in (dict(training="False"), dict(rng=0)):
        with pytest.raises(TypeError, match="dropout"):
            tt.dropout(np.ones(3), 0.5, **kw)


def test_the_new_checks_keep_what_numpy_style_code_passes():
    """NumPy integer scalars, 0-d arrays, ranges and the like stay accepted (a review of the
    checks above found each refused at first)."""
    import tinytt as tt
    from tinytt.data import sha256_file
    from tinytt.nn.init import make_rng
    from tinytt.train import ClassificationData

    x = tt.Tensor(np.arange(12.0).reshape(2, 6))
    assert tt.sum(x, axis=range(2)).shape == () and tt.sum(x, axis=np.array([0, 1])).shape == ()
    assert tt.logsumexp(x, keepdims=1).shape == (2, 1)
    assert [p.shape for p in tt.split(x, np.array(2), axis=1)] == [(2, 3)] * 2
    assert [p.shape for p in tt.split(x, np.float32(2), axis=1)] == [(2, 3)] * 2
    logits, targets = np.zeros((2, 3)), np.array([0, -100])
    assert float(tt.cross_entropy(logits, targets, ignore_index=np.array(-100)).data) == pytest.approx(np.log(3))
    assert ClassificationData([[1], [2]], np.array([True, False])).labels.tolist() == [1, 0]
    assert make_rng(np.random.SeedSequence(1)).random() == np.random.default_rng(np.random.SeedSequence(1)).random()
    assert make_rng([1, 2]).random() == np.random.default_rng([1, 2]).random()
    assert len(sha256_file(__file__, chunk_size=np.int64(1024))) == 64
    z = tt.Tensor(np.array([[1.0, 2.0, 3.0]]) + 0.5j)              # complex input keeps working
    np.testing.assert_allclose(tt.logsumexp(z).data, np.log(np.exp(z.data).sum(axis=-1)))
    assert float(tt.cross_entropy(logits, np.array([0, 1]), label_smoothing=np.array(0.1)).data) == \
        pytest.approx(np.log(3))
    assert [p.shape for p in tt.split(tt.Tensor(np.arange(6.0)), (np.array(2), np.array(4)))] == [(2,)] * 3


@pytest.mark.parametrize("index, axis, size", [
    ([0, 4], 0, 4), ([-5], 0, 4), ((slice(None), [0, 3]), 1, 3), ((Ellipsis, [3]), 2, 3),
    ((None, 1, [7]), 1, 3), ((np.array([[True, False, True, True]]).T.reshape(4, 1)[:, 0], [5]), 1, 3),
])
def test_getitem_out_of_bounds_index_array_raises_on_every_backend(index, axis, size):
    # NumPy raises IndexError; CuPy wraps the index around (row 1 for 5 of 4) unless checked
    x = T(np.arange(36.0).reshape(4, 3, 3), True)
    parts = index if isinstance(index, tuple) else (index,)
    parts = tuple(on_device(np.asarray(p)) if isinstance(p, (list, np.ndarray)) else p for p in parts)
    with pytest.raises(IndexError, match=f"out of bounds for axis {axis} with size {size}"):
        x[parts if isinstance(index, tuple) else parts[0]]
    x[on_device(np.array([-4, 3]))].sum().backward()      # in range, negative ones included
    assert_close(x.grad[0], np.ones((3, 3)), dtype=np.float64)


def test_complex_getitem_and_take_gradients_accumulate():
    # CuPy's scatter_add has no complex kernels: real and imaginary parts go separately
    x = T(np.array([1 + 2j, 3 - 1j, 0.5j]), True)
    idx = on_device(np.array([2, 0, 2]))
    (x[idx] * on_device(np.array([1.0, 2j, 3.0]))).sum().backward()
    assert_close(x.grad, np.array([2j, 0, 4.0]), rtol=1e-12, atol=1e-12)
    y = T(np.array([[1 + 1j], [2.0 + 0j]]), True)
    tt.take(y, on_device(np.array([1, 1, 0]))).sum().backward()
    assert_close(y.grad, np.array([[1.0 + 0j], [2.0 + 0j]]), rtol=1e-12, atol=1e-12)


def test_clip_takes_array_bounds_on_the_tensors_backend():
    x = T(np.array([-2.0, 0.5, 3.0]), True)
    out = tt.clip(x, np.array([-1.0, 0.0, 0.0]), [1.0, 1.0, 2.0])
    assert_close(out, [-1.0, 0.5, 2.0], dtype=np.float64)
    out.sum().backward()
    assert_close(x.grad, [0.0, 1.0, 0.0], dtype=np.float64)


@pytest.mark.parametrize("data", ["text", ["a", "b"], [b"x"], object()])
def test_non_numeric_python_data_is_a_type_error_on_every_backend(data):
    with pytest.raises(TypeError, match="numeric"):
        tt.Tensor(data)


def test_backward_does_not_read_index_buffers_the_caller_reused():
    # take, getitem, where, BCE targets and TensorTrain.gather kept the caller's int64 ids /
    # mask / targets and read them at backward: reusing the buffer for the next batch
    # between forward and backward changed the gradient (int32 ids were converted, so right)
    w = np.arange(12.0).reshape(6, 2)
    want = np.array([1.0, 2.0, 0.0, 0.0, 0.0, 1.0])
    for op in (lambda x, i: tt.take(x, i), lambda x, i: x[i], lambda x, i: x[(i,)]):
        x = T(w, True)
        idx = on_device(np.array([0, 1, 1, 5]))
        y = op(x, idx)
        idx[...] = 2
        y.backward(on_device(np.ones((4, 2))))
        assert_close(x.grad[:, 0], want, dtype=np.float64)
    a = T(np.ones(3), True)
    cond = on_device(np.array([True, False, True]))
    y = tt.where(cond, a, 0.0)
    cond[...] = False
    y.backward(on_device(np.ones(3)))
    assert_close(a.grad, [1.0, 0.0, 1.0], dtype=np.float64)
    logits = T(np.zeros(3), True)
    targets = on_device(np.ones(3))
    loss = tt.binary_cross_entropy_with_logits(logits, targets)
    targets[...] = 0
    loss.backward()
    assert_close(logits.grad, [-1 / 6] * 3, dtype=np.float64)
    core = T(np.ones((1, 3, 1)), True)
    ids = on_device(np.array([[0], [2]]))
    y = tt.tt.TensorTrain([core]).gather(ids)
    ids[...] = 1
    y.backward(on_device(np.ones(2)))
    assert_close(core.grad.reshape(-1), [1.0, 0.0, 1.0], dtype=np.float64)


def test_lists_of_backend_arrays_and_python_bools_in_indices():
    # on CuPy, lists holding device arrays went through NumPy first and were refused; a
    # Python bool in an index (a new axis, like None) was counted as naming an axis
    d = on_device(np.array(1.0))
    assert_close(tt.Tensor([d, d]), [1.0, 1.0], dtype=np.float64)
    y = T(np.arange(15.0).reshape(5, 3), True)
    i0, i4 = on_device(np.array(0)), on_device(np.array(4))
    assert_close(y[[i0, i4]], np.arange(15.0).reshape(5, 3)[[0, 4]], dtype=np.float64)
    assert_close(tt.take(y, [i0, i4]), np.arange(15.0).reshape(5, 3)[[0, 4]], dtype=np.float64)
    for index in ((True, [0, 4]), (True, slice(None), [2]), (None, False, [1])):
        want = np.arange(15.0).reshape(5, 3)[index]
        got = y[tuple(on_device(np.array(p)) if isinstance(p, list) else p for p in index)]
        assert tuple(got.shape) == want.shape
        if tt.get_backend() == "numpy":   # (the CPU stand-in for CuPy mis-reads bool scalars here)
            assert_close(got, want, dtype=np.float64)


@pytest.mark.parametrize("fn", [lambda a: tt.concat([a, a], axis=None), lambda a: tt.concat([a, a], axis=(1, 0)),
                                lambda a: tt.stack([a, a], axis=(2, 1)), lambda a: tt.split(a, 2, axis=None),
                                lambda a: tt.split(a, 2, axis=(1, 0))])
def test_single_axis_ops_refuse_none_and_tuples(fn):
    """concat/stack/split took the smallest axis of a tuple, and concat(axis=None) joined along
    axis 0 where NumPy flattens: a TypeError now."""
    with pytest.raises(TypeError, match="axis must be a single int"):
        fn(T(np.ones((2, 2))))


@pytest.mark.parametrize("fn", [tt.sum, tt.mean, tt.max])
def test_reductions_check_keepdims(fn):
    """keepdims="no" failed deep inside NumPy ('str' object cannot be interpreted as an integer)."""
    x = T(np.ones((2, 3)))
    for bad in ("no", 2, None):
        with pytest.raises(TypeError, match=f"{fn.__name__}: keepdims must be a bool"):
            fn(x, axis=1, keepdims=bad)
    assert fn(x, axis=1, keepdims=np.True_).shape == (2, 1) and fn(x, axis=0, keepdims=0).shape == (3,)
