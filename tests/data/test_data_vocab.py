"""Tests for tinytt.data.vocab."""

import json
from collections import Counter

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinytt.data import PAD, PAD_ID, UNK, UNK_ID, Vocab


def test_build_order_frequency_then_token():
    v = Vocab.build([["b", "a", "c", "b"], ["a", "d", "b"]])
    # b:3, a:2, then ties c:1, d:1 in ascending order
    assert v.tokens == [PAD, UNK, "b", "a", "c", "d"]
    assert len(v) == 6
    assert (v.pad_id, v.unk_id) == (PAD_ID, UNK_ID) == (0, 1)


def test_build_ties_sorted_ascending_regardless_of_input_order():
    v1 = Vocab.build(Counter({"zeta": 2, "alpha": 2, "mid": 2, "x": 5}))
    v2 = Vocab.build(Counter({"mid": 2, "x": 5, "zeta": 2, "alpha": 2}))
    assert v1 == v2
    assert v1.tokens == [PAD, UNK, "x", "alpha", "mid", "zeta"]


def test_build_from_counter_equals_build_from_lists():
    lists = [["a", "b"], ["b", "c", "c", "c"]]
    assert Vocab.build(lists) == Vocab.build(Counter(t for l in lists for t in l))


def test_build_min_freq_and_max_size():
    counts = Counter({"a": 5, "b": 4, "c": 4, "d": 1})
    assert Vocab.build(counts, min_freq=2).tokens == [PAD, UNK, "a", "b", "c"]
    v = Vocab.build(counts, max_size=4)  # specials included in max_size
    assert v.tokens == [PAD, UNK, "a", "b"]
    assert Vocab.build(counts, max_size=2).tokens == [PAD, UNK]


def test_build_ignores_special_tokens_in_data():
    v = Vocab.build([[UNK, UNK, "a", PAD]])
    assert v.tokens == [PAD, UNK, "a"]
    assert v.encode([UNK, "a"]) == [1, 2]


@pytest.mark.parametrize("kwargs, match", [
    ({"max_size": 1}, "max_size"),
    ({"max_size": 2.5}, "max_size"),
    ({"min_freq": 0}, "min_freq"),
])
def test_build_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Vocab.build([["a"]], **kwargs)


def test_build_rejects_list_of_strings():
    with pytest.raises(TypeError, match="list of token lists"):
        Vocab.build(["a sentence", "another"])
    with pytest.raises(TypeError):
        Vocab.build("abc")


def test_encode_decode_and_lookups():
    v = Vocab.build([["the", "cat", "the"]])
    assert v.encode(["the", "dog", "cat"]) == [2, UNK_ID, 3]
    assert v.decode([2, 1, 3, 0]) == ["the", UNK, "cat", PAD]
    assert v.decode(np.array([2, 0, 0]), skip_pad=True) == ["the"]
    assert v.token_to_id("cat") == 3 and v.token_to_id("nope") == UNK_ID
    assert v.id_to_token(np.int64(2)) == "the"
    assert "cat" in v and "dog" not in v
    assert list(v) == v.tokens
    assert v.encode_batch([["cat"], [], ["the", "x"]]) == [[3], [], [2, 1]]
    with pytest.raises(IndexError):
        v.id_to_token(4)
    with pytest.raises(IndexError):
        v.decode([0, -1])
    with pytest.raises(TypeError, match="tokenize it first"):
        v.encode("the cat")
    # ids (or any non-str) are not tokens: they were silently mapped to <unk>
    for bad in ([2, 3], ["the", 3.0], iter(["the", None])):
        with pytest.raises(TypeError, match="tokens must be str"):
            v.encode(bad)
    assert v.encode(iter(["the", "cat"])) == [2, 3]
    assert "size=4" in repr(v)


def test_constructor_validation():
    with pytest.raises(ValueError, match="must start with"):
        Vocab(["a", "b"])
    with pytest.raises(ValueError, match="unique"):
        Vocab([PAD, UNK, "a", "a"])
    with pytest.raises(TypeError):
        Vocab([PAD, UNK, 3])


def test_save_load_roundtrip(tmp_path):
    v = Vocab.build([["ünïcode", "tab\there", "a", "a", '"q"']])
    p = tmp_path / "vocab.json"
    v.save(p)
    payload = json.loads(p.read_text(encoding="utf-8"))
    assert payload["format"] == "tinytt.vocab" and payload["version"] == 1
    w = Vocab.load(str(p))
    assert w == v and w.tokens == v.tokens
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("content, match", [
    ("not json at all", "not a tinytt vocabulary JSON"),
    ('["<pad>", "<unk>"]', "format"),
    ('{"tokens": ["<pad>", "<unk>"]}', "format"),
    ('{"format": "other.vocab", "version": 1, "tokens": []}', "format"),
    ('{"format": "tinytt.vocab", "version": 99, "tokens": ["<pad>", "<unk>"]}', "version"),
    ('{"format": "tinytt.vocab", "version": 1, "tokens": "abc"}', "tokens"),
    ('{"format": "tinytt.vocab", "version": 1, "tokens": ["<pad>", "<unk>", 5]}', "tokens"),
    ('{"format": "tinytt.vocab", "version": 1, "tokens": ["a", "<unk>"]}', "must start with"),
    ('{"format": "tinytt.vocab", "version": 1, "tokens": ["<pad>", "<unk>", "x", "x"]}', "unique"),
])
def test_load_rejects_foreign_or_corrupt_files(tmp_path, content, match):
    p = tmp_path / "bad.json"
    p.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=match) as info:
        Vocab.load(p)
    assert "bad.json" in str(info.value)


def test_load_binary_garbage_and_missing(tmp_path):
    p = tmp_path / "garbage.bin"
    p.write_bytes(b"\xff\xfe\x00\x81garbage")
    with pytest.raises(ValueError, match="garbage.bin"):
        Vocab.load(p)
    with pytest.raises(FileNotFoundError):
        Vocab.load(tmp_path / "missing.json")


_tokens = st.lists(st.lists(st.text(min_size=1, max_size=4), max_size=12), max_size=12)


@given(_tokens)
def test_build_ordering_property(token_lists):
    counts = Counter(t for l in token_lists for t in l if t not in (PAD, UNK))
    v = Vocab.build(token_lists)
    assert len(v) == len(counts) + 2
    keys = [(-counts[t], t) for t in v.tokens[2:]]
    assert keys == sorted(keys)
    for toks in token_lists:
        assert v.decode(v.encode(toks)) == toks


@given(_tokens)
def test_save_load_property(tmp_path_factory, token_lists):
    p = tmp_path_factory.mktemp("v") / "v.json"
    v = Vocab.build(token_lists)
    v.save(p)
    assert Vocab.load(p) == v


def test_build_takes_numpy_integer_sizes():
    """max_size / min_freq as NumPy integers were refused (pad_sequences and the batchers take them)."""
    v = Vocab.build([["a", "b", "b", "c", "c", "c"]], max_size=np.int64(3), min_freq=np.int32(1))
    assert v.tokens == [PAD, UNK, "c"]
    for bad in (dict(max_size=1), dict(min_freq=0), dict(max_size=2.0), dict(min_freq=True)):
        with pytest.raises(ValueError, match="Vocab.build"):
            Vocab.build([["a"]], **bad)
