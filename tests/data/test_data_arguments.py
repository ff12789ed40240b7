"""The data package's arguments are checked when a function is called, with a message naming
them: no silent truncation, no late failure inside a generator, no wrong result (a review of
tinytt.data against its docstrings found each of these)."""

import http.server
import threading

import numpy as np
import pytest

from tinytt.data import (BucketBatcher, ProgressBar, Vocab, bptt_batches, corpus_stats, fetch_url, iterate_batches,
                         load_dataset, pad_sequences, read_aclimdb, read_lm_tokens, sha256_file, split_indices,
                         tokenize)


def test_batching_arguments():
    with pytest.raises(ValueError, match="need at least"):
        bptt_batches([1, 2, 3], 2, 3)                       # at the call, not at the first next()
    for ids in ([1.9, 2.7, 3.5, 4.99], ["1", "2", "3", "4"], ["the", "cat", "sat", "on"]):
        with pytest.raises(TypeError, match="bptt_batches: ids"):
            bptt_batches(ids, 1, 2)
    for pad_id in ("x", 1.5, True, 2 ** 63):
        with pytest.raises(ValueError, match="pad_id"):
            pad_sequences([[1, 2]], pad_id=pad_id)
        with pytest.raises(ValueError, match="pad_id"):
            BucketBatcher([[1, 2]], pad_id=pad_id)
    # a negative pad id is fine (-100 pads targets for ignore_index=-100), so is a 0-d int array
    assert pad_sequences([[1, 2], [3]], pad_id=-100)[0].tolist() == [[1, 2], [3, -100]]
    assert pad_sequences([[1], []], pad_id=np.array(7))[0].tolist() == [[1], [7]]
    with pytest.raises(ValueError, match="beyond int64"):
        pad_sequences([np.array([2 ** 63], dtype=np.uint64)])
    with pytest.raises(TypeError, match=r"sequences\[1\]"):
        BucketBatcher([[1, 2], ["a", "b"]])                 # at construction, not mid-epoch
    batcher = BucketBatcher([[1], [2, 3], [4]], batch_size=2)
    for epoch in (1.7, "1", -1, None):
        with pytest.raises(ValueError, match="epoch"):
            batcher.batch_indices(epoch)
        with pytest.raises(ValueError, match="epoch"):
            iterate_batches([[1], [2]], epoch=epoch)
    for kw, name in (({"n": -3}, "n"), ({"n": 2.5}, "n"), ({"n": True}, "n"), ({"n": 10, "seed": -1}, "seed"),
                     ({"n": 10, "seed": None}, "seed"), ({"n": 10, "valid_fraction": "0.1"}, "valid_fraction")):
        with pytest.raises(ValueError, match=name):
            split_indices(**kw)


def test_tokenize_keeps_comparisons_and_removes_tags():
    assert tokenize("if x < b and y > c then") == ["if", "x", "<", "b", "and", "y", ">", "c", "then"]
    assert tokenize("i < i think so > you") == ["i", "<", "i", "think", "so", ">", "you"]
    assert tokenize("great<br />movie</b>, <I>really</i>") == ["great", "movie", ",", "really"]


def test_vocab_build_and_save(tmp_path):
    with pytest.raises(TypeError, match="tokens must be str"):
        Vocab.build([["a", 1]])
    for counts in ({"a": 2.0, "b": 2.9}, {"a": "7"}, {"a": -1}):
        with pytest.raises(ValueError, match="counts must be ints"):
            Vocab.build(counts)
    v = Vocab.build([["ok", "bad\ud800"]])
    with pytest.raises(UnicodeEncodeError):
        v.save(tmp_path / "v.json")
    assert list(tmp_path.iterdir()) == []                  # no temporary file left


def test_readers_loaders_and_helpers(tmp_path):
    (tmp_path / "sst2").mkdir()
    for split, rows in (("train", "0\tgood\n1\tbad\n"), ("dev", "1\tfine\n"), ("test", "0\tok\n7\tseven\n")):
        (tmp_path / "sst2" / f"{split}.tsv").write_text(rows)
    with pytest.raises(ValueError, match=r"label 7, but 'sst2' has classes 0..1"):
        load_dataset("sst2", data_dir=tmp_path)
    for splits in (("train", "train"), "train", ("train", "unsup")):
        with pytest.raises(ValueError, match="read_aclimdb: splits"):
            read_aclimdb(tmp_path, splits=splits)
    lm = tmp_path / "lm.txt"
    lm.write_text("a b\n")
    with pytest.raises(TypeError, match="eos"):
        read_lm_tokens(lm, eos=5)
    with pytest.raises(ValueError, match="chunk_size"):
        sha256_file(lm, chunk_size=0)
    for corpus in ({"train": "abc"}, [["a"]], {"other": ["a"]}):
        with pytest.raises(TypeError, match="corpus_stats"):
            corpus_stats(corpus)
    assert corpus_stats({"train": ["a", "b"]}) == {"train_tokens": 2, "valid_tokens": 0, "test_tokens": 0,
                                                   "tokens": 2, "types": 2}
    for kw, name in (({"total": "10"}, "total"), ({"total": -1}, "total"), ({"min_interval": -1}, "min_interval")):
        with pytest.raises(ValueError, match=name):
            ProgressBar(disable=True, **kw)


def test_a_truncated_download_is_not_kept(tmp_path):
    """The server promises 12,000 bytes and sends 100: no checksum is given, so only the
    length shows the file is incomplete."""
    class Short(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "12000")
            self.end_headers()
            self.wfile.write(b"x" * 100)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Short)
    thread = threading.Thread(target=server.handle_request, daemon=True)
    thread.start()
    try:
        with pytest.raises(OSError, match="ended after 100 of its 12000 bytes"):
            fetch_url(f"http://127.0.0.1:{server.server_port}/f.txt", tmp_path / "f.txt", disable_progress=True)
    finally:
        thread.join(5)
        server.server_close()
    assert list(tmp_path.iterdir()) == []
