"""TT-SVD, rounding, the TT-matrix lookup and ``TTLinear`` side by side with torchtt
(float64), when torchtt is importable.

Both libraries implement the eps rule of Oseledets (2011): truncate every unfolding with
``delta = eps / sqrt(d - 1) * ||A||``, so the result is within ``eps * ||A||`` of the input.
torchtt takes ``||A||`` at each step as the norm of what is left after the truncations so far
(at most ``||A||``, and smaller by a factor ``sqrt(1 - e^2)`` for a relative truncation error
``e <= eps``); tinytt takes the input's norm throughout. At eps = 0.32 that moved a rank (found
by hypothesis), so eps stays <= 1e-2 here, where the factor is >= 0.99995.
The dense tests (``test_tt_svd.py``) check tinytt against NumPy ground truth; these check that
a second, independent implementation keeps the same ranks on the same data, so tinytt neither
keeps ranks it could drop nor drops ranks the rule keeps (t3f, for one, ignores ``eps``).
The ranks must be equal: they could differ only where a singular value sits at the
threshold to within the two LAPACK builds' rounding, which random data does not produce
(equal in 300 TT-SVD and 1,500 rounding cases drawn with seeds, 2026-11-29).
Skipped when torchtt (and so torch) is not installed; CI installs neither, so there they run
only where the machine already has them.
"""

from unittest import mock

import numpy
import pytest
from hypothesis import given, strategies as st

import tinytt
from tinytt import nn
from tinytt.testing.strategies import tt_matrix_cores, tt_matrix_shapes, tt_ranks, tt_shapes
from tinytt.tt import tt_svd
from tinytt.tt.cores import full_cores

torch = pytest.importorskip("torch")
torchtt = pytest.importorskip("torchtt")


@st.composite
def shapes_and_ranks(draw):
    """``(shape, ranks)``: 2-5 modes of size 2-5, internal ranks 1-4 (the package's strategies)."""
    shape = draw(tt_shapes(min_order=2, max_order=5, min_mode=2, max_mode=5))
    return shape, list(draw(tt_ranks(len(shape), max_rank=4)))


@st.composite
def noisy_low_rank(draw, max_log_eps=-2):
    """(dense float64 tensor, eps): a random TT of known ranks plus noise of a drawn size;
    eps in [1e-8, 10**max_log_eps]."""
    shape, ranks = draw(shapes_and_ranks())
    rng = numpy.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    cores = [rng.standard_normal((ranks[k], n, ranks[k + 1])) for k, n in enumerate(shape)]
    noise = 10.0 ** draw(st.floats(-8, -1))
    dense = full_cores(cores) + noise * rng.standard_normal(shape)
    eps = 10.0 ** draw(st.floats(-8, max_log_eps))
    return dense, eps


def rel_error(approx, dense) -> float:
    return float(numpy.linalg.norm(approx - dense) / numpy.linalg.norm(dense))


def assert_ranks_match(ours, theirs):
    assert [int(r) for r in ours] == [int(r) for r in theirs]


@given(noisy_low_rank())
def test_tt_svd_ranks_and_error_match_torchtt(case):
    dense, eps = case
    ours = tt_svd(tinytt.to_device(dense), eps=eps)
    theirs = torchtt.TT(torch.from_numpy(dense), eps=eps)
    assert_ranks_match(ours.ranks, theirs.R)
    assert rel_error(tinytt.to_numpy(ours.full().data), dense) <= eps * (1 + 1e-9)
    assert rel_error(theirs.full().numpy(), dense) <= eps * (1 + 1e-9)


def reversed_torchtt(tt):
    """torchtt TT of ``tt`` with the mode order reversed: core k becomes core d-1-k, transposed."""
    return torchtt.TT([torch.from_numpy(numpy.ascontiguousarray(tinytt.to_numpy(c.data).transpose(2, 1, 0)))
                       for c in reversed(tt.cores)])


@given(noisy_low_rank(), st.integers(0, 2**32 - 1))
def test_rounding_a_sum_matches_torchtt(case, seed):
    """Round ``a + b`` (the ranks add up) with both libraries.

    tinytt right-orthogonalises and truncates left to right (the sweep of TT-SVD); torchtt
    left-orthogonalises and truncates right to left. With truncation errors near eps the two
    sweeps can keep different ranks (both valid), so torchtt rounds the TT with its modes
    reversed, which is tinytt's sweep: same ranks (reversed back), both within eps.
    """
    dense, eps = case
    a = tt_svd(tinytt.to_device(dense), eps=1e-12)
    b = tinytt.tt.random_tt(a.shape, [1] + [2] * (len(a.shape) - 1) + [1], seed=seed)
    total = a + b
    exact = tinytt.to_numpy(total.full().data)
    ours = total.round(eps=eps)
    theirs = reversed_torchtt(total).round(eps)
    assert_ranks_match(ours.ranks, list(theirs.R)[::-1])
    assert rel_error(tinytt.to_numpy(ours.full().data), exact) <= eps * (1 + 1e-9)
    theirs_full = theirs.full().numpy().transpose(tuple(range(len(a.shape)))[::-1])
    assert rel_error(theirs_full, exact) <= eps * (1 + 1e-9)


@given(shapes_and_ranks(), st.integers(0, 2**32 - 1))
def test_rounding_removes_a_cancelled_term_like_torchtt(case, seed):
    """``(a + b) - b`` holds ``a`` in cores of ranks r_a + 2 r_b: rounding at eps = 1e-10 must
    find a's ranks again, in either library. ``a`` is a TT with Gaussian cores (no noise term,
    whose singular values could sit between 1e-12 and 1e-10), at its minimal ranks."""
    shape, ranks = case
    a = tinytt.tt.random_tt(shape, ranks, seed=seed).round(eps=1e-12)
    b = tinytt.tt.random_tt(shape, [1] + [3] * (len(shape) - 1) + [1], seed=seed + 1)
    padded = (a + b) - b
    ours = padded.round(eps=1e-10)
    theirs = torchtt.TT([torch.from_numpy(tinytt.to_numpy(c.data)) for c in padded.cores]).round(1e-10)
    assert [int(r) for r in ours.ranks] == [int(r) for r in a.ranks]
    assert [int(r) for r in theirs.R] == [int(r) for r in a.ranks]
    a_full = tinytt.to_numpy(a.full().data)
    assert rel_error(tinytt.to_numpy(ours.full().data), a_full) <= 1e-9


@given(tt_matrix_shapes(min_order=2, max_order=4), st.data())
def test_lookup_rows_match_torchtt_full_matrix(shapes, data):
    """The lookup (every strategy) against torchtt's dense TT-matrix built from the same cores:
    an independent ``full()`` (its cores are ``(r, m, n, r)`` too, rows in C order)."""
    row_shape, col_shape = shapes
    ranks = data.draw(tt_ranks(len(row_shape), max_rank=4))
    rng = numpy.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    cores = [rng.standard_normal((ranks[k], m, n, ranks[k + 1]))
             for k, (m, n) in enumerate(zip(row_shape, col_shape))]
    n_rows = int(numpy.prod(row_shape))
    ids = rng.integers(0, n_rows, size=data.draw(st.integers(1, 3 * n_rows)))
    dense = torchtt.TT([torch.from_numpy(c) for c in cores]).full().numpy()
    dense = dense.reshape(n_rows, int(numpy.prod(col_shape)))
    matrix = tinytt.tt.TTMatrix([tinytt.to_device(c) for c in cores])
    for strategy in ("auto", "gather", "prefix", "full"):
        rows = tinytt.to_numpy(matrix.rows(tinytt.to_device(ids), strategy=strategy).data)
        numpy.testing.assert_allclose(rows, dense[ids], rtol=1e-12, atol=1e-12 * numpy.abs(dense).max())


@given(cores=tt_matrix_cores(min_order=1, max_order=3, max_mode=4, max_rank=3),
       batch=st.integers(1, 5), path=st.sampled_from(["direct", "full"]), seed=st.integers(0, 2**32 - 1))
def test_tt_linear_matches_torchtt_matvec(cores, batch, path, seed):
    """``TTLinear`` (``x @ W + b``, both forward paths) against torchtt's TT-matrix times a
    dense batch, ``W^T x``: torchtt's TT-matrix of ``W^T`` has the cores with the row and
    column axes swapped."""
    row_shape = tuple(c.shape[1] for c in cores)
    col_shape = tuple(c.shape[2] for c in cores)
    n_in, n_out = int(numpy.prod(row_shape)), int(numpy.prod(col_shape))
    rng = numpy.random.default_rng(seed)
    layer = nn.TTLinear(n_in, n_out, rank=1, shape=(row_shape, col_shape), dtype="float64")
    layer.cores = [nn.Parameter(tinytt.to_device(c)) for c in cores]
    bias = rng.standard_normal(n_out)
    layer.bias.data[...] = tinytt.to_device(bias)
    x = rng.standard_normal((batch, n_in))
    costs = (lambda self, b: (0, 1)) if path == "direct" else (lambda self, b: (1, 0))
    with mock.patch.object(nn.TTLinear, "_costs", costs):
        ours = tinytt.to_numpy(layer(tinytt.Tensor(tinytt.to_device(x))).data)
    w_t = torchtt.TT([torch.from_numpy(numpy.ascontiguousarray(c.transpose(0, 2, 1, 3))) for c in cores])
    theirs = (w_t @ torch.from_numpy(x.reshape((batch,) + row_shape))).numpy().reshape(batch, n_out) + bias
    numpy.testing.assert_allclose(ours, theirs, rtol=1e-11, atol=1e-11 * max(1.0, numpy.abs(theirs).max()))
