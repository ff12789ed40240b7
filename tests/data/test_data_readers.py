"""Tests for tinytt.data.readers (synthetic files only)."""

import gzip
import io
import os
import tarfile
import threading

import pytest

from tinytt.data import read_aclimdb, read_lm_tokens, read_tsv
from tinytt.data.readers import MAX_CLASSES


def _write(path, data: bytes, gz: bool):
    if gz:
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)
    return path


@pytest.mark.parametrize("gz", [False, True])
def test_read_tsv_plain_and_gzip(tmp_path, gz):
    data = "1\tgood movie\n0\tbad , très bad\n4\ttab\tinside text\n".encode()
    p = _write(tmp_path / ("x.tsv.gz" if gz else "x.tsv"), data, gz)
    texts, labels = read_tsv(p)
    assert labels == [1, 0, 4]
    assert texts == ["good movie", "bad , très bad", "tab\tinside text"]


def test_read_tsv_detects_gzip_by_magic_not_suffix(tmp_path):
    p = _write(tmp_path / "looks_plain.tsv", b"1\ta\n", gz=True)
    assert read_tsv(p) == (["a"], [1])
    q = _write(tmp_path / "looks_gz.tsv.gz", b"0\tb\n", gz=False)
    assert read_tsv(str(q)) == (["b"], [0])


def test_read_tsv_line_endings_and_trailing_blank_lines(tmp_path):
    p = _write(tmp_path / "x.tsv", b"1\ta\r\n0\tb\n\n\n", gz=False)
    assert read_tsv(p) == (["a", "b"], [1, 0])
    p = _write(tmp_path / "y.tsv", b"1\tno final newline", gz=False)
    assert read_tsv(p) == (["no final newline"], [1])
    p = _write(tmp_path / "empty.tsv", b"", gz=False)
    assert read_tsv(p) == ([], [])
    p = _write(tmp_path / "emptytext.tsv", b"1\t\n", gz=False)
    assert read_tsv(p) == ([""], [1])


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("bad_line, match", [
    (b"no tab here", "no tab"),
    (b"pos\ttext", "label must be an integer"),
    (b"1.5\ttext", "label must be an integer"),
    (b"\ttext", "label must be an integer"),
    (b"1\tbad \xff\xfe utf8", "invalid UTF-8"),
    (b"", "blank line"),
])
def test_read_tsv_malformed_line_names_file_and_line(tmp_path, gz, bad_line, match):
    data = b"0\tfine\n1\talso fine\n" + bad_line + b"\n1\tafter\n"
    p = _write(tmp_path / ("bad.tsv.gz" if gz else "bad.tsv"), data, gz)
    with pytest.raises(ValueError, match=match) as info:
        read_tsv(p)
    assert str(p) in str(info.value)
    assert "line 3" in str(info.value)


def test_read_tsv_corrupt_gzip_and_missing_file(tmp_path):
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb") as f:
        f.write(b"1\tx\n" * 1000)
    p = tmp_path / "trunc.tsv.gz"
    p.write_bytes(buf.getvalue()[:-20])
    with pytest.raises(ValueError, match="trunc.tsv.gz"):
        read_tsv(p)
    with pytest.raises(FileNotFoundError):
        read_tsv(tmp_path / "missing.tsv")
    with pytest.raises(TypeError, match="path"):
        read_tsv(123)


@pytest.mark.parametrize("gz", [False, True])
def test_read_lm_tokens(tmp_path, gz):
    p = _write(tmp_path / ("ptb.txt.gz" if gz else "ptb.txt"),
               b" the cat <unk> sat \n a N b \n \n", gz)
    assert read_lm_tokens(p) == ["the", "cat", "<unk>", "sat", "<eos>", "a", "N", "b", "<eos>", "<eos>"]
    assert read_lm_tokens(p, eos=None) == ["the", "cat", "<unk>", "sat", "a", "N", "b"]
    bad = _write(tmp_path / "bad.txt", b"ok\n\xc3(\n", False)
    with pytest.raises(ValueError, match="line 2"):
        read_lm_tokens(bad)


# ------------------------------------------------------------------ aclImdb
_REVIEWS = {
    "train/pos/10_9.txt": "Great!<br /><br />Loved it.",
    "train/pos/2_8.txt": "Good\tfilm\nreally",
    "train/neg/1_1.txt": "Awful\u0085 film.",
    "train/neg/0_3.txt": "Bad.",
    "train/unsup/0_0.txt": "unlabelled, ignored",
    "test/pos/0_10.txt": "Wonderful",
    "test/neg/5_2.txt": "Terrible",
}
_TRAIN = (["Bad.", "Awful  film.", "Good film really", "Great!<br /><br />Loved it."], [0, 0, 1, 1])
_TEST = (["Terrible", "Wonderful"], [0, 1])


def _make_acl_dir(root):
    for rel, text in _REVIEWS.items():
        f = root / "aclImdb" / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text, encoding="utf-8")
    (root / "aclImdb" / "README").write_text("readme")
    return root / "aclImdb"


def _make_acl_tar(path, reviews=_REVIEWS, mode="w:gz"):
    with tarfile.open(path, mode) as tar:
        for rel, text in reviews.items():
            data = text.encode("utf-8")
            info = tarfile.TarInfo("aclImdb/" + rel)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_read_aclimdb_directory(tmp_path):
    acl = _make_acl_dir(tmp_path)
    for p in (acl, tmp_path, str(acl)):
        out = read_aclimdb(p)
        assert out["train"] == _TRAIN
        assert out["test"] == _TEST
    assert set(read_aclimdb(acl, splits=("test",))) == {"test"}


@pytest.mark.parametrize("mode", ["w:gz", "w"])
def test_read_aclimdb_tarball_in_place(tmp_path, mode):
    tar = _make_acl_tar(tmp_path / ("aclImdb_v1.tar.gz" if mode == "w:gz" else "aclImdb_v1.tar"), mode=mode)
    out = read_aclimdb(tar)
    assert out == {"train": _TRAIN, "test": _TEST}
    assert [p.name for p in tmp_path.iterdir()] == [tar.name]  # nothing extracted


def test_read_aclimdb_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_aclimdb(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="missing directory"):
        read_aclimdb(tmp_path / "empty")
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"this is not a tarball")
    with pytest.raises(ValueError, match="junk.tar.gz"):
        read_aclimdb(junk)
    only_train = _make_acl_tar(tmp_path / "train_only.tar.gz",
                               {k: v for k, v in _REVIEWS.items() if k.startswith("train")})
    with pytest.raises(ValueError, match="no test/pos or test/neg"):
        read_aclimdb(only_train)
    assert read_aclimdb(only_train, splits=("train",))["train"] == _TRAIN
    bad = _make_acl_tar(tmp_path / "bad.tar.gz", {"test/pos/0_9.txt": "x", "test/neg/0_1.txt": "y"})
    with pytest.raises(ValueError, match="splits"):
        read_aclimdb(bad, splits=("valid",))


def test_read_aclimdb_bad_utf8_names_the_review(tmp_path):
    acl = _make_acl_dir(tmp_path)
    (acl / "test" / "neg" / "7_1.txt").write_bytes(b"caf\xe9")
    with pytest.raises(ValueError, match=r"7_1\.txt.*invalid UTF-8"):
        read_aclimdb(acl)


# ------------------------------------------------------------------ line ends, BOM, pipes, label range
@pytest.mark.parametrize("gz", [False, True])
def test_cr_only_and_mixed_line_ends_are_line_ends(tmp_path, gz):
    # old-Mac "\r" line ends merged the whole file into one example before
    p = _write(tmp_path / "cr.tsv", b"1\tgood movie\r0\tbad movie\r\n1\tgreat\n0\tdull\r", gz)
    assert read_tsv(p) == (["good movie", "bad movie", "great", "dull"], [1, 0, 1, 0])
    q = _write(tmp_path / "cr.txt", b"a b\rc\r\rd\r\n", gz)
    assert read_lm_tokens(q) == ["a", "b", "<eos>", "c", "<eos>", "<eos>", "d", "<eos>"]


def test_line_numbers_count_cr_line_ends(tmp_path):
    p = _write(tmp_path / "cr.tsv", b"1\ta\r0\tb\rx\tc\r", gz=False)
    with pytest.raises(ValueError, match="line 3: label must be an integer"):
        read_tsv(p)
    q = _write(tmp_path / "cr_utf8.tsv", b"1\ta\r0\tb \xff\r1\tc\r", gz=False)
    with pytest.raises(ValueError, match=r"line 2: invalid UTF-8 \(invalid start byte at byte 4\)"):
        read_tsv(q)


@pytest.mark.parametrize("gz", [False, True])
def test_leading_byte_order_mark_is_dropped(tmp_path, gz):
    # the TSV reader rejected line 1 ("label must be an integer, got '\ufeff1'") and the LM
    # reader kept the mark in the first token
    p = _write(tmp_path / "bom.tsv", "\ufeff1\tgood\n0\tbad \ufeff inside\n".encode(), gz)
    assert read_tsv(p) == (["good", "bad \ufeff inside"], [1, 0])   # only the leading one
    assert read_lm_tokens(p, eos=None) == ["1", "good", "0", "bad", "\ufeff", "inside"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo (POSIX)")
@pytest.mark.parametrize("gz", [False, True])
def test_reads_non_seekable_files(tmp_path, gz):
    # the gzip sniffing did raw.seek(0): a FIFO / pipe / /dev/stdin raised io.UnsupportedOperation
    data = b"1\tgood movie\n0\tbad movie\n"
    payload = gzip.compress(data) if gz else data
    for reader, want in ((read_tsv, (["good movie", "bad movie"], [1, 0])),
                         (read_lm_tokens, ["1", "good", "movie", "<eos>", "0", "bad", "movie", "<eos>"])):
        fifo = tmp_path / f"fifo_{reader.__name__}"
        os.mkfifo(fifo)
        writer = threading.Thread(target=fifo.write_bytes, args=(payload,), daemon=True)
        writer.start()
        try:
            assert reader(fifo) == want
        finally:
            writer.join(timeout=10)


def test_labels_are_bounded_by_max_classes(tmp_path):
    # 10**20 gave an OverflowError later and one stray 1000000 built a 1,000,001-class model
    assert MAX_CLASSES == 10_000
    ok = _write(tmp_path / "ok.tsv", f"0\ta\n{MAX_CLASSES - 1}\tb\n+1\tc\n".encode(), gz=False)
    assert read_tsv(ok)[1] == [0, MAX_CLASSES - 1, 1]
    for label in (str(MAX_CLASSES), "1000000", str(10 ** 20), "9" * 5000, "-1"):
        p = _write(tmp_path / "big.tsv", f"0\ta\n1\tb\n{label}\tc\n".encode(), gz=False)
        with pytest.raises(ValueError, match=r"line 3: label must be an integer in 0\.\.9999") as info:
            read_tsv(p)
        assert str(p) in str(info.value)
