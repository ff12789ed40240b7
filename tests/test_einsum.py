"""einsum (tinytt/einsum.py): values against numpy.einsum, gradients, plan cache, equation errors."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinytt as tt
from conftest import on_device
from tinytt.testing import assert_close, check_grads
from tinytt.testing.strategies import float_arrays

EQUATIONS = [
    "ij,jk->ik", "ij,jk", "bij,bjk->bik", "i,i->", "i,j->ij", "ij->ji", "ij->", "ijk->kj",
    "ij,ij->ij", "ab,bc,cd->ad", "abc,cd,d->ab", "ij,jk->", "i,->i", "...ij,...jk->...ik",
    "...i,i->...", "ij...,j->i...", "ab,b", "Ab,bC->AC", "ij,kl->ijkl", "abc,c->a",
]


@st.composite
def einsum_case(draw):
    eq = draw(st.sampled_from(EQUATIONS))
    letters = sorted(set(c for c in eq if c.isalpha()))
    sizes = {c: draw(st.integers(1, 4), label=c) for c in letters}
    ell = tuple(draw(st.lists(st.integers(1, 3), max_size=2), label="ellipsis"))
    lhs = eq.split("->")[0]
    arrays = []
    for sub in lhs.split(","):
        parts = [tuple(sizes[c] for c in part) for part in sub.split("...")]
        shape = parts[0] + ell + parts[1] if len(parts) == 2 else parts[0]
        arrays.append(draw(float_arrays(shape), label=sub))
    return eq, arrays


@given(case=einsum_case())
def test_einsum_matches_numpy_and_grads(case):
    eq, arrays = case
    expected = np.einsum(eq, *arrays)
    got = tt.einsum(eq, *[tt.Tensor(on_device(a)) for a in arrays])
    assert got.shape == expected.shape
    assert_close(got, expected, dtype=np.float64)
    check_grads(lambda *xs: tt.einsum(eq, *xs), *[on_device(a) for a in arrays])
    xs = [tt.Tensor(on_device(a.astype(np.float32)), requires_grad=True) for a in arrays]
    out = tt.einsum(eq, *xs)
    assert out.dtype == np.float32
    assert_close(out, np.einsum(eq, *[a.astype(np.float32).astype(np.float64) for a in arrays]),
                 dtype=np.float32)
    out.backward(on_device(np.ones(out.shape, np.float32)))
    for x in xs:
        assert x.grad.dtype == np.float32 and x.grad.shape == x.shape


def test_einsum_summed_away_letter_gradient_is_broadcast():
    a = tt.Tensor(on_device(np.arange(6.0).reshape(2, 3)), requires_grad=True)
    b = tt.Tensor(on_device(np.array([1.0, 2.0])), requires_grad=True)
    tt.einsum("ij,i->", a, b).backward()
    assert_close(a.grad, [[1, 1, 1], [2, 2, 2]], dtype=np.float64)
    assert_close(b.grad, [3.0, 12.0], dtype=np.float64)


def test_einsum_mixed_with_int_operand_and_arrays():
    a = tt.Tensor(on_device(np.ones((2, 3))), requires_grad=True)
    ints = on_device(np.arange(3))
    out = tt.einsum("ij,j->i", a, ints)
    assert_close(out, [3.0, 3.0], dtype=np.float64)
    out.sum().backward()
    assert_close(a.grad, [[0, 1, 2], [0, 1, 2]], dtype=np.float64)


def test_einsum_plan_cache_hits_and_misses():
    tt.einsum_cache_clear()
    assert tt.einsum_cache_info() == (0, 0, 0)
    a = tt.Tensor(on_device(np.ones((3, 4))))
    b = tt.Tensor(on_device(np.ones((4, 5))))
    tt.einsum("ij,jk->ik", a, b)
    info = tt.einsum_cache_info()
    assert (info.hits, info.misses, info.size) == (0, 1, 1)
    for _ in range(5):
        tt.einsum("ij,jk->ik", a, b)
    info = tt.einsum_cache_info()
    assert (info.hits, info.misses, info.size) == (5, 1, 1)  # planned once
    # implicit output and spaces are canonicalised to the same plan
    tt.einsum("ij, jk", a, b)
    assert tt.einsum_cache_info().misses == 1
    # new shapes are a new plan
    tt.einsum("ij,jk->ik", tt.Tensor(on_device(np.ones((2, 4)))), b)
    assert tt.einsum_cache_info().misses == 2


def test_einsum_backward_plans_are_cached():
    tt.einsum_cache_clear()
    a = tt.Tensor(on_device(np.ones((3, 4))), requires_grad=True)
    b = tt.Tensor(on_device(np.ones((4, 5))), requires_grad=True)
    tt.einsum("ij,jk->ik", a, b).sum().backward()
    after_first = tt.einsum_cache_info()
    assert after_first.misses == 3 and after_first.size == 3  # forward + one per operand
    for _ in range(3):
        tt.einsum("ij,jk->ik", a, b).sum().backward()
    info = tt.einsum_cache_info()
    assert info.misses == 3 and info.hits == after_first.hits + 9
    tt.einsum_cache_clear()
    assert tt.einsum_cache_info() == (0, 0, 0)


BAD = [
    ("ij,jk->ik", [(2, 3)], "operand"),                       # wrong operand count
    ("ij->ij", [(2, 3), (3, 2)], "operand"),
    ("ijk,jk->ik", [(2, 3), (3, 4)], "subscripts"),            # too many subscripts
    ("i,jk->ik", [(2, 3), (3, 4)], "subscripts"),              # too few
    ("i1,1k->ik", [(2, 3), (3, 4)], "invalid character"),      # digits
    ("i-j->ij", [(2, 3)], "invalid character"),
    ("ij,jk->i k!", [(2, 3), (3, 4)], "invalid character"),
    ("i.j,jk->ik", [(2, 3), (3, 4)], "invalid character"),
    ("ij,jk->ii", [(2, 3), (3, 4)], "repeat"),                 # repeated output letter
    ("ij,jk->iz", [(2, 3), (3, 4)], "does not occur"),         # output letter not in inputs
    ("ij,jk->ik", [(2, 3), (4, 5)], "size"),                   # inconsistent sizes
    ("ij,jk->ik->i", [(2, 3), (3, 4)], "->"),
    ("ii->i", [(3, 3)], "repeats a letter"),                    # diagonal: unsupported
    ("...ij->ij", [(3,)], "fewer"),
    ("...i...,i->i", [(2, 3, 4), (4,)], "'...'"),               # two ellipses in one operand
    ("...j,...j->...", [(2, 1, 3), (1, 4, 3)], "'...' dimensions"),  # no size-1 broadcasting
]


@pytest.mark.parametrize("eq, shapes_, match", BAD)
def test_einsum_malformed_equations(eq, shapes_, match):
    ops = [tt.Tensor(on_device(np.ones(s))) for s in shapes_]
    with pytest.raises(ValueError, match=match) as exc:
        tt.einsum(eq, *ops)
    assert "einsum" in str(exc.value)


def test_einsum_size_error_names_shapes():
    with pytest.raises(ValueError, match=r"'j'.*3.*4.*\(2, 3\).*\(4, 5\)"):
        tt.einsum("ij,jk->ik", tt.Tensor(on_device(np.ones((2, 3)))), tt.Tensor(on_device(np.ones((4, 5)))))


def test_einsum_bad_argument_types():
    with pytest.raises(TypeError, match="equation must be a string"):
        tt.einsum(3, tt.Tensor(on_device(np.ones(2))))
    with pytest.raises(ValueError, match="at least one operand"):
        tt.einsum("i->i")


def test_einsum_plan_cache_is_bounded_least_recently_used(monkeypatch):
    """The cache kept a plan for every shape ever seen (a run with changing sequence lengths
    grew it without bound); it now drops the least recently used beyond PLAN_CACHE_SIZE."""
    import importlib

    einsum_module = importlib.import_module("tinytt.einsum")

    monkeypatch.setattr(einsum_module, "PLAN_CACHE_SIZE", 3)
    tt.einsum_cache_clear()
    b = tt.Tensor(on_device(np.ones((4, 2))))
    first = tt.Tensor(on_device(np.ones((1, 4))))
    for n in range(1, 6):
        tt.einsum("ij,jk->ik", tt.Tensor(on_device(np.ones((n, 4)))), b)
        tt.einsum("ij,jk->ik", first, b)     # kept in use: never the least recent
    info = tt.einsum_cache_info()
    assert info.size == 3 and info.misses == 5
    tt.einsum("ij,jk->ik", first, b)
    assert tt.einsum_cache_info().misses == 5    # still cached
    tt.einsum("ij,jk->ik", tt.Tensor(on_device(np.ones((2, 4)))), b)
    assert tt.einsum_cache_info().misses == 6    # (2, 4) was dropped
    tt.einsum_cache_clear()
