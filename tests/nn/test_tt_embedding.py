"""TTEmbedding: the paper's parameter counts, initialisation variance, lookup and errors."""

import numpy
import pytest

import tinytt as tt
from tinytt.nn import TTEmbedding
from tinytt.testing import assert_close, check_grads


@pytest.mark.parametrize("shape,params,ratio", [
    (((25, 30, 40), (4, 8, 8)), 68_160, 93.9),
    (((10, 10, 15, 20), (4, 4, 4, 4)), None, 232.0),
    (((5, 5, 5, 5, 6, 8), (2, 2, 2, 2, 4, 4)), None, 441.0),
])
def test_paper_parameter_counts(shape, params, ratio):
    layer = TTEmbedding(25000, 256, rank=16, shape=shape, seed=0)
    # independent count: sum_k r_{k-1} v_k d_k r_k with ranks (1, 16, ..., 16, 1)
    n = len(shape[0])
    ranks = [1] + [16] * (n - 1) + [1]
    count = sum(ranks[k] * shape[0][k] * shape[1][k] * ranks[k + 1] for k in range(n))
    assert layer.num_parameters == count
    if params is not None:
        assert count == params
    assert int(layer.compression_ratio) == int(ratio)
    assert layer.compression_ratio == pytest.approx(25000 * 256 / count)


def test_default_shape_follows_the_heuristic():
    assert TTEmbedding(25000, 256, n_cores=3).row_shape == (25, 30, 40)
    assert TTEmbedding(25000, 256, n_cores=3).col_shape == (4, 8, 8)
    assert TTEmbedding(25000, 256, n_cores=4).row_shape == (10, 10, 15, 20)
    assert TTEmbedding(25000, 256, n_cores=6).row_shape == (5, 5, 5, 5, 6, 8)


@pytest.mark.parametrize("shape", [
    ((25, 30, 40), (4, 8, 8)), ((10, 10, 15, 20), (4, 4, 4, 4)), ((5, 5, 5, 5, 6, 8), (2, 2, 2, 2, 4, 4)),
])
def test_glorot_variance_of_the_full_matrix(shape):
    """Var(W) = 2 / (V' + D) for every draw: i.i.d. cores vary it by 4-15% (std over seeds for
    these shapes: the entries share few parameters), so the init rescales the cores; checked on
    16 seeds with the TT identities sum(W) and ||W||_F^2 (against the dense matrix on the
    first two seeds); the mean is ~0."""
    target = 2.0 / (30000 + 256)
    variances, means = [], []
    for seed in range(16):
        layer = TTEmbedding(25000, 256, rank=16, shape=shape, seed=seed, dtype="float64")
        cores = [tt.to_numpy(c) for c in layer.cores]
        total, squares = numpy.ones(1), numpy.ones((1, 1))
        for c in cores:
            total = total @ c.sum(axis=(1, 2))
            squares = numpy.einsum("bijc,bijd->cd", numpy.einsum("ab,aijc->bijc", squares, c), c)
        size = 30000 * 256
        mean, var = total.item() / size, squares.item() / size - (total.item() / size) ** 2
        if seed < 2:
            w = tt.to_numpy(layer.matrix.full())
            assert var == pytest.approx(w.var(), rel=1e-9)
            assert mean == pytest.approx(w.mean(), rel=1e-9, abs=1e-15)
        variances.append(var)
        means.append(mean)
    assert max(abs(v / target - 1) for v in variances) < 1e-9     # each draw, not just on average
    assert max(abs(m) for m in means) < 0.05 * numpy.sqrt(target)


@pytest.mark.parametrize("strategy", ["auto", "gather", "prefix", "full"])
def test_lookup_equals_full_rows_any_id_shape(strategy):
    layer = TTEmbedding(1000, 24, rank=4, n_cores=3, padding_idx=7, dtype="float64", seed=1)
    rng = numpy.random.default_rng(0)
    ids = rng.integers(0, 1000, size=(3, 4, 5))
    ids[0, 0, :2] = 7
    ids[1, 1, 1] = ids[2, 2, 2]
    out = layer(tt.to_device(ids), strategy=strategy)
    assert out.shape == (3, 4, 5, 24)
    dense = tt.to_numpy(layer.to_dense())
    assert numpy.all(dense[7] == 0)
    assert_close(out, dense[ids], rtol=1e-10, atol=1e-13)


def test_negative_padding_idx_counts_from_the_end_as_in_embedding():
    layer = TTEmbedding(100, 8, rank=2, padding_idx=-1, seed=0)
    assert layer.padding_idx == 99 == tt.nn.Embedding(100, 8, padding_idx=-1).padding_idx
    assert not tt.to_numpy(layer(tt.to_device(numpy.array([99]))).data).any()
    with pytest.raises(ValueError, match="padding_idx"):
        TTEmbedding(100, 8, padding_idx=-101)


def test_padding_idx_sends_no_gradient_and_matches_dense_gradients():
    layer = TTEmbedding(60, 6, rank=3, shape=((3, 4, 5), (1, 2, 3)), padding_idx=2, dtype="float64", seed=2)
    ids = tt.to_device(numpy.array([[2, 5, 59], [5, 2, 0]]))
    upstream = tt.to_device(numpy.random.default_rng(1).standard_normal((2, 3, 6)))
    layer(ids).backward(upstream)
    got = [p.grad for p in layer.parameters()]
    layer.zero_grad()
    layer.to_dense()[ids].backward(upstream)
    for a, b in zip(got, (p.grad for p in layer.parameters())):
        assert_close(a, b, rtol=1e-10, atol=1e-12)
    check_grads(lambda *cores: _lookup_with(layer, cores, ids), *[p.data for p in layer.parameters()])


def _lookup_with(layer, cores, ids):
    from tinytt.tt.lookup import tt_matrix_rows
    return tt_matrix_rows(list(cores), ids, layer.row_shape, layer.col_shape, padding_idx=layer.padding_idx)


def test_from_dense_reconstructs_and_compresses():
    rng = numpy.random.default_rng(3)
    exact = TTEmbedding(90, 12, rank=3, shape=((3, 5, 6), (2, 3, 2)), dtype="float64", seed=4)
    w = tt.to_numpy(exact.to_dense())
    back = TTEmbedding.from_dense(tt.to_device(w), eps=1e-10, row_shape=(3, 5, 6), col_shape=(2, 3, 2))
    assert max(back.ranks) <= 3 * 2 * 2  # at most the exact ranks of a rank-3 TT with these modes
    assert_close(back.to_dense(), w, rtol=1e-8, atol=1e-10)
    noisy = w + 1e-3 * rng.standard_normal(w.shape)
    capped = TTEmbedding.from_dense(tt.to_device(noisy), rank=2, row_shape=(3, 5, 6), col_shape=(2, 3, 2))
    assert max(capped.ranks) <= 2
    # an unpadded vocabulary: rows past V are zero padding and ignored
    odd = TTEmbedding.from_dense(tt.to_device(rng.standard_normal((85, 12))), eps=1e-12, row_shape=(3, 5, 6),
                                 col_shape=(2, 3, 2))
    assert odd.num_embeddings == 85 and odd.to_dense().shape == (85, 12)


def test_dtypes():
    assert TTEmbedding(100, 8, rank=2).cores[0].dtype == numpy.float32
    layer = TTEmbedding(100, 8, rank=2, dtype="float64")
    assert layer(tt.to_device(numpy.array([1, 2]))).dtype == numpy.float64


def test_bad_input_errors():
    layer = TTEmbedding(100, 8, rank=2, seed=0)
    with pytest.raises(IndexError, match=r"\[0, 100\)"):
        layer(tt.to_device(numpy.array([100])))  # inside the padded V' but outside V
    with pytest.raises(IndexError):
        layer(tt.to_device(numpy.array([-1])))
    with pytest.raises(TypeError, match="integer"):
        layer(tt.to_device(numpy.array([1.0])))
    with pytest.raises(ValueError, match="empty"):
        layer(tt.to_device(numpy.zeros((0,), dtype=numpy.int64)))
    with pytest.raises(ValueError, match="padding_idx"):
        TTEmbedding(100, 8, padding_idx=100)
    with pytest.raises(ValueError, match="embedding_dim"):
        TTEmbedding(100, 8, shape=((10, 10), (2, 2)))
    with pytest.raises(ValueError, match="num_embeddings"):
        TTEmbedding(100, 8, shape=((5, 10), (2, 4)))
    with pytest.raises(ValueError, match="num_embeddings"):
        TTEmbedding(0, 8)
    with pytest.raises(ValueError, match="rank=|eps="):
        TTEmbedding.from_dense(numpy.ones((4, 4)))
    with pytest.raises(ValueError, match="empty"):
        layer([])
    with pytest.raises(ValueError, match="rectangular"):
        layer([[1, 2], [3]])
    with pytest.raises(ValueError, match="shape"):
        TTEmbedding(100, 16, shape=((10.9, 10.2), (4, 4)))   # was truncated to (10, 10)
    weight = numpy.ones((100, 16))
    for bad_rank in ("4", 0, 2.5, True, [1, 0, 1], []):
        with pytest.raises(ValueError, match="rank"):
            TTEmbedding.from_dense(weight, rank=bad_rank)
    with pytest.raises(ValueError, match="n_cores"):
        TTEmbedding.from_dense(weight, rank=2, n_cores=0)
    with pytest.raises(ValueError, match="shape"):
        TTEmbedding.from_dense(weight, rank=2, row_shape=(10.5, 10))
    for bad_value in (numpy.nan, numpy.inf):
        bad = weight.copy()
        bad[3, 4] = bad_value
        with pytest.raises(ValueError, match="weight contains NaN or Inf"):
            TTEmbedding.from_dense(tt.to_device(bad), eps=1e-3)


def test_from_dense_shape_rank_and_dtype_arguments():
    rng = numpy.random.default_rng(5)
    w = tt.to_device(rng.standard_normal((20, 12)))
    # either shape alone sets the number of cores; the other one follows the heuristic
    only_cols = TTEmbedding.from_dense(w, eps=1e-12, col_shape=(3, 4))
    assert only_cols.col_shape == (3, 4) and len(only_cols.row_shape) == 2
    assert_close(only_cols.to_dense(), w, rtol=1e-9, atol=1e-10)
    only_rows = TTEmbedding.from_dense(w, eps=1e-12, row_shape=(4, 5))
    assert only_rows.row_shape == (4, 5) and len(only_rows.col_shape) == 2
    # a rank list is checked as in the constructor: N + 1 caps starting and ending with 1
    capped = TTEmbedding.from_dense(w, rank=[1, 2, 3, 1], row_shape=(2, 2, 5), col_shape=(2, 2, 3))
    assert capped.ranks[1] <= 2 and capped.ranks[2] <= 3
    for bad in ([2, 2, 3, 2], [1, 2, 1]):
        with pytest.raises(ValueError, match="from_dense: rank .*starting and ending with 1"):
            TTEmbedding.from_dense(w, rank=bad, row_shape=(2, 2, 5), col_shape=(2, 2, 3))
    # a rank given as a NumPy integer or 0-d integer array, as tt_matrix_svd's max_rank takes
    # (a 0-d array was refused); zero, bools, floats and 1-element arrays are not ranks
    for rank in (numpy.int64(2), numpy.array(2)):
        assert max(TTEmbedding.from_dense(w, rank=rank).ranks) == 2
    for bad in (numpy.array(0), True, 2.0, numpy.array([2])):
        with pytest.raises(ValueError, match="from_dense: rank must be a positive int"):
            TTEmbedding.from_dense(w, rank=bad)
    # the layer's dtypes only: float16 would silently come back as float32
    with pytest.raises(TypeError, match="float32 or float64"):
        TTEmbedding.from_dense(w.astype(numpy.float16), eps=1e-2)
    assert TTEmbedding.from_dense(w.astype(numpy.float32), eps=1e-3).cores[0].dtype == numpy.float32


def test_ids_from_another_library_get_a_type_error():
    torch = pytest.importorskip("torch")
    layer = TTEmbedding(20, 12, rank=3, seed=0)
    for ids in (torch.tensor([1, 2]), torch.tensor([1.0, 2.0])):
        with pytest.raises(TypeError, match="TTEmbedding: ids must be a NumPy or CuPy integer array"):
            layer(ids)
    with pytest.raises(TypeError, match="Embedding: ids"):
        tt.nn.Embedding(5, 3)(torch.tensor([1]))


@pytest.mark.parametrize("kind", ["dense", "tt"])
def test_mean_pooled_lookup_gradient_equals_materialised_upstream(kind):
    # mean over the sequence hands the lookup a broadcast gradient, which the segment sum
    # reads in place; the result must equal backpropagating the materialised array
    rng = numpy.random.default_rng(0)
    ids = rng.integers(0, 50, (3, 7))
    ids[0, :4] = 9                                   # repeated ids, a long run
    def layer():
        if kind == "dense":
            return tt.nn.Embedding(50, 12, dtype="float64", seed=1)
        return tt.nn.TTEmbedding(50, 12, rank=3, dtype="float64", seed=1)
    upstream = rng.standard_normal((3, 12))
    pooled = layer()
    pooled(tt.to_device(ids)).mean(axis=1).backward(tt.to_device(upstream))
    full = layer()
    full(tt.to_device(ids)).backward(tt.to_device(numpy.repeat(upstream[:, None, :] / 7, 7, axis=1)))
    for a, b in zip(pooled.parameters(), full.parameters()):
        assert_close(a.grad, b.grad, rtol=1e-12, atol=1e-14)
