"""Tests for tinytt.data.batching."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinytt.data import BucketBatcher, bptt_batches, iterate_batches, pad_sequences


def test_pad_sequences_basic():
    ids, lengths = pad_sequences([[1, 2, 3], [4], []])
    assert ids.dtype == np.int64 and lengths.dtype == np.int64
    np.testing.assert_array_equal(ids, [[1, 2, 3], [4, 0, 0], [0, 0, 0]])
    np.testing.assert_array_equal(lengths, [3, 1, 0])


def test_pad_sequences_truncate_and_pad_id():
    seqs = [np.array([1, 2, 3, 4, 5]), [6, 7]]
    ids, lengths = pad_sequences(seqs, max_len=3, pad_id=9)
    np.testing.assert_array_equal(ids, [[1, 2, 3], [6, 7, 9]])
    np.testing.assert_array_equal(lengths, [3, 2])
    ids, _ = pad_sequences(seqs, max_len=3, truncate="start")
    np.testing.assert_array_equal(ids, [[3, 4, 5], [6, 7, 0]])
    ids, _ = pad_sequences([[1], [2]], max_len=10)  # width = longest, not max_len
    assert ids.shape == (2, 1)


def test_pad_sequences_empty_and_errors():
    ids, lengths = pad_sequences([])
    assert ids.shape == (0, 0) and lengths.shape == (0,)
    with pytest.raises(ValueError, match="truncate"):
        pad_sequences([[1]], truncate="middle")
    with pytest.raises(ValueError, match="max_len"):
        pad_sequences([[1]], max_len=0)
    with pytest.raises(TypeError, match=r"seqs\[1\]"):
        pad_sequences([[1], [[1, 2]]])
    with pytest.raises(TypeError, match=r"seqs\[0\]"):
        pad_sequences([[1.5]])
    with pytest.raises(TypeError):
        pad_sequences("abc")


def _collect(batcher, epoch=0):
    out = []
    for ids, lengths, labels in batcher.epoch(epoch):
        out.append((ids.copy(), lengths.copy(), None if labels is None else labels.copy(), batcher.last_indices))
    return out


def test_batches_shapes_labels_alignment_and_bucketing():
    rng = np.random.default_rng(0)
    seqs = [list(rng.integers(2, 50, size=int(n))) for n in rng.integers(1, 40, size=257)]
    labels = np.arange(257)
    b = BucketBatcher(seqs, labels, batch_size=16, seed=3, bucket_size_multiplier=4)
    assert len(b) == 17
    batches = _collect(b)
    assert len(batches) == 17
    for ids, lengths, labs, idx in batches:
        np.testing.assert_array_equal(labs, idx)
        assert ids.shape == (len(idx), lengths.max())
        for row, n, i in zip(ids, lengths, idx):
            assert n == len(seqs[i])
            np.testing.assert_array_equal(row[:n], seqs[i])
            assert (row[n:] == 0).all()
    # bucketing: padding is much less than with random batches
    padded = sum(ids.size for ids, *_ in batches)
    random_padded = sum(16 * max(len(seqs[i]) for i in chunk) for chunk in np.array_split(rng.permutation(257), 17))
    assert padded < 0.8 * random_padded


def test_determinism_and_epochs():
    seqs = [[1] * (i % 7 + 1) for i in range(100)]
    a = BucketBatcher(seqs, batch_size=8, seed=5)
    b = BucketBatcher(seqs, batch_size=8, seed=5)
    order = lambda bt, e: [idx.tolist() for idx in bt.batch_indices(e)]
    assert order(a, 0) == order(b, 0)
    assert order(a, 1) == order(b, 1)
    assert order(a, 0) != order(a, 1)
    assert order(a, 0) != order(BucketBatcher(seqs, batch_size=8, seed=6), 0)
    # iterating the object runs epochs 0, 1, ...
    first = [a.last_indices.tolist() for _ in iter(a)]
    second = [a.last_indices.tolist() for _ in iter(a)]
    assert first == order(b, 0) and second == order(b, 1)
    # labels None -> None
    assert all(labs is None for _, _, labs in iterate_batches(seqs, batch_size=8))


def test_no_shuffle_is_ordered_within_pools():
    seqs = [[1] * n for n in [5, 1, 3, 2, 4, 6]]
    b = BucketBatcher(seqs, batch_size=2, shuffle=False, bucket_size_multiplier=1)
    assert [i.tolist() for i in b.batch_indices()] == [[1, 0], [3, 2], [4, 5]]
    b = BucketBatcher(seqs, batch_size=2, shuffle=False, bucket_size_multiplier=3)
    assert [i.tolist() for i in b.batch_indices()] == [[1, 3], [2, 4], [0, 5]]


def test_max_len_and_drop_last():
    seqs = [[3] * n for n in range(1, 12)]
    b = BucketBatcher(seqs, batch_size=4, max_len=5, drop_last=True, seed=1)
    assert len(b) == 2
    got = list(b.epoch(0))
    assert len(got) == 2 and all(ids.shape[0] == 4 and ids.shape[1] <= 5 for ids, _, _ in got)
    assert all(lengths.max() <= 5 for _, lengths, _ in got)


@pytest.mark.parametrize("kwargs, match", [
    ({"batch_size": 0}, "batch_size"),
    ({"bucket_size_multiplier": 0}, "bucket_size_multiplier"),
    ({"seed": -1}, "seed"),
    ({"labels": [1, 2]}, "labels"),
    ({"max_len": -3}, "max_len"),
    ({"truncate": "x"}, "truncate"),
])
def test_batcher_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BucketBatcher([[1], [2], [3]], **kwargs)


@given(
    lengths=st.lists(st.integers(0, 30), max_size=120),
    batch_size=st.integers(1, 17),
    mult=st.integers(1, 6),
    seed=st.integers(0, 2**32 - 1),
    epoch=st.integers(0, 5),
    shuffle=st.booleans(),
)
def test_every_example_exactly_once_per_epoch(lengths, batch_size, mult, seed, epoch, shuffle):
    seqs = [list(range(2, 2 + n)) for n in lengths]
    b = BucketBatcher(seqs, labels=np.arange(len(seqs)), batch_size=batch_size, seed=seed,
                      bucket_size_multiplier=mult, shuffle=shuffle)
    seen = []
    n_batches = 0
    for ids, lens, labs in b.epoch(epoch):
        assert 1 <= len(labs) <= batch_size
        np.testing.assert_array_equal(lens, [lengths[i] for i in labs])
        seen.extend(labs.tolist())
        n_batches += 1
    assert sorted(seen) == list(range(len(seqs)))
    assert n_batches == len(b)
    again = [labs.tolist() for _, _, labs in b.epoch(epoch)]
    assert [x for batch in again for x in batch] == seen


@given(n=st.integers(0, 100), batch_size=st.integers(1, 10), seed=st.integers(0, 100))
def test_drop_last_drops_only_the_remainder(n, batch_size, seed):
    b = BucketBatcher([[1]] * n, batch_size=batch_size, seed=seed, drop_last=True, bucket_size_multiplier=3)
    idx = b.batch_indices(0)
    assert all(len(i) == batch_size for i in idx)
    flat = np.concatenate(idx) if idx else np.zeros(0)
    assert len(set(flat.tolist())) == len(flat) == (n // batch_size) * batch_size == len(b) * batch_size


def test_bptt_batches():
    ids = np.arange(103)
    out = list(bptt_batches(ids, batch_size=4, bptt=10))
    # 103 // 4 = 25 columns -> 24 input steps -> windows 10, 10, 4
    assert [x.shape for x, _ in out] == [(4, 10), (4, 10), (4, 4)]
    data = ids[:100].reshape(4, 25)
    x = np.concatenate([x for x, _ in out], axis=1)
    y = np.concatenate([y for _, y in out], axis=1)
    np.testing.assert_array_equal(x, data[:, :-1])
    np.testing.assert_array_equal(y, data[:, 1:])
    assert x.dtype == np.int64
    with pytest.raises(ValueError, match="bptt"):
        list(bptt_batches(ids, 4, 0))
    with pytest.raises(ValueError, match="at least"):
        list(bptt_batches(np.arange(5), 4, 2))


def test_drop_last_does_not_always_drop_the_longest():
    # one pool (n <= batch_size * multiplier): dropping the incomplete batch after the
    # length sort dropped the same 4 longest examples in every epoch
    seqs = [[1] * (i + 1) for i in range(100)]
    b = BucketBatcher(seqs, batch_size=32, drop_last=True, seed=0)
    seen = set()
    for epoch in range(50):
        idx = b.batch_indices(epoch)
        assert [len(i) for i in idx] == [32, 32, 32]
        seen.update(np.concatenate(idx).tolist())
    assert seen == set(range(100))
    # shuffle=False: the last n % batch_size examples of the input are the ones dropped
    b = BucketBatcher(seqs[::-1], batch_size=32, drop_last=True, shuffle=False)
    assert sorted(np.concatenate(b.batch_indices(0)).tolist()) == list(range(96))
