"""TensorTrain container and algebra: every op equals its dense counterpart; gradients; errors."""

import math
import numpy
import pytest
from hypothesis import given, strategies as st

import tinytt
from tinytt.testing import check_grads
from tinytt.tensor import Tensor
from tinytt.tt import TensorTrain, dot, hadamard, norm, random_tt, scale
from tinytt.tt.cores import full_cores

DTYPES = [numpy.float32, numpy.float64]
RTOL = {numpy.float32: 1e-4, numpy.float64: 1e-10}


@st.composite
def tt_pair(draw, max_dims=6, max_side=6, max_rank=5):
    """Two random TTs of one shape (float64 NumPy cores) and a dtype."""
    nd = draw(st.integers(1, max_dims))
    shape = tuple(draw(st.lists(st.integers(1, max_side), min_size=nd, max_size=nd)))
    rng = numpy.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    pair = []
    for _ in range(2):
        ranks = [1] + draw(st.lists(st.integers(1, max_rank), min_size=nd - 1, max_size=nd - 1)) + [1]
        pair.append([rng.standard_normal((ranks[k], n, ranks[k + 1])) for k, n in enumerate(shape)])
    return pair[0], pair[1], draw(st.sampled_from(DTYPES))


def make(cores, dtype):
    return TensorTrain([tinytt.to_device(c.astype(dtype)) for c in cores])


def ref64(cores, dtype):
    """Float64 dense value of the cores as stored in ``dtype`` and the |.|-weighted scale."""
    cs = [c.astype(dtype).astype(numpy.float64) for c in cores]
    return full_cores(cs), full_cores([numpy.abs(c) for c in cs])


def assert_tt_close(actual, expected, scale, dtype):
    """|actual - expected| <= rtol * scale elementwise, scale = sum over paths of |products|."""
    a = tinytt.to_numpy(actual).astype(numpy.float64)
    assert a.shape == numpy.shape(expected)
    bound = RTOL[dtype] * (numpy.asarray(scale) + 1e-30)
    assert numpy.all(numpy.abs(a - expected) <= bound), numpy.max(numpy.abs(a - expected) - bound)


@given(tt_pair())
def test_full_add_sub_scale(pair):
    ca, cb, dtype = pair
    a, b = make(ca, dtype), make(cb, dtype)
    (fa, sa), (fb, sb) = ref64(ca, dtype), ref64(cb, dtype)
    assert a.shape == fa.shape and a.ndim == len(ca) and a.dtype == dtype
    assert a.ranks == tuple([1] + [c.shape[2] for c in ca])
    assert_tt_close(a.full(), fa, sa, dtype)
    s = a + b
    assert s.ranks[1:-1] == tuple(x + y for x, y in zip(a.ranks[1:-1], b.ranks[1:-1]))
    assert_tt_close(s.full(), fa + fb, sa + sb, dtype)
    assert_tt_close((a - b).full(), fa - fb, sa + sb, dtype)
    assert_tt_close((2.5 * a).full(), 2.5 * fa, 2.5 * sa, dtype)
    assert_tt_close((a * -3.0).full(), -3.0 * fa, 3.0 * sa, dtype)
    assert_tt_close((-a).full(), -fa, sa, dtype)
    assert_tt_close((a / 4.0).full(), fa / 4.0, sa / 4.0, dtype)
    assert (2.0 * a).dtype == dtype


@given(tt_pair())
def test_hadamard_dot_norm(pair):
    ca, cb, dtype = pair
    a, b = make(ca, dtype), make(cb, dtype)
    (fa, sa), (fb, sb) = ref64(ca, dtype), ref64(cb, dtype)
    h = hadamard(a, b)
    assert h.ranks == tuple(x * y for x, y in zip(a.ranks, b.ranks))
    assert_tt_close(h.full(), fa * fb, sa * sb, dtype)
    d = dot(a, b)
    assert d.shape == () and d.dtype == dtype
    assert_tt_close(d, numpy.sum(fa * fb), numpy.sum(sa * sb), dtype)
    n = a.norm()
    assert n.shape == () and n.dtype == dtype
    assert_tt_close(n, numpy.linalg.norm(fa), numpy.linalg.norm(sa), dtype)
    assert_tt_close(norm(a - a), 0.0, 2 * numpy.linalg.norm(sa), dtype)


@given(tt_pair(), st.integers(0, 2**32 - 1))
def test_element_access_and_gather(pair, seed):
    ca, _, dtype = pair
    a = make(ca, dtype)
    fa, sa = ref64(ca, dtype)
    rng = numpy.random.default_rng(seed)
    idx = numpy.stack([rng.integers(0, n, size=7) for n in a.shape], axis=1)
    idx = numpy.concatenate([idx, idx[:2]])  # repeated indices
    got = a.gather(tinytt.to_device(idx))
    assert got.shape == (9,)
    assert_tt_close(got, fa[tuple(idx.T)], sa[tuple(idx.T)], dtype)
    first = tuple(int(i) for i in idx[0])
    assert_tt_close(a[first], fa[first], sa[first], dtype)
    neg = tuple(i - n for i, n in zip(first, a.shape))
    assert_tt_close(a[neg], fa[first], sa[first], dtype)


def test_gradients():
    rng = numpy.random.default_rng(0)
    shape = (3, 2, 4)
    ca = [rng.standard_normal(s) for s in [(1, 3, 2), (2, 2, 3), (3, 4, 1)]]
    cb = [rng.standard_normal(s) for s in [(1, 3, 3), (3, 2, 2), (2, 4, 1)]]
    ca, cb = [tinytt.to_device(c) for c in ca], [tinytt.to_device(c) for c in cb]
    idx = tinytt.to_device(numpy.array([[0, 1, 3], [2, 0, 0], [0, 1, 3]]))
    check_grads(lambda *c: TensorTrain(c).full(), *ca)
    check_grads(lambda *c: dot(TensorTrain(c[:3]), TensorTrain(c[3:])), *ca, *cb)
    check_grads(lambda *c: TensorTrain(c).norm(), *ca)
    check_grads(lambda *c: hadamard(TensorTrain(c[:3]), TensorTrain(c[3:])).full(), *ca, *cb)
    check_grads(lambda *c: (TensorTrain(c[:3]) - TensorTrain(c[3:]) * 2.0).full(), *ca, *cb)
    check_grads(lambda *c: TensorTrain(c).gather(idx), *ca)
    check_grads(lambda *c: TensorTrain(c)[2, 1, 0], *ca)
    check_grads(lambda s, *c: (TensorTrain(c) * s).full(), tinytt.to_device(numpy.array(1.5)), *ca)
    assert shape == TensorTrain(ca).shape


def test_norm_gradient_at_zero_is_finite():
    c = [Tensor(tinytt.to_device(numpy.zeros(s)), requires_grad=True) for s in [(1, 2, 2), (2, 3, 1)]]
    n = TensorTrain(c).norm()
    n.backward()
    assert float(tinytt.to_numpy(n.data)) == 0.0
    assert all(numpy.all(numpy.isfinite(tinytt.to_numpy(x.grad))) for x in c)


def test_norm_is_stable_for_cancellation():
    a = random_tt((4, 5, 6), 3, seed=1)
    b = a + (-1.0 + 1e-9) * a  # = 1e-9 * a
    ratio = float(tinytt.to_numpy(b.norm().data)) / float(tinytt.to_numpy(a.norm().data))
    assert ratio == pytest.approx(1e-9, rel=1e-5)


def test_random_tt():
    a = random_tt((3, 4, 5), [1, 2, 3, 1], seed=3, dtype="float32")
    assert a.ranks == (1, 2, 3, 1) and a.dtype == numpy.float32
    b = random_tt((3, 4, 5), [1, 2, 3, 1], seed=3, dtype="float32")
    numpy.testing.assert_array_equal(tinytt.to_numpy(a.full()), tinytt.to_numpy(b.full()))
    big = random_tt((8, 8, 8, 8), 6, seed=0)
    var = float(numpy.var(tinytt.to_numpy(big.full())))
    assert 0.3 < var < 3.0


def test_bad_inputs():
    xp = tinytt.get_xp()
    good = [xp.ones((1, 2, 3)), xp.ones((3, 2, 1))]
    with pytest.raises(ValueError, match="rank mismatch"):
        TensorTrain([xp.ones((1, 2, 3)), xp.ones((2, 2, 1))])
    with pytest.raises(ValueError, match="boundary ranks"):
        TensorTrain([xp.ones((2, 2, 3)), xp.ones((3, 2, 1))])
    with pytest.raises(ValueError, match="3-D"):
        TensorTrain([xp.ones((1, 2, 3, 1))])
    with pytest.raises(TypeError, match="one dtype"):
        TensorTrain([xp.ones((1, 2, 3)), xp.ones((3, 2, 1), dtype=xp.float32)])
    with pytest.raises(TypeError, match="floating"):
        TensorTrain([xp.ones((1, 2, 1), dtype=xp.int64)])
    with pytest.raises(ValueError, match="at least one core"):
        TensorTrain([])
    a = TensorTrain(good)
    with pytest.raises(ValueError, match="shapes differ"):
        _ = a + TensorTrain([xp.ones((1, 3, 1)), xp.ones((1, 2, 1))])
    with pytest.raises(TypeError, match="dtypes differ"):
        dot(a, TensorTrain([g.astype(xp.float32) for g in good]))
    with pytest.raises(TypeError, match="tuple of 2 ints"):
        _ = a[0]
    with pytest.raises(IndexError, match="out of range"):
        _ = a[0, 2]
    with pytest.raises(TypeError, match=r"shape \(K, 2\)"):
        a.gather(xp.zeros((3, 3), dtype=xp.int64))
    with pytest.raises(IndexError):
        a.gather(xp.asarray([[0, 5]]))
    with pytest.raises(TypeError, match="hadamard"):
        _ = a * a
    with pytest.raises(ValueError, match="direction"):
        a.orthogonalize("up")
    for bad_c in ("x", [1.0, 2.0], True, 1j):
        with pytest.raises(TypeError, match="scale: c must be"):
            scale(a, bad_c)


@pytest.mark.parametrize("scale", [1e-300, 1e-200, 1e200, 1e300])
def test_norm_and_its_gradient_at_extreme_scales(scale):
    # <A, A> underflows (1e-200) or overflows (1e200): the value came out 0, and with
    # requires_grad the gradient path gave NaN (inf - inf)
    a = random_tt((3, 4, 5), 3, seed=1)
    want = float(tinytt.to_numpy(norm(a).data))
    assert math.isclose(float(tinytt.to_numpy(norm(a * scale).data)), want * scale, rel_tol=1e-12)
    g = random_tt((3, 4, 5), 3, seed=1, requires_grad=True)
    norm(g).backward()
    unit = [tinytt.to_numpy(c.grad).copy() for c in g.cores]
    for c in g.cores:
        c.grad = None
    value = norm(g * scale)
    assert math.isclose(float(tinytt.to_numpy(value.data)), want * scale, rel_tol=1e-12)
    value.backward()
    for c, u in zip(g.cores, unit):
        got = tinytt.to_numpy(c.grad)
        assert numpy.all(numpy.isfinite(got))
        numpy.testing.assert_allclose(got / scale, u, rtol=1e-10, atol=1e-12)


def test_random_tt_rejects_non_integer_shapes():
    for bad in [(2.5, 3), "23", (True, 2)]:
        with pytest.raises(ValueError, match="shape"):
            random_tt(bad, 2)
    with pytest.raises(TypeError, match="shape"):
        random_tt(3, 2)


def test_float32_tt_scaled_by_a_float64_0d_array_stays_float32():
    a = random_tt((3, 4), 2, seed=0, dtype="float32")
    for out in (a * tinytt.to_device(numpy.array(2.0)), a / Tensor(tinytt.to_device(numpy.array(2.0)))):
        assert out.dtype == numpy.float32
    numpy.testing.assert_allclose(tinytt.to_numpy((a * tinytt.to_device(numpy.array(2.0))).full().data),
                                  2 * tinytt.to_numpy(a.full().data), rtol=1e-6)


@pytest.mark.parametrize("dtype,scale", [("float32", 6e-40), ("float32", 1e38), ("float64", 1e-310),
                                         ("float64", 1e300)])
@pytest.mark.parametrize("core", [0, 2])
def test_norm_gradient_when_one_core_holds_an_extreme_scale(dtype, scale, core):
    # float32 near its limits gave a NaN value; a subnormal float64 norm gave zero gradients
    base = random_tt((3, 4, 5), 3, seed=1)
    leaves = [Tensor(c.data.copy(), requires_grad=True) for c in base.cores]
    ref = norm(TensorTrain(leaves))
    ref.backward()
    arrays = [tinytt.to_numpy(c.data).copy() for c in base.cores]
    arrays[core] = arrays[core] * scale
    scaled = [Tensor(tinytt.to_device(a.astype(dtype)), requires_grad=True) for a in arrays]
    value = norm(TensorTrain(scaled))
    value.backward()
    tol = 1e-5 if dtype == "float32" else 1e-12
    assert math.isclose(float(tinytt.to_numpy(value.data)), float(tinytt.to_numpy(ref.data)) * scale, rel_tol=tol)
    for k, (leaf, s) in enumerate(zip(leaves, scaled)):
        want = tinytt.to_numpy(leaf.grad) * (1.0 if k == core else scale)
        got = tinytt.to_numpy(s.grad).astype(numpy.float64)
        assert numpy.all(numpy.isfinite(got))
        # (float32 gradients of a ~1e-39 norm are themselves subnormal: compare to their scale)
        numpy.testing.assert_allclose(got, want, rtol=10 * tol, atol=10 * tol * numpy.abs(want).max())


@pytest.mark.parametrize("dtype,scales", [(numpy.float64, (1e-250, 1e200, 1e200)),
                                          (numpy.float64, (1e200, 1e-250, 1e-250)),
                                          (numpy.float64, (1e200, 1e-123, 1e-200)),   # subnormal, not 0
                                          (numpy.float64, (1e-200, 1e-123, 1e200)),
                                          (numpy.float32, (1e-30, 1e20, 1e20))])
def test_norm_and_orthogonalize_when_partial_products_leave_the_dtype(dtype, scales):
    # the norm fits the dtype but the right sweep's partial products do not: tt.norm gave
    # NaN (overflow) or 0 (underflow), orthogonalize non-finite cores
    rng = numpy.random.default_rng(0)
    base = [rng.standard_normal(s) for s in [(1, 3, 2), (2, 3, 2), (2, 3, 1)]]
    a = TensorTrain([tinytt.to_device((c * f).astype(dtype)) for c, f in zip(base, scales)])
    dense = full_cores(base)
    total_scale = math.exp(sum(math.log(f) for f in scales))   # (1e-200 * 1e-123 is subnormal)
    want = numpy.linalg.norm(dense) * total_scale
    got = float(tinytt.to_numpy(norm(a).data))
    assert got == pytest.approx(want, rel=1e-5 if dtype == numpy.float32 else 1e-12)
    for direction in ("left", "right"):
        o = a.orthogonalize(direction)
        assert all(numpy.isfinite(tinytt.to_numpy(c.data)).all() for c in o.cores)
        back = tinytt.to_numpy(o.full().data).astype(numpy.float64) / total_scale
        numpy.testing.assert_allclose(back, dense, rtol=1e-4 if dtype == numpy.float32 else 1e-10, atol=0)


def test_norm_that_overflows_is_inf_with_or_without_grad():
    rng = numpy.random.default_rng(0)
    cores = [rng.standard_normal((1, 3, 2)) * 1e200, rng.standard_normal((2, 3, 1)) * 1e200]   # ~1e400
    for requires_grad in (False, True):
        a = TensorTrain([Tensor(tinytt.to_device(c), requires_grad=requires_grad) for c in cores])
        with numpy.errstate(over="ignore"):
            n = norm(a)
        assert float(tinytt.to_numpy(n.data)) == numpy.inf


def test_float16_tts_get_a_type_error_from_qr_based_ops():
    rng = numpy.random.default_rng(0)
    a = TensorTrain([tinytt.to_device(rng.standard_normal(s).astype(numpy.float16)) for s in [(1, 3, 2), (2, 3, 1)]])
    for op in (lambda: norm(a), lambda: a.round(1e-3), lambda: a.orthogonalize()):
        with pytest.raises(TypeError, match="float32 or float64"):
            op()


def test_orthogonalize_refuses_a_norm_beyond_the_dtype():
    # a float32 TT of norm 8e38 has no orthogonal form in float32 (the norm sits in one core)
    a = TensorTrain([tinytt.to_device(numpy.full((1, 4, 1), v, numpy.float32)) for v in (1e13, 1e12, 1e13)])
    for direction in ("left", "right"):
        with pytest.raises(OverflowError, match="orthogonal form"):
            a.orthogonalize(direction)
    assert float(tinytt.to_numpy(norm(a).data)) == numpy.inf    # float32 cannot hold 8e38 either


def test_orthogonalize_of_a_tiny_norm_or_nan_cores():
    # below the normal range the norm's core holds subnormals (no OverflowError), and NaN
    # cores give NaN, as before the power-of-two scaling
    for value, dtype in ((1e-13, numpy.float32), (1e-105, numpy.float64)):
        a = TensorTrain([tinytt.to_device(numpy.full((1, 4, 1), value, dtype)) for _ in range(3)])
        for direction in ("left", "right"):
            back = tinytt.to_numpy(a.orthogonalize(direction).full().data).astype(numpy.float64)
            numpy.testing.assert_allclose(back, float(value) ** 3, rtol=1e-2)   # subnormal precision
    bad = TensorTrain([tinytt.to_device(numpy.full((1, 4, 1), numpy.nan)), tinytt.to_device(numpy.ones((1, 4, 1)))])
    assert numpy.isnan(tinytt.to_numpy(bad.orthogonalize().full().data)).all()


@given(pair=tt_pair(max_dims=5, max_side=4, max_rank=3),
       steps=st.lists(st.integers(-1000, 1000), min_size=4, max_size=4))
def test_unevenly_scaled_cores_give_the_tensors_values(pair, steps):
    # cores times powers of two whose product is 1 (the same tensor): contracted as they are,
    # the partial products overflowed or underflowed (dot gave 0.0 or nan for an O(1) tensor).
    # The first k cores together carry 2**u_k (u_0 = u_N = 0, |u_k| <= 1000, so <A, A>'s
    # partial products reach 2**2000); each core's own shift stays within 1000 either way,
    # so no core of the test's input is subnormal or infinite
    a, b, _ = pair
    n = len(a)
    if n < 2:
        return
    u = [0]
    for d in steps[:n - 1]:
        u.append(max(-1000, min(1000, u[-1] + d)))
    u.append(0)
    shifts = [u[k + 1] - u[k] for k in range(n)]
    scaled = TensorTrain([tinytt.to_device(numpy.ldexp(c, k)) for c, k in zip(a, shifts)])
    plain_b = TensorTrain([tinytt.to_device(c) for c in b])
    dense_a, dense_b = full_cores(a), full_cores(b)
    scale_ab = numpy.abs(dense_a).sum() * numpy.abs(dense_b).sum()
    assert abs(float(tinytt.to_numpy(dot(scaled, plain_b).data)) - (dense_a * dense_b).sum()) <= 1e-12 * scale_ab
    assert abs(float(tinytt.to_numpy(dot(scaled, scaled).data)) - (dense_a ** 2).sum()) \
        <= 1e-12 * numpy.abs(dense_a).sum() ** 2
    numpy.testing.assert_allclose(tinytt.to_numpy(scaled.full().data), dense_a, rtol=1e-12,
                                  atol=1e-12 * numpy.abs(dense_a).max())
    prod = tinytt.to_numpy(hadamard(scaled, scaled).full().data)
    numpy.testing.assert_allclose(prod, dense_a ** 2, rtol=1e-12, atol=1e-12 * (dense_a ** 2).max())


def test_unevenly_scaled_float32_cores_and_gradients():
    rng = numpy.random.default_rng(0)
    cores = [rng.standard_normal(s) for s in ((1, 3, 2), (2, 4, 3), (3, 5, 1))]
    want = (full_cores(cores) ** 2).sum()
    a32 = TensorTrain([tinytt.to_device(numpy.ldexp(c, k).astype(numpy.float32))
                       for c, k in zip(cores, (-100, 100, 0))])
    assert float(tinytt.to_numpy(dot(a32, a32).data)) == pytest.approx(want, rel=1e-5)
    # gradient of <A, A> in core 0 scaled by 2**-660 is 2**660 times the unscaled one
    scaled = [Tensor(tinytt.to_device(numpy.ldexp(c, k)), requires_grad=True) for c, k in zip(cores, (-660, 660, 0))]
    plain = [Tensor(tinytt.to_device(c), requires_grad=True) for c in cores]
    dot(TensorTrain(scaled), TensorTrain(scaled)).backward()
    dot(TensorTrain(plain), TensorTrain(plain)).backward()
    numpy.testing.assert_allclose(tinytt.to_numpy(scaled[0].grad), numpy.ldexp(tinytt.to_numpy(plain[0].grad), 660),
                                  rtol=1e-12)
    numpy.testing.assert_allclose(tinytt.to_numpy(scaled[2].grad), tinytt.to_numpy(plain[2].grad), rtol=1e-12)


def test_tensor_operand_on_the_left_defers_to_the_tt():
    a = random_tt((2, 3), 2, seed=0)
    numpy.testing.assert_allclose(tinytt.to_numpy((Tensor(2.0) * a).full()), 2 * tinytt.to_numpy(a.full()))
    numpy.testing.assert_allclose(tinytt.to_numpy((Tensor(tinytt.to_device(numpy.float64(2.0))) * a).full()),
                                  tinytt.to_numpy((a * Tensor(2.0)).full()))
    with pytest.raises(TypeError, match="unsupported operand"):
        Tensor(tinytt.to_device(numpy.ones((2, 3)))) @ a


@pytest.mark.parametrize("zero", [0, 0.0, numpy.float64(0.0), numpy.int32(0)])
def test_division_by_a_zero_scalar_raises_for_every_scalar_type(zero):
    with pytest.raises(ZeroDivisionError, match="division by zero"):
        random_tt((2, 3), 2, seed=0) / zero


def test_full_of_a_one_core_tt_is_a_copy_not_a_view_of_the_core():
    # writing into full() (or TTEmbedding.to_dense() with n_cores=1) changed the parameter
    core = Tensor(tinytt.to_device(numpy.arange(3.0).reshape(1, 3, 1)), requires_grad=True)
    dense = TensorTrain([core]).full()
    dense.data[...] = 0
    assert tinytt.to_numpy(core.data).ravel().tolist() == [0.0, 1.0, 2.0]
    emb = tinytt.nn.TTEmbedding(4, 3, rank=2, n_cores=1, dtype="float64", seed=0)
    row = tinytt.to_numpy(emb(tinytt.to_device(numpy.array([1]))).data)
    emb.to_dense().data[...] = 0
    numpy.testing.assert_array_equal(tinytt.to_numpy(emb(tinytt.to_device(numpy.array([1]))).data), row)
