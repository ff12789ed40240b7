import threading, numpy as np, pytest, tinytt as tt
from tinytt.testing import check_grads
from tinytt.tensor import record

def test_no_grad_object_reusable_and_nested():
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

def test_no_grad_decorator_and_threads():
    @tt.no_grad()
    def f():
        return tt.is_grad_enabled()
    assert f() is False and f() is False and tt.is_grad_enabled()
    seen = []
    with tt.no_grad():
        t = threading.Thread(target=lambda: seen.append(tt.is_grad_enabled())); t.start(); t.join()
    assert seen == [True]

@pytest.mark.parametrize("fn", [lambda a: tt.concat([a, a], axis=None), lambda a: tt.concat([a, a], axis=(1, 0)),
                                lambda a: tt.stack([a, a], axis=(2, 1)), lambda a: tt.split(a, 2, axis=None)])
def test_single_axis_ops_refuse_none_and_tuples(fn):
    with pytest.raises(TypeError, match="single int"):
        fn(tt.Tensor(np.ones((2, 2))))

def test_check_grads_catches_vjp_writing_into_its_gradient():
    def bad(x):
        def vjp(g):
            g *= 2.0
            return g
        return record("bad", x.data.copy(), (x,), (vjp,))
    with pytest.raises(AssertionError):
        check_grads(bad, np.random.default_rng(0).standard_normal(4))
