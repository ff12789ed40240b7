"""Fused composites (tinytt/functional.py): softmax family, losses, dropout."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinytt as tt
from conftest import on_device
from tinytt.testing import assert_close, check_grads
from tinytt.testing.strategies import float_arrays, shapes


def T(a, requires_grad=False):
    return tt.Tensor(on_device(a), requires_grad=requires_grad)


def np_log_softmax(x, axis=-1):
    m = x.max(axis=axis, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=axis, keepdims=True))


def np_cross_entropy(logits, targets, ignore_index=None, label_smoothing=0.0):
    logp = np_log_softmax(logits)
    c = logits.shape[-1]
    keep = np.ones(targets.shape, bool) if ignore_index is None else targets != ignore_index
    total, count = 0.0, 0
    for idx in np.ndindex(targets.shape):
        if not keep[idx]:
            continue
        q = np.full(c, label_smoothing / c)
        q[targets[idx]] += 1 - label_smoothing
        total += -(q * logp[idx]).sum()
        count += 1
    return total / count if count else 0.0


def check_op(op, ref, *arrays, float32=True):
    assert_close(op(*[T(a) for a in arrays]), ref(*arrays), dtype=np.float64)
    check_grads(op, *[on_device(a) for a in arrays])
    if float32:
        xs = [T(a.astype(np.float32), True) for a in arrays]
        out = op(*xs)
        assert out.dtype == np.float32
        assert_close(out, ref(*[a.astype(np.float32).astype(np.float64) for a in arrays]), dtype=np.float32)
        out.backward(on_device(np.ones(out.shape, np.float32)))
        assert all(x.grad.dtype == np.float32 for x in xs)


@st.composite
def array_and_axis(draw):
    shape = draw(shapes(min_dims=1, max_dims=3, max_side=5))
    return draw(float_arrays(shape)), draw(st.integers(-len(shape), len(shape) - 1))


@given(args=array_and_axis())
def test_softmax(args):
    a, axis = args
    check_op(lambda x: tt.softmax(x, axis=axis), lambda x: np.exp(np_log_softmax(x, axis)), a)


@given(args=array_and_axis())
def test_log_softmax(args):
    a, axis = args
    check_op(lambda x: tt.log_softmax(x, axis=axis), lambda x: np_log_softmax(x, axis), a)


@given(args=array_and_axis(), keepdims=st.booleans())
def test_logsumexp(args, keepdims):
    a, axis = args

    def ref(x):
        m = x.max(axis=axis, keepdims=True)
        out = m + np.log(np.exp(x - m).sum(axis=axis, keepdims=True))
        return out if keepdims else np.squeeze(out, axis=axis)

    check_op(lambda x: tt.logsumexp(x, axis=axis, keepdims=keepdims), ref, a)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_family_stable_for_large_logits(dtype):
    a = np.array([[1000.0, -1000.0, 0.0], [-1000.0, -1000.0, -999.0]], dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        s = tt.to_numpy(tt.softmax(T(a)))
        ls = tt.to_numpy(tt.log_softmax(T(a)))
        lse = tt.to_numpy(tt.logsumexp(T(a)))
        ce = tt.cross_entropy(T(a, True), on_device(np.array([1, 2])))
    for v in (s, ls, lse, tt.to_numpy(ce)):
        assert np.all(np.isfinite(v))
    assert_close(s.sum(axis=-1), [1.0, 1.0], dtype=dtype)
    assert_close(lse, [1000.0, -999.0 + np.log(1 + 2 * np.exp(-1.0))], dtype=dtype)


def test_softmax_axis_error():
    with pytest.raises(ValueError, match="axis"):
        tt.softmax(T(np.ones((2, 3))), axis=2)


@st.composite
def ce_case(draw):
    batch = draw(shapes(min_dims=0, max_dims=2, max_side=4))
    c = draw(st.integers(1, 5))
    logits = draw(float_arrays(batch + (c,)))
    n = int(np.prod(batch))
    targets = np.array(draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n)), np.int64).reshape(batch)
    return logits, targets


@given(case=ce_case(), smoothing=st.sampled_from([0.0, 0.1, 0.5]), ignore=st.booleans(), data=st.data())
def test_cross_entropy(case, smoothing, ignore, data):
    logits, targets = case
    ignore_index = None
    if ignore and targets.size:
        ignore_index = -100
        drop = np.array(data.draw(st.lists(st.booleans(), min_size=targets.size, max_size=targets.size),
                                  label="drop")).reshape(targets.shape)
        targets = np.where(drop, -100, targets)
    t = on_device(targets)

    def op(x):
        return tt.cross_entropy(x, t, ignore_index=ignore_index, label_smoothing=smoothing)

    check_op(op, lambda x: np.float64(np_cross_entropy(x, targets, ignore_index, smoothing)), logits)


def test_cross_entropy_mean_and_ignored_positions_get_no_gradient():
    logits = np.array([[2.0, 0.0, -1.0], [0.5, 0.5, 0.5], [1.0, 3.0, 0.0]])
    targets = np.array([0, 1, 1])
    x = T(logits, True)
    loss = tt.cross_entropy(x, on_device(targets), ignore_index=1)
    assert_close(loss, -np_log_softmax(logits)[0, 0], dtype=np.float64)  # mean over the one kept row
    loss.backward()
    g = tt.to_numpy(x.grad)
    assert np.all(g[1:] == 0)
    assert_close(g[0], np.exp(np_log_softmax(logits)[0]) - [1, 0, 0], dtype=np.float64)
    # everything ignored: loss 0, gradient 0
    y = T(logits, True)
    loss = tt.cross_entropy(y, on_device(np.full(3, 7)), ignore_index=7)
    loss.backward()
    assert float(tt.to_numpy(loss)) == 0.0 and np.all(tt.to_numpy(y.grad) == 0)


def test_cross_entropy_errors():
    x = T(np.zeros((2, 3)), True)
    with pytest.raises(IndexError, match=r"\[0, 3\)"):
        tt.cross_entropy(x, on_device(np.array([0, 3])))
    with pytest.raises(IndexError, match=r"\[0, 3\)"):
        tt.cross_entropy(x, on_device(np.array([-1, 0])))
    with pytest.raises(TypeError, match="integer"):
        tt.cross_entropy(x, on_device(np.array([0.0, 1.0])))
    with pytest.raises(ValueError, match=r"targets shape \(3,\)"):
        tt.cross_entropy(x, on_device(np.array([0, 1, 2])))
    with pytest.raises(ValueError, match=r"targets shape \(2, 1\)"):
        tt.cross_entropy(x, on_device(np.array([[0], [1]])))
    with pytest.raises(ValueError, match="label_smoothing"):
        tt.cross_entropy(x, on_device(np.array([0, 1])), label_smoothing=1.0)
    with pytest.raises(TypeError, match="floating"):
        tt.cross_entropy(T(np.zeros((2, 3), np.int64)), on_device(np.array([0, 1])))


@given(a=float_arrays(shapes(max_dims=3, max_side=4), bound=20.0), data=st.data())
def test_bce_with_logits(a, data):
    y = data.draw(float_arrays(a.shape, bound=1.0), label="y")
    y = np.abs(y)

    def ref(x):  # -y log s(x) - (1 - y) log(1 - s(x)) = softplus(x) - x y, without cancellation
        return np.mean(np.logaddexp(0.0, x) - x * y) if x.size else np.float64(0.0)

    check_op(lambda x: tt.binary_cross_entropy_with_logits(x, on_device(y.astype(x.dtype))), ref, a)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bce_stable_for_large_logits(dtype):
    a = np.array([-1000.0, 1000.0, -1000.0, 1000.0], dtype)
    y = np.array([0.0, 1.0, 1.0, 0.0], dtype)
    x = T(a, True)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        loss = tt.binary_cross_entropy_with_logits(x, on_device(y))
        loss.backward()
    assert loss.dtype == dtype
    assert_close(loss, 500.0, dtype=dtype)
    assert_close(x.grad, [0.0, 0.0, -0.25, 0.25], dtype=dtype)
    with pytest.raises(ValueError, match="targets shape"):
        tt.binary_cross_entropy_with_logits(x, on_device(np.ones(3, dtype)))


@given(a=float_arrays(shapes(max_dims=3, max_side=4)), data=st.data())
def test_mse(a, data):
    b = data.draw(float_arrays(a.shape), label="b")
    check_op(lambda x, y: tt.mse(x, y), lambda x, y: np.mean((x - y) ** 2), a, b)
    with pytest.raises(ValueError, match="mse"):
        tt.mse(T(np.ones((2, 3))), T(np.ones((3, 2))))


def test_mse_reads_an_array_target_in_the_predictions_dtype():
    # as binary_cross_entropy_with_logits: a float64 target array keeps a float32 loss
    p = T(np.array([1.0, 1.0, 1.0], np.float32), True)
    loss = tt.mse(p, on_device(np.array([0.5, 1.0, 2.0])))
    loss.backward()
    assert loss.dtype == np.float32 and p.grad.dtype == np.float32
    assert_close(loss, (0.25 + 0 + 1.0) / 3, dtype=np.float32)
    assert_close(p.grad, [1 / 3, 0.0, -2 / 3], dtype=np.float32)
    # a Tensor target follows the promotion rules (it may itself need a float64 gradient)
    assert tt.mse(p, T(np.zeros(3))).dtype == np.float64


# --- dropout ---------------------------------------------------------------------------------
def test_dropout_eval_and_p0_are_identity():
    x = T(np.ones((3, 4)), True)
    assert tt.dropout(x, 0.5, training=False) is x
    assert tt.dropout(x, 0.0) is x


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropout_mask_scale_and_seed(dtype, p):
    x = T(np.ones((200, 50), dtype), True)
    y1 = tt.dropout(x, p, rng=tt.backend.default_rng(123))
    y2 = tt.dropout(x, p, rng=tt.backend.default_rng(123))
    y3 = tt.dropout(x, p, rng=tt.backend.default_rng(124))
    v1, v2, v3 = (tt.to_numpy(y) for y in (y1, y2, y3))
    assert y1.dtype == dtype
    np.testing.assert_array_equal(v1, v2)  # same seed, same mask
    assert not np.array_equal(v1, v3)
    kept = v1 != 0
    assert_close(v1[kept], np.full(kept.sum(), 1 / (1 - p)), dtype=dtype)
    # expectation preserved roughly: 10,000 Bernoulli draws, tolerance of ~5 standard errors
    stderr = np.sqrt(p / (1 - p) / v1.size)
    assert abs(v1.mean() - 1.0) < 5 * stderr
    assert abs((~kept).mean() - p) < 5 * np.sqrt(p * (1 - p) / v1.size)
    # the gradient uses the same mask and scale
    y1.backward(on_device(np.ones(v1.shape, dtype)))
    np.testing.assert_array_equal(tt.to_numpy(x.grad), v1)


def test_dropout_gradcheck_with_fixed_mask():
    a = np.random.default_rng(0).standard_normal((4, 5))
    check_grads(lambda x: tt.dropout(x, 0.3, rng=tt.backend.default_rng(7)), on_device(a))


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5, "0.5", None])
def test_dropout_rejects_bad_p(p):
    with pytest.raises(ValueError, match=r"dropout: p must be a probability in \[0, 1\)"):
        tt.dropout(T(np.ones(3)), p)


def test_bce_rejects_integer_logits():
    # the targets were cast to the logits' int dtype (0.7 -> 0) and the loss truncated
    with pytest.raises(TypeError, match="floating"):
        tt.binary_cross_entropy_with_logits(on_device(np.array([1, 2, -3])), on_device(np.array([0.7, 0.2, 0.5])))


def test_logsumexp_with_infinite_rows_matches_torch_and_scipy():
    x = on_device(np.array([[-np.inf, -np.inf], [np.inf, 0.0], [-np.inf, 1.0]]))
    got = tt.to_numpy(tt.logsumexp(tt.Tensor(x)).data)
    assert got[0] == -np.inf and got[1] == np.inf   # both were nan
    assert_close(got[2], 1.0)


def test_logsumexp_gradient_of_large_finite_entries_beside_inf_is_zero():
    # the row is shifted by 0 (its max is +inf): exp(800) overflowed and inf / inf gave nan
    x = T(np.array([[800.0, 0.0, np.inf], [1.0, 2.0, 3.0]]), True)
    tt.logsumexp(x).sum().backward()
    g = tt.to_numpy(x.grad)
    assert g[0, 0] == 0.0 and g[0, 1] == 0.0 and np.isnan(g[0, 2])
    assert_close(g[1], np.exp([1.0, 2.0, 3.0]) / np.exp([1.0, 2.0, 3.0]).sum())


def test_bce_gradient_reaches_targets_that_require_grad():
    rng = np.random.default_rng(0)
    logits = on_device(rng.standard_normal(5))
    targets = on_device(rng.uniform(0, 1, 5))
    check_grads(lambda x, y: tt.binary_cross_entropy_with_logits(x, y), logits, targets)


@given(case=ce_case(), smoothing=st.sampled_from([0.0, 0.1, 0.5]), data=st.data())
def test_losses_match_torch(case, smoothing, data):
    """cross_entropy (ignore_index, label smoothing) and binary_cross_entropy_with_logits
    against PyTorch's functional losses in float64, values and gradients. PyTorch takes the
    class axis second, so the logits go in as (N, C). One documented difference is left
    out: with every target ignored tinytt returns 0 (no positions, no loss), PyTorch nan."""
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    logits, targets = case      # every side is >= 1: at least one target
    drop = np.array(data.draw(st.lists(st.booleans(), min_size=targets.size, max_size=targets.size),
                              label="drop")).reshape(targets.shape)
    targets = np.where(drop, -100, targets)
    if (targets == -100).all():
        targets.flat[0] = 0
    x = T(logits, True)
    loss = tt.cross_entropy(x, on_device(targets), ignore_index=-100, label_smoothing=smoothing)
    loss.backward()
    tx = torch.tensor(logits.reshape(-1, logits.shape[-1]), requires_grad=True)
    tloss = functional.cross_entropy(tx, torch.from_numpy(targets.reshape(-1)), ignore_index=-100,
                                     label_smoothing=smoothing)
    tloss.backward()
    assert_close(loss, tloss.item(), dtype=np.float64)
    assert_close(tt.to_numpy(x.grad).reshape(tx.shape), tx.grad.numpy(), dtype=np.float64)

    probs = np.array(data.draw(st.lists(st.floats(0, 1), min_size=logits.size, max_size=logits.size),
                               label="probs")).reshape(logits.shape)
    x = T(logits, True)
    loss = tt.binary_cross_entropy_with_logits(x, on_device(probs))
    loss.backward()
    tx = torch.tensor(logits, requires_grad=True)
    tloss = functional.binary_cross_entropy_with_logits(tx, torch.from_numpy(probs))
    tloss.backward()
    assert_close(loss, tloss.item(), dtype=np.float64)
    assert_close(tt.to_numpy(x.grad), tx.grad.numpy(), dtype=np.float64)


def test_float16_softmax_family_sums_in_float32():
    # a float16 sum passes 65504 long before its mean or log does: the sums run in float32
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((3000, 200)).astype(np.float16)
    t = rng.integers(0, 200, 3000)
    for smoothing in (0.0, 0.1):
        got = tt.cross_entropy(T(logits), on_device(t), label_smoothing=smoothing)
        want = tt.cross_entropy(T(logits.astype(np.float32)), on_device(t), label_smoothing=smoothing)
        assert got.dtype == np.float16 and np.isfinite(float(got.data))
        assert abs(float(got.data) - float(want.data)) < 2e-3 * float(want.data)
    zeros = T(np.zeros((1, 70000), np.float16))
    expect = -np.log(70000.0)
    for got, want in ((tt.log_softmax(zeros).data[0, :3], np.full(3, expect)),
                      (tt.logsumexp(zeros).data, np.array([-expect]))):
        assert got.dtype == np.float16
        np.testing.assert_allclose(tt.to_numpy(got).astype(np.float64), want, rtol=2e-3)
    s = tt.softmax(zeros)
    assert s.dtype == np.float16 and abs(float(tt.to_numpy(s.data).astype(np.float64).sum()) - 1) < 0.05


def test_cross_entropy_ignored_positions_send_zero_gradient_even_for_nan_logits():
    logits = np.array([[1.0, 2.0, 3.0], [np.nan, 0.0, 0.0], [np.inf, 0.0, 0.0]])
    x = T(logits, True)
    with np.errstate(invalid="ignore"):
        loss = tt.cross_entropy(x, on_device(np.array([2, -100, -100])), ignore_index=-100)
        loss.backward()
    want = tt.cross_entropy(T(logits[:1]), on_device(np.array([2])))
    assert_close(loss, float(want.data))
    assert np.all(tt.to_numpy(x.grad)[1:] == 0) and np.all(np.isfinite(tt.to_numpy(x.grad)))


def test_cross_entropy_gradient_for_non_contiguous_logits():
    # time-major logits seen through a transpose: exp kept the layout, the reshape copied, and
    # the one-hot term was subtracted from the copy (gradient = softmax / count)
    x = np.random.default_rng(0).standard_normal((2, 3, 4))
    t = np.array([[0, 2], [1, 3], [2, 0]])
    X = T(x, True)
    tt.cross_entropy(tt.transpose(X, 1, 0, 2), on_device(t)).backward()
    logits = x.transpose(1, 0, 2)
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    p[np.arange(3)[:, None], np.arange(2)[None, :], t] -= 1.0
    assert_close(X.grad, (p / t.size).transpose(1, 0, 2))


def test_softmax_family_over_an_empty_axis():
    x = T(np.zeros((3, 0)), True)
    assert tt.softmax(x).shape == (3, 0) and tt.log_softmax(x).shape == (3, 0)
    out = tt.logsumexp(x, axis=-1)
    assert out.shape == (3,) and np.all(tt.to_numpy(out.data) == -np.inf)   # log of an empty sum
    (tt.softmax(x).sum() + tt.log_softmax(x).sum()).backward()
    assert x.grad.shape == (3, 0)


def test_cross_entropy_range_check_of_huge_unsigned_targets():
    # uint64 targets of 2**63 and more must not wrap negative past the range check
    with pytest.raises(IndexError, match="targets must lie in"):
        tt.cross_entropy(T(np.zeros((2, 3)), True), on_device(np.array([2 ** 63 + 5, 0], dtype=np.uint64)))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_bce_at_infinite_logits_is_the_limit_not_nan(dtype):
    # the loss of one element tends to (1 - y) * x as x -> +inf and to -y * x as x -> -inf:
    # inf where that weight is positive, 0 where it is zero (the formula gave inf - inf = nan)
    cases = [(np.inf, 0.0, np.inf), (np.inf, 0.5, np.inf), (np.inf, 1.0, 0.0),
             (-np.inf, 0.0, 0.0), (-np.inf, 0.25, np.inf)]
    for x, y, want in cases:
        logits = T(np.array([x, 2.0], dtype=dtype), True)
        loss = tt.binary_cross_entropy_with_logits(logits, on_device(np.array([y, 1.0])))
        finite = np.log1p(np.exp(-2.0))          # the second element's loss
        assert loss.item() == pytest.approx((want + finite) / 2, rel=1e-6), (x, y)
        loss.backward()
        sig = 1.0 if x > 0 else 0.0                     # sigmoid at +-inf
        assert_close(logits.grad, [(sig - y) / 2, (1 / (1 + np.exp(-2.0)) - 1) / 2], rtol=1e-6, atol=0)


def test_bce_of_an_empty_batch_is_nan_like_mse():
    """The mean over no elements is NaN (mse and PyTorch agree); BCE returned 0.0. The backward
    still runs and gives an empty gradient."""
    for dtype in (np.float32, np.float64):
        x = tt.Tensor(on_device(np.zeros((0, 3), dtype)), requires_grad=True)
        loss = tt.binary_cross_entropy_with_logits(x, on_device(np.zeros((0, 3), dtype)))
        assert loss.dtype == dtype and np.isnan(float(loss.data))
        assert np.isnan(float(tt.mse(x, on_device(np.zeros((0, 3), dtype))).data))
        loss.backward()
        assert x.grad.shape == (0, 3)
