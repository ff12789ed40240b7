"""Tests for tinytt.optim against update rules written out by hand (and PyTorch when present)."""

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tinytt import backend, io
from tinytt.optim import SGD, Adam, AdamW, Optimizer, clip_grad_norm


class P:
    """Stand-in parameter: exactly the .data / .grad interface of tinytt.Tensor."""

    def __init__(self, data, grad=None):
        self.data = data
        self.grad = grad


def grad_fn(x):
    """A fixed, deterministic, nonlinear gradient of the parameter's value."""
    return np.sin(3.0 * x) + 0.3 * x**3 - 0.5


def init_values(dtype=np.float64):
    rng = np.random.default_rng(1234)
    return [rng.standard_normal((3, 4)).astype(dtype), rng.standard_normal(5).astype(dtype),
            np.array(0.7, dtype=dtype)]


def run(opt, params, steps):
    for _ in range(steps):
        for p in params:
            p.grad = grad_fn(p.data).astype(p.data.dtype)
        opt.step()


# ----------------------------------------------------------------------------- hand-written references
def sgd_reference(x0, lr, momentum, nesterov, wd, steps=3):
    x = x0.astype(np.float64).copy()
    buf = None
    for t in range(steps):
        g = grad_fn(x)
        d = g + wd * x
        if momentum:
            buf = d.copy() if t == 0 else momentum * buf + d
            d = d + momentum * buf if nesterov else buf
        x = x - lr * d
    return x


def adam_reference(x0, lr, b1, b2, eps, wd, decoupled, steps=3):
    x = x0.astype(np.float64).copy()
    m = np.zeros_like(x)
    v = np.zeros_like(x)
    for t in range(1, steps + 1):
        g = grad_fn(x)
        if decoupled:
            x = x - lr * wd * x
        else:
            g = g + wd * x
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        m_hat = m / (1 - b1**t)
        v_hat = v / (1 - b2**t)
        x = x - lr * m_hat / (np.sqrt(v_hat) + eps)
    return x


SGD_CASES = [
    dict(momentum=0.0, nesterov=False, weight_decay=0.0),
    dict(momentum=0.9, nesterov=False, weight_decay=0.0),
    dict(momentum=0.9, nesterov=True, weight_decay=0.0),
    dict(momentum=0.0, nesterov=False, weight_decay=0.1),
    dict(momentum=0.8, nesterov=False, weight_decay=0.05),
    dict(momentum=0.8, nesterov=True, weight_decay=0.05),
]
ADAM_CASES = [
    (Adam, dict(lr=0.01)),
    (Adam, dict(lr=0.05, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.1)),
    (AdamW, dict(lr=0.01)),
    (AdamW, dict(lr=0.05, betas=(0.5, 0.9), eps=1e-3, weight_decay=0.3)),
]


def adam_ref_kwargs(cls, kw):
    b1, b2 = kw.get("betas", (0.9, 0.999))
    default_wd = 1e-2 if cls is AdamW else 0.0
    return dict(lr=kw["lr"], b1=b1, b2=b2, eps=kw.get("eps", 1e-8),
                wd=kw.get("weight_decay", default_wd), decoupled=cls is AdamW)


@pytest.mark.parametrize("kw", SGD_CASES)
def test_sgd_matches_hand_formula(kw):
    params = [P(x.copy()) for x in init_values()]
    run(SGD(params, lr=0.1, **kw), params, 3)
    for p, x0 in zip(params, init_values()):
        expected = sgd_reference(x0, 0.1, kw["momentum"], kw["nesterov"], kw["weight_decay"])
        np.testing.assert_allclose(p.data, expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("cls, kw", ADAM_CASES)
def test_adam_matches_hand_formula(cls, kw):
    params = [P(x.copy()) for x in init_values()]
    run(cls(params, **kw), params, 3)
    for p, x0 in zip(params, init_values()):
        expected = adam_reference(x0, **adam_ref_kwargs(cls, kw))
        np.testing.assert_allclose(p.data, expected, rtol=1e-12, atol=1e-14)


def test_adam_first_step_is_sign_times_lr():
    # t = 1: m_hat = g, v_hat = g^2, so the step is lr * g / (|g| + eps) ~ lr * sign(g)
    g = np.array([3.0, -0.2, 1e-3])
    p = P(np.zeros(3), g.copy())
    Adam([p], lr=0.1, eps=0.0).step()
    np.testing.assert_allclose(p.data, -0.1 * np.sign(g), rtol=1e-15)


def test_against_torch():
    torch = pytest.importorskip("torch")
    cases = [(SGD, dict(lr=0.1, **kw)) for kw in SGD_CASES if kw["momentum"] or not kw["nesterov"]]
    cases += ADAM_CASES
    for ours_cls, kw in cases:
        if ours_cls is AdamW and "weight_decay" not in kw:
            kw = dict(kw, weight_decay=1e-2)
        assert_steps_match_torch(torch, ours_cls, kw, init_values(), 5)


def assert_steps_match_torch(torch, cls, kw, values, steps):
    """``steps`` updates of ``cls(**kw)`` and of the PyTorch optimizer of the same name on the
    same ``values`` (float64), fed the same ``grad_fn`` gradients, end at the same values."""
    params = [P(v.copy()) for v in values]
    tparams = [torch.tensor(v.copy(), requires_grad=True) for v in values]
    ours, theirs = cls(params, **kw), getattr(torch.optim, cls.__name__)(tparams, **kw)
    for _ in range(steps):
        for p, tp in zip(params, tparams):
            p.grad = grad_fn(p.data)
            tp.grad = torch.from_numpy(np.asarray(grad_fn(tp.detach().numpy())))
        ours.step()
        theirs.step()
    for p, tp in zip(params, tparams):
        np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=1e-10, atol=1e-12,
                                   err_msg=f"{cls.__name__} {kw}")


@st.composite
def optimizer_cases(draw):
    """An optimizer class with drawn hyperparameters (as PyTorch takes them)."""
    kind = draw(st.sampled_from(["SGD", "Adam", "AdamW"]))
    lr = draw(st.floats(1e-4, 0.5))
    wd = draw(st.sampled_from([0.0, 1e-3, 0.1, 0.5]))
    if kind == "SGD":
        momentum = draw(st.sampled_from([0.0, 0.5, 0.9, 0.99]))
        nesterov = momentum > 0 and draw(st.booleans())
        return SGD, dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=wd)
    betas = (draw(st.sampled_from([0.0, 0.5, 0.9, 0.99])), draw(st.sampled_from([0.5, 0.9, 0.999, 0.9999])))
    eps = draw(st.sampled_from([1e-8, 1e-6, 1e-3]))
    return (Adam if kind == "Adam" else AdamW), dict(lr=lr, betas=betas, eps=eps, weight_decay=wd)


@given(case=optimizer_cases(), shapes=st.lists(hnp.array_shapes(max_dims=3, max_side=5), min_size=1, max_size=3),
       steps=st.integers(1, 6), seed=st.integers(0, 2 ** 16))
def test_drawn_hyperparameters_match_torch(case, shapes, steps, seed):
    torch = pytest.importorskip("torch")
    cls, kw = case
    rng = np.random.default_rng(seed)
    assert_steps_match_torch(torch, cls, kw, [rng.standard_normal(shape) for shape in shapes], steps)


# ----------------------------------------------------------------------------- dtypes, in place, skipping
@pytest.mark.parametrize("make", [
    lambda ps: SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
    lambda ps: Adam(ps, lr=0.01, weight_decay=0.01),
    lambda ps: AdamW(ps, lr=0.01),
])
def test_float32_stays_float32_and_updates_in_place(make):
    params = [P(x.copy()) for x in init_values(np.float32)]
    held = [p.data for p in params]
    opt = make(params)
    run(opt, params, 3)
    for p, h in zip(params, held):
        assert p.data is h and p.data.dtype == np.float32
    for st_ in opt.state:
        for v in st_.values():
            if isinstance(v, np.ndarray):
                assert v.dtype == np.float32
            else:
                assert type(v) is int
    for buf in opt._scratch.values():
        assert buf.dtype == np.float32
    sd = opt.state_dict()
    assert all(v.dtype == np.float32 for s in sd["state"].values() for v in s.values()
               if isinstance(v, np.ndarray))
    # and float32 results agree with the float64 run to float32 accuracy
    ref = [P(x.copy()) for x in init_values(np.float64)]
    run(make(ref), ref, 3)
    for p, r in zip(params, ref):
        np.testing.assert_allclose(p.data, r.data, rtol=1e-4, atol=1e-5)


def test_zero_grad():
    params = [P(np.ones(3), np.ones(3)), P(np.ones(2), None)]
    opt = SGD(params, lr=0.1)
    opt.zero_grad()
    assert all(p.grad is None for p in params)
    before = [p.data.copy() for p in params]
    opt.step()  # nothing to do
    for p, b in zip(params, before):
        np.testing.assert_array_equal(p.data, b)


@pytest.mark.parametrize("cls", [SGD, Adam, AdamW])
def test_params_without_grad_are_skipped(cls):
    a, b = P(np.ones(3)), P(np.full(2, 2.0))
    kw = dict(lr=0.1, momentum=0.9) if cls is SGD else dict(lr=0.1)
    opt = cls([a, b], **kw)
    a.grad = np.array([1.0, -1.0, 0.5])
    opt.step()
    np.testing.assert_array_equal(b.data, np.full(2, 2.0))
    assert opt.state[1] == {}
    assert not np.array_equal(a.data, np.ones(3))
    # b's own step count starts when it first gets a gradient
    b.grad = np.array([1.0, 1.0])
    opt.step()
    if cls is not SGD:
        assert opt.state[0]["step"] == 2 and opt.state[1]["step"] == 1
    # first step of b: SGD buf = g; Adam moves by lr * g / (|g| + eps); AdamW also decays first
    decay = 1.0 - 0.1 * 0.01 if cls is AdamW else 1.0
    np.testing.assert_allclose(b.data, 2.0 * decay - 0.1, rtol=1e-7)


def test_grad_checks():
    p = P(np.ones(3, np.float32))
    opt = SGD([p], lr=0.1)
    p.grad = np.ones(4, np.float32)
    with pytest.raises(ValueError, match=r"params\[0\].grad has shape"):
        opt.step()
    p.grad = np.ones(3, np.float64)
    with pytest.raises(TypeError, match="dtype"):
        opt.step()
    np.testing.assert_array_equal(p.data, np.ones(3, np.float32))


# ----------------------------------------------------------------------------- validation
@pytest.mark.parametrize("make, name", [
    (lambda ps: SGD(ps, lr=-0.1), "lr"),
    (lambda ps: SGD(ps, lr=float("nan")), "lr"),
    (lambda ps: SGD(ps, lr=0.1, momentum=-0.5), "momentum"),
    (lambda ps: SGD(ps, lr=0.1, nesterov=True), "nesterov"),
    (lambda ps: SGD(ps, lr=0.1, weight_decay=-1.0), "weight_decay"),
    (lambda ps: Adam(ps, betas=(1.0, 0.9)), r"betas\[0\]"),
    (lambda ps: Adam(ps, betas=(0.9, -0.1)), r"betas\[1\]"),
    (lambda ps: Adam(ps, betas=(0.9,)), "betas"),
    (lambda ps: Adam(ps, eps=-1e-8), "eps"),
    (lambda ps: AdamW(ps, weight_decay=-0.1), "weight_decay"),
])
def test_hyperparameter_validation(make, name):
    with pytest.raises(ValueError, match=name):
        make([P(np.ones(2))])


def test_lr_setter_validates():
    opt = SGD([P(np.ones(2))], lr=0.1)
    opt.lr = 0.05
    assert opt.lr == 0.05
    with pytest.raises(ValueError, match="lr"):
        opt.lr = -1
    with pytest.raises(TypeError, match="lr"):
        opt.lr = "fast"


def test_param_list_validation():
    with pytest.raises(ValueError, match="empty"):
        SGD([], lr=0.1)
    p = P(np.ones(2))
    with pytest.raises(ValueError, match="more than once"):
        SGD([p, p], lr=0.1)
    with pytest.raises(TypeError, match="floating-point"):
        SGD([P(np.ones(2, np.int64))], lr=0.1)
    with pytest.raises(TypeError, match=".data and .grad"):
        SGD([np.ones(2)], lr=0.1)
    with pytest.raises(TypeError, match="single"):
        SGD(p, lr=0.1)
    assert len(SGD((q for q in [P(np.ones(1)), P(np.ones(1))]), lr=0.1).params) == 2


# ----------------------------------------------------------------------------- clipping
def test_clip_grad_norm_against_dense_norm():
    rng = np.random.default_rng(0)
    grads = [rng.standard_normal((4, 5)), rng.standard_normal(3), np.array(2.0)]
    params = [P(np.zeros_like(g), g.copy()) for g in grads] + [P(np.zeros(7), None)]
    dense = np.linalg.norm(np.concatenate([g.ravel() for g in grads]))
    total = clip_grad_norm(params, max_norm=1.0)
    assert type(total) is float
    assert total == pytest.approx(dense, rel=1e-12)
    coef = 1.0 / (dense + 1e-6)
    for p, g in zip(params, grads):
        np.testing.assert_allclose(p.grad, g * coef, rtol=1e-12)
    new = np.linalg.norm(np.concatenate([p.grad.ravel() for p in params[:3]]))
    assert new == pytest.approx(1.0, rel=1e-5) and new < 1.0
    assert params[3].grad is None


def test_clip_grad_norm_below_threshold_leaves_grads_alone():
    g = np.array([0.3, 0.4], np.float32)
    p = P(np.zeros(2, np.float32), g)
    assert clip_grad_norm([p], 10.0) == pytest.approx(0.5, rel=1e-6)
    assert p.grad is g
    assert clip_grad_norm([P(np.zeros(2))], 1.0) == 0.0


def test_clip_grad_norm_with_infinite_max_norm_only_measures():
    # PyTorch's idiom for logging the norm: max_norm=inf scales nothing (an infinite norm
    # gives inf / inf = NaN gradients there, and here)
    g = np.array([3.0, 4.0])
    p = P(np.zeros(2), g)
    assert clip_grad_norm([p], math.inf) == 5.0 and p.grad is g
    q = P(np.zeros(2), np.array([np.inf, 4.0]))
    assert clip_grad_norm([q], math.inf) == math.inf and np.isnan(q.grad).all()
    for bad in (-math.inf, math.nan, -1.0):
        with pytest.raises(ValueError, match="max_norm"):
            clip_grad_norm([p], bad)


def test_clip_grad_norm_float32_shared_and_single_param():
    g = np.full(4, 3.0, np.float32)
    a, b = P(np.zeros(4, np.float32), g), P(np.zeros(4, np.float32), g)
    total = clip_grad_norm([a, b], 1.0)
    assert total == pytest.approx(math.sqrt(2 * 4 * 9.0))
    assert a.grad is b.grad and a.grad.dtype == np.float32  # a shared array is scaled once
    np.testing.assert_allclose(a.grad, 3.0 / (total + 1e-6), rtol=1e-6)
    c = P(np.zeros(1), np.array([5.0]))
    assert clip_grad_norm(c, 2.0) == 5.0
    np.testing.assert_allclose(c.grad, [2.0 * 5.0 / (5.0 + 1e-6)])
    with pytest.raises(ValueError, match="max_norm"):
        clip_grad_norm([c], -1.0)
    c.grad = np.array([np.inf])
    with pytest.raises(ValueError, match="non-finite"):
        clip_grad_norm([c], 1.0, error_if_nonfinite=True)


@settings(deadline=None)
@given(
    grads=st.lists(hnp.arrays(np.float64, hnp.array_shapes(min_dims=0, max_dims=3, max_side=4),
                              elements=st.floats(-1e3, 1e3)), min_size=1, max_size=4),
    max_norm=st.floats(0.0, 100.0),
)
def test_clip_grad_norm_property(grads, max_norm):
    params = [P(np.zeros_like(g), g.copy()) for g in grads]
    # math.hypot rescales: sqrt(sum(g * g)) would underflow to 0 for entries below ~1e-154
    dense = math.hypot(*[float(v) for g in grads for v in g.reshape(-1)])
    total = clip_grad_norm(params, max_norm)
    assert total == pytest.approx(dense, rel=1e-9, abs=1e-12)
    after = float(np.sqrt(sum(float(np.sum(p.grad * p.grad)) for p in params)))
    assert after <= max(max_norm, dense) * (1 + 1e-9) + 1e-12
    if dense + 1e-6 <= max_norm:   # PyTorch's rule: scaled by max_norm / (total + 1e-6) when below 1
        for p, g in zip(params, grads):
            np.testing.assert_array_equal(p.grad, g)
    else:
        coef = max_norm / (total + 1e-6)
        # atol: a subnormal coef is rounded to a multiple of 5e-324 here, before the product
        atol = 1e-323 * max([1.0] + [float(np.abs(g).max(initial=0)) for g in grads])
        for p, g in zip(params, grads):
            np.testing.assert_allclose(p.grad, g * coef, rtol=1e-12, atol=atol)


@pytest.mark.parametrize("scale", [1e-200, 1e-160, 1e160, 1e200])
def test_clip_grad_norm_true_norm_for_huge_and_tiny_gradients(scale):
    # the squares of these overflow to inf or underflow to 0 in float64
    grads = [np.array([3.0, 0.0]) * scale, np.array([[4.0]]) * scale, np.array([12.0]) * scale]
    params = [P(np.zeros_like(g), g.copy()) for g in grads]
    total = clip_grad_norm(params, 1.0)
    assert total == pytest.approx(13.0 * scale, rel=1e-14)
    coef = min(1.0, 1.0 / (total + 1e-6))   # tiny gradients stay as they are
    for p, g in zip(params, grads):
        np.testing.assert_allclose(p.grad, g * coef, rtol=1e-14, atol=0)
    for bad, want in ((np.inf, math.inf), (np.nan, None)):
        q = P(np.zeros(2), np.array([bad, 1e200]))
        with np.errstate(invalid="ignore"):   # inf * 0 and nan: NaN gradients, as in PyTorch
            got = clip_grad_norm([q], 1.0)
        assert (math.isnan(got) if want is None else got == want)


@pytest.mark.parametrize("dtype, grad, max_norm", [("float32", [1e38, -1e37], 1e-3),
                                                   ("float32", [1e38, -1e37], 1e-10),
                                                   ("float64", [1e300, 3e299], 1e-20),
                                                   ("float64", [1e300], 1e-300)])
def test_clip_grad_norm_keeps_the_digits_of_a_factor_below_the_smallest_normal(dtype, grad, max_norm):
    # max_norm / total is subnormal in the gradient's dtype (1e-41 in float32, 1e-320 in
    # float64): applied as one scalar it lost its digits (2.5e-5 relative error, or 0)
    from fractions import Fraction
    g = np.array(grad, dtype=dtype)
    p = P(np.zeros_like(g), g.copy())
    total = clip_grad_norm([p], max_norm)
    want = [float(Fraction(float(v)) * Fraction(max_norm) / (Fraction(total) + Fraction(1e-6))) for v in g]
    np.testing.assert_allclose(p.grad, np.array(want, dtype=dtype), rtol=2 * np.finfo(dtype).eps, atol=0)
    assert p.grad.dtype == g.dtype


def test_clip_grad_norm_scales_at_the_threshold_like_torch():
    p = P(np.zeros(1), np.array([1.0]))
    assert clip_grad_norm([p], 1.0) == 1.0
    np.testing.assert_allclose(p.grad, [1.0 / (1.0 + 1e-6)], rtol=1e-15)   # torch: min(1, 1 / (1 + 1e-6))


@given(
    grads=st.lists(hnp.arrays(np.float64, hnp.array_shapes(min_dims=0, max_dims=3, max_side=4),
                              elements=st.floats(-1e3, 1e3)), min_size=1, max_size=4),
    max_norm=st.floats(0.0, 100.0),
)
def test_clip_grad_norm_matches_torch(grads, max_norm):
    """Against ``torch.nn.utils.clip_grad_norm_``. Its norm of the per-tensor norms is not
    rescaled, so it underflows for totals below ~1e-154 (e.g. 0 for the gradients [0] and
    [4e-283]); such totals are left to the property test above, against ``math.hypot``."""
    torch = pytest.importorskip("torch")
    assume(not any(0 < abs(v) < 1e-100 for g in grads for v in g.reshape(-1)))
    params = [P(np.zeros_like(g), g.copy()) for g in grads]
    tparams = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in grads]
    for tp, g in zip(tparams, grads):
        tp.grad = torch.from_numpy(g.copy())
    total = clip_grad_norm(params, max_norm)
    t_total = float(torch.nn.utils.clip_grad_norm_(tparams, max_norm))
    assert total == pytest.approx(t_total, rel=1e-12, abs=1e-300)
    atol = 1e-323 * max([1.0] + [float(np.abs(g).max(initial=0)) for g in grads])
    for p, tp in zip(params, tparams):
        # atol: torch rounds a subnormal factor (a subnormal max_norm) to a multiple of 5e-324
        # first, then multiplies by the gradient; tinytt applies it exactly (see the test above)
        np.testing.assert_allclose(p.grad, tp.grad.numpy(), rtol=1e-12, atol=atol)


# ----------------------------------------------------------------------------- state dicts
RESUME_CASES = [
    lambda ps: SGD(ps, lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
    lambda ps: SGD(ps, lr=0.05, momentum=0.9),
    lambda ps: Adam(ps, lr=0.01, weight_decay=0.01),
    lambda ps: AdamW(ps, lr=0.01, betas=(0.8, 0.99)),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("make", RESUME_CASES)
def test_resume_through_io_is_bit_identical(tmp_path, make, dtype):
    # 20 straight steps
    straight = [P(x.copy()) for x in init_values(dtype)] + [P(np.ones(2, dtype))]  # last: never a grad
    opt = make(straight)
    for _ in range(20):
        for p in straight[:-1]:
            p.grad = grad_fn(p.data).astype(dtype)
        opt.step()

    # 10 steps, checkpoint, fresh objects, 10 more
    first = [P(x.copy()) for x in init_values(dtype)] + [P(np.ones(2, dtype))]
    opt1 = make(first)
    for _ in range(10):
        for p in first[:-1]:
            p.grad = grad_fn(p.data).astype(dtype)
        opt1.step()
    path = tmp_path / "ckpt"
    io.save({"params": {str(i): p.data for i, p in enumerate(first)}, "optim": opt1.state_dict()}, path)
    del opt1, first

    ck = io.load(path)
    resumed = [P(ck["params"][str(i)]) for i in range(len(straight))]
    opt2 = make(resumed)
    opt2.load_state_dict(ck["optim"])
    for _ in range(10):
        for p in resumed[:-1]:
            p.grad = grad_fn(p.data).astype(dtype)
        opt2.step()
    for a, b in zip(straight, resumed):
        assert a.data.dtype == b.data.dtype == dtype
        assert np.array_equal(a.data, b.data)


def test_state_dict_is_a_snapshot():
    p = P(np.ones(3))
    opt = Adam([p], lr=0.1)
    p.grad = np.ones(3)
    opt.step()
    sd = opt.state_dict()
    saved_data, saved_m = p.data.copy(), sd["state"]["0"]["exp_avg"].copy()
    opt.step()
    np.testing.assert_array_equal(sd["state"]["0"]["exp_avg"], saved_m)
    opt.load_state_dict(sd)
    p.data[...] = saved_data
    opt.step()
    q = P(np.ones(3))
    ref = Adam([q], lr=0.1)
    q.grad = np.ones(3)
    ref.step()
    ref.step()
    assert np.array_equal(p.data, q.data)


def _trained(make, values):
    params = [P(x.copy()) for x in values]
    opt = make(params)
    run(opt, params, 2)
    return params, opt


def test_load_state_dict_errors_leave_optimizer_untouched():
    params, opt = _trained(lambda ps: Adam(ps, lr=0.01), init_values())
    sd = opt.state_dict()
    before = opt.state_dict()

    def fresh(values=None, **kw):
        ps = [P(x.copy()) for x in (values if values is not None else init_values())]
        return Adam(ps, **dict(dict(lr=0.01), **kw))

    with pytest.raises(ValueError, match="holds 3 parameters but this Adam has 2"):
        fresh(init_values()[:2]).load_state_dict(sd)
    vals = init_values()
    vals[1] = np.ones(6)
    with pytest.raises(ValueError, match="parameter 1: state_dict has shape"):
        fresh(vals).load_state_dict(sd)
    with pytest.raises(ValueError, match="dtype"):
        fresh(init_values(np.float32)).load_state_dict(sd)
    with pytest.raises(ValueError, match="hyperparameter lr"):
        fresh(lr=0.02).load_state_dict(sd)
    with pytest.raises(ValueError, match="hyperparameter betas"):
        fresh(betas=(0.9, 0.99)).load_state_dict(sd)
    with pytest.raises(ValueError, match="for optimizer 'Adam', cannot load it into AdamW"):
        AdamW([P(x.copy()) for x in init_values()]).load_state_dict(sd)
    with pytest.raises(ValueError, match="state_dict"):
        opt.load_state_dict({"lr": 0.1})
    bad = opt.state_dict()
    bad["state"]["0"]["exp_avg"] = bad["state"]["0"]["exp_avg"].astype(np.float32)
    with pytest.raises(ValueError, match="'exp_avg'"):
        opt.load_state_dict(bad)
    bad = opt.state_dict()
    bad["state"]["2"]["step"] = 0
    with pytest.raises(ValueError, match="'step'"):
        opt.load_state_dict(bad)
    bad = opt.state_dict()
    del bad["state"]["1"]["exp_avg_sq"]
    with pytest.raises(ValueError, match="entries"):
        opt.load_state_dict(bad)
    bad = opt.state_dict()
    bad["hyperparameters"]["eps"] = -1.0
    with pytest.raises(ValueError, match="eps"):
        opt.load_state_dict(bad, hyperparameters="load")
    after = opt.state_dict()
    assert after["hyperparameters"] == before["hyperparameters"]
    for k in before["state"]:
        for name, v in before["state"][k].items():
            assert np.array_equal(after["state"][k][name], v)


def test_load_state_dict_can_adopt_hyperparameters():
    _, opt = _trained(lambda ps: SGD(ps, lr=0.1, momentum=0.9), init_values())
    opt.lr = 0.025  # e.g. a schedule
    sd = opt.state_dict()
    other = SGD([P(x.copy()) for x in init_values()], lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="lr"):
        other.load_state_dict(sd)
    other.load_state_dict(sd, hyperparameters="load")
    assert other.lr == 0.025
    with pytest.raises(ValueError, match="'check' or 'load'"):
        other.load_state_dict(sd, hyperparameters="maybe")


def test_state_dict_contents_are_savable_scalars_and_arrays():
    _, opt = _trained(lambda ps: AdamW(ps, lr=0.01), init_values(np.float32))
    sd = opt.state_dict()
    assert sd["type"] == "AdamW" and sd["params"]["0"] == {"shape": [3, 4], "dtype": "float32"}
    assert sd["hyperparameters"] == {"lr": 0.01, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.01}

    def walk(x):
        if isinstance(x, dict):
            assert all(isinstance(k, str) and "/" not in k for k in x)
            for v in x.values():
                walk(v)
        elif isinstance(x, (list, tuple)):
            for v in x:
                walk(v)
        else:
            assert x is None or type(x) in (int, float, bool, str, np.ndarray), type(x)

    walk(sd)


def test_base_optimizer_is_abstract():
    p = P(np.ones(2), np.ones(2))
    with pytest.raises(NotImplementedError):
        Optimizer([p], lr=0.1).step()
    assert "SGD(1 params" in repr(SGD([p], lr=0.1))


# ----------------------------------------------------------------------------- GPU
@pytest.mark.cupy
@pytest.mark.parametrize("make", RESUME_CASES)
def test_cupy_matches_numpy(tmp_path, make):
    if not backend.cupy_available():
        pytest.skip("CuPy with a GPU is not available")
    import cupy

    host = [P(x.copy()) for x in init_values(np.float32)]
    dev = [P(cupy.asarray(x)) for x in init_values(np.float32)]
    held = [p.data for p in dev]
    opt_h, opt_d = make(host), make(dev)
    for _ in range(5):
        for ph, pd in zip(host, dev):
            ph.grad = grad_fn(ph.data).astype(np.float32)
            pd.grad = cupy.asarray(grad_fn(pd.data.get()).astype(np.float32))
        opt_h.step()
        opt_d.step()
        clip_grad_norm(dev, 1.0)
    for ph, pd, h in zip(host, dev, held):
        assert pd.data is h and pd.data.dtype == cupy.float32
        np.testing.assert_allclose(pd.data.get(), ph.data, rtol=1e-5, atol=1e-6)
    path = tmp_path / "gpu_ckpt"
    io.save({"optim": opt_d.state_dict()}, path)
    fresh = [P(cupy.asarray(p.data)) for p in dev]
    opt_f = make(fresh)
    opt_f.load_state_dict(io.load(path)["optim"])
    for s in opt_f.state:
        for v in s.values():
            assert not isinstance(v, np.ndarray)
    clip = [P(cupy.zeros(3, cupy.float32), cupy.full(3, 4.0, cupy.float32))]
    assert clip_grad_norm(clip, 1.0) == pytest.approx(math.sqrt(48.0), rel=1e-6)
    assert isinstance(clip[0].grad, cupy.ndarray) and clip[0].grad.dtype == cupy.float32


# ----------------------------------------------------------------------------- with the real engine
def test_with_tinytt_tensor_end_to_end(tmp_path):
    tt = pytest.importorskip("tinytt")
    if not hasattr(tt, "Tensor"):
        pytest.skip("tinytt.Tensor is not exported yet")
    x = tt.Tensor(np.array([1.0, -2.0, 3.0], np.float32), requires_grad=True)
    held = x.data
    opt = Adam([x], lr=0.1)
    for _ in range(200):
        opt.zero_grad()
        loss = (x * x).sum()
        loss.backward()
        assert x.grad.dtype == np.float32
        clip_grad_norm([x], 10.0)
        opt.step()
    assert x.data is held and x.data.dtype == np.float32
    assert np.max(np.abs(backend.to_numpy(x.data))) < 0.1
    io.save({"x": x.data, "opt": opt.state_dict()}, tmp_path / "ck")
    ck = io.load(tmp_path / "ck")
    y = tt.Tensor(ck["x"], requires_grad=True)
    opt2 = Adam([y], lr=0.1)
    opt2.load_state_dict(ck["opt"])
    assert opt2.state[0]["step"] == 200


# ----------------------------------------------------------------------------- chunked NumPy path
@pytest.mark.parametrize("cls, kw", ADAM_CASES)
@pytest.mark.parametrize("threads", ["1", "2", "3"])
def test_chunked_adam_matches_hand_formula_and_serial(cls, kw, threads, monkeypatch):
    # larger than several chunks (65536) plus a ragged tail: runs through tinytt.parallel
    rng = np.random.default_rng(7)
    x0 = rng.standard_normal((3, 65536 + 123))
    monkeypatch.setenv("TINYTT_NUM_THREADS", threads)
    p = P(x0.copy())
    run(cls([p], **kw), [p], 3)
    np.testing.assert_allclose(p.data, adam_reference(x0, **adam_ref_kwargs(cls, kw)),
                               rtol=1e-12, atol=1e-14)
    # bit-identical to the unchunked update of a Fortran-ordered copy (no chunking there)
    q = P(np.asfortranarray(x0))
    run(cls([q], **kw), [q], 3)
    assert np.array_equal(p.data, q.data)


def test_chunked_adam_float32_bit_identical_across_thread_counts(monkeypatch):
    rng = np.random.default_rng(3)
    x0 = rng.standard_normal(200_000).astype(np.float32)
    results = []
    for threads in ("1", "2"):
        monkeypatch.setenv("TINYTT_NUM_THREADS", threads)
        p = P(x0.copy())
        run(Adam([p], lr=1e-2), [p], 4)
        assert p.data.dtype == np.float32
        results.append(p.data)
    assert np.array_equal(results[0], results[1])


def test_step_checks_every_gradient_before_updating_any():
    a = backend.to_device(np.zeros(2))
    b = backend.to_device(np.zeros(2))
    from tinytt.nn import Parameter  # noqa: PLC0415
    pa, pb = Parameter(a), Parameter(b)
    opt = Adam([pa, pb], lr=0.1)
    pa.grad = backend.to_device(np.ones(2))
    pb.grad = backend.to_device(np.ones(3))
    with pytest.raises(ValueError, match=r"params\[1\]"):
        opt.step()
    assert np.array_equal(backend.to_numpy(pa.data), np.zeros(2))
    assert opt.state_dict()["state"]["0"] == {}


def test_adam_first_step_with_huge_float32_gradients():
    # Adam's first step is lr * sign(g) for any finite g: with g * g formed first, float32
    # overflowed above |g| = 1.8e19 (v = inf, a silent zero step)
    for opt_cls in (Adam, AdamW):
        p = P(np.ones(3, np.float32), np.array([1e20, -1e20, 3e19], np.float32))
        opt_cls([p], lr=1e-3, weight_decay=0.0).step()
        np.testing.assert_allclose(backend.to_numpy(p.data), [0.999, 1.001, 0.999], rtol=1e-6)


def test_clip_grad_norm_refuses_gradients_in_place_of_parameters():
    """A bare array (p.grad passed by mistake) or a list of arrays has no .grad: it was skipped,
    the call returned 0.0 and nothing was clipped."""
    g = np.ones(4) * 10
    for params in ([g], g, [{"grad": g}], "abc"):
        with pytest.raises(TypeError, match="clip_grad_norm: params"):
            clip_grad_norm(params, 1.0)
    p = P(np.ones(3))
    p.grad = [1.0, 2.0, 3.0]
    with pytest.raises(TypeError, match=r"params\[0\]\.grad"):
        clip_grad_norm([p], 1.0)
    assert np.array_equal(g, np.ones(4) * 10)


def test_optimizer_refuses_read_only_and_shared_arrays_before_any_change():
    data = np.ones(3)
    data.flags.writeable = False
    q = P(data)
    opt = Adam([q])
    q.grad = np.ones(3)
    with pytest.raises(ValueError, match="read-only"):
        opt.step()
    assert opt.state[0] == {}                       # the moments and step count did not advance
    shared = np.ones(3)
    with pytest.raises(ValueError, match="more than once"):
        SGD([P(shared), P(shared)], 1.0)


def test_load_state_dict_reports_bad_entries_as_value_errors():
    import copy

    p = P(np.ones(3))
    opt = Adam([p])
    p.grad = np.ones(3)
    opt.step()
    sd = opt.state_dict()
    bad = copy.deepcopy(sd)
    bad["hyperparameters"]["lr"] = "x"
    with pytest.raises(ValueError, match="lr"):
        Adam([P(np.ones(3))]).load_state_dict(bad, "load")
    bad = copy.deepcopy(sd)
    bad["params"]["0"]["shape"] = None
    with pytest.raises(ValueError, match="shape"):
        Adam([P(np.ones(3))]).load_state_dict(bad)


@pytest.mark.parametrize("make", [lambda ps: Adam(ps, lr=1e-3), lambda ps: AdamW(ps, lr=1e-3),
                                  lambda ps: Adam(ps, lr=1e-3, weight_decay=0.1)])
def test_adam_on_float16_parameters_steps_in_float32(make):
    # float16 cannot hold eps = 1e-8 or (1 - b2) g^2 for |g| < ~8e-3: the update divided by
    # zero (a gradient of 1e-3 gave -inf, a zero gradient nan)
    g = np.array([1e-3, 1e-1, 0.0, -2.0], np.float16)
    p16 = P(np.ones(4, np.float16), g.copy())
    p32 = P(np.ones(4, np.float32), g.astype(np.float32))
    opt16, opt32 = make([p16]), make([p32])
    for _ in range(3):
        opt16.step()
        opt32.step()
    assert p16.data.dtype == np.float16 and np.isfinite(p16.data).all()
    # the float32 steps, each rounded into float16 (ulp 2**-11 below 1)
    np.testing.assert_allclose(p16.data.astype(np.float32), p32.data, rtol=0, atol=2 * 2.0 ** -11)
    assert (p16.data[g != 0] != 1).all()                 # every entry with a gradient moved
    state = opt16.state_dict()
    fresh = make([P(np.ones(4, np.float16), g.copy())])
    fresh.load_state_dict(state)                                            # float32 moments accepted


def test_parameters_that_are_views_of_one_array_are_refused():
    a = np.ones((3, 2))
    for other in (a.T, a[1:], a[:, 0]):
        with pytest.raises(ValueError, match="overlap in memory"):
            Adam([P(a, None), P(other, None)])
    SGD([P(a[::2], None), P(a[1::2], None)], lr=0.1)     # interleaved, disjoint: fine
    SGD([P(np.ones(2), None), P(np.ones(2), None)], lr=0.1)


def test_adam_loads_float16_moments_saved_for_a_float16_parameter_before_float32_moments():
    p = P(np.ones(4, np.float16), np.full(4, 0.1, np.float16))
    opt = Adam([p], lr=1e-3)
    opt.step()
    state = opt.state_dict()
    for key in ("exp_avg", "exp_avg_sq"):           # the layout before float32 moments
        state["state"]["0"][key] = state["state"]["0"][key].astype(np.float16)
    again = Adam([P(np.ones(4, np.float16), np.full(4, 0.1, np.float16))], lr=1e-3)
    again.load_state_dict(state)
    assert again.state_dict()["state"]["0"]["exp_avg"].dtype == np.float32


def test_overlap_check_compares_only_arrays_whose_byte_ranges_overlap(monkeypatch):
    # the check compared every pair of parameters (3,000 parameters: 3.4 s); separate buffers
    # now need no exact comparison at all, and views of one array are still compared
    calls = []
    exact = np.shares_memory
    monkeypatch.setattr(np, "shares_memory", lambda a, b: calls.append(1) or exact(a, b))
    SGD([P(np.ones(8), None) for _ in range(300)], lr=0.1)
    assert calls == []
    a = np.ones(10)
    SGD([P(a[::2], None), P(a[1::2], None), P(np.ones(3), None)], lr=0.1)
    assert len(calls) == 1
