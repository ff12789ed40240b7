"""Tests for tinytt.data.downloads against a local HTTP server on 127.0.0.1 (never the internet)."""

import functools
import hashlib
import http.server
import io
import tarfile
import threading

import pytest

from tinytt.data import SOURCES, download, fetch_url, load_dataset, load_ptb, sha256_file


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    """Make sure an http_proxy in the environment is never used for the local server."""
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
def server(tmp_path):
    """Serve ``tmp_path / "www"`` on 127.0.0.1 (random port); yields (base_url, www_dir)."""
    www = tmp_path / "www"
    www.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(www))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", www
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_fetch_url_writes_atomically_and_verifies(server, tmp_path):
    base, www = server
    data = b"hello world\n" * 10000
    (www / "f.bin").write_bytes(data)
    dest = tmp_path / "out" / "sub" / "f.bin"
    assert fetch_url(f"{base}/f.bin", dest, _sha(data), disable_progress=True) == dest
    assert dest.read_bytes() == data
    assert sha256_file(dest) == _sha(data)
    # no checksum -> accepted as is
    fetch_url(f"{base}/f.bin", tmp_path / "g.bin", disable_progress=True)
    assert (tmp_path / "g.bin").read_bytes() == data


def test_fetch_url_checksum_mismatch_leaves_nothing(server, tmp_path):
    base, www = server
    (www / "f.bin").write_bytes(b"tampered")
    dest = tmp_path / "out" / "f.bin"
    with pytest.raises(ValueError, match="checksum mismatch"):
        fetch_url(f"{base}/f.bin", dest, "0" * 64, disable_progress=True)
    assert list((tmp_path / "out").iterdir()) == []


def test_fetch_url_http_error_and_bad_scheme(server, tmp_path):
    base, _ = server
    with pytest.raises(OSError, match="could not download"):
        fetch_url(f"{base}/missing.bin", tmp_path / "m.bin", disable_progress=True)
    assert not list(tmp_path.glob("m.bin*"))
    with pytest.raises(ValueError, match="http"):
        fetch_url("ftp://example.invalid/x", tmp_path / "x")


def test_fetch_url_progress_lines(server, tmp_path, capsys):
    base, www = server
    (www / "f.bin").write_bytes(b"x" * 5000)
    fetch_url(f"{base}/f.bin", tmp_path / "f.bin")  # stderr is captured, so not a TTY: plain lines
    err = capsys.readouterr().err
    assert "f.bin" in err and "100%" in err and "done" in err


def test_download_ptb_then_load(server, tmp_path):
    base, www = server
    files = {"ptb.train.txt": b" a b \n c \n", "ptb.valid.txt": b" a \n", "ptb.test.txt": b" b <unk> \n"}
    for name, data in files.items():
        (www / name).write_bytes(data)
    root = tmp_path / "root"
    sums = {name: _sha(data) for name, data in files.items()}
    target = download("ptb", root, base_url=base + "/", checksums=sums, disable_progress=True)
    assert target == root / "ptb"
    assert sorted(p.name for p in target.iterdir()) == sorted(files)
    assert load_ptb(root)["test"] == ["b", "<unk>", "<eos>"]
    # existing files are kept; a bad existing file is reported
    (target / "ptb.valid.txt").write_bytes(b"corrupted")
    with pytest.raises(ValueError, match="force=True"):
        download("ptb", root, base_url=base, checksums=sums, disable_progress=True)
    download("ptb", root, base_url=base, checksums=sums, force=True, disable_progress=True)
    assert (target / "ptb.valid.txt").read_bytes() == files["ptb.valid.txt"]


def test_download_ptb_canonical_checksums_reject_fake_content(server, tmp_path):
    base, www = server
    for name in ("ptb.train.txt", "ptb.valid.txt", "ptb.test.txt"):
        (www / name).write_bytes(b" fake \n")
    with pytest.raises(ValueError, match="checksum mismatch"):
        download("ptb", tmp_path, base_url=base, disable_progress=True)
    assert not list((tmp_path / "ptb").iterdir())


def test_load_via_download_flag(server, tmp_path, monkeypatch):
    base, www = server
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, text in {"train/pos/0_9.txt": "yes", "train/neg/0_1.txt": "no",
                           "test/pos/0_8.txt": "fine", "test/neg/0_2.txt": "poor"}.items():
            info = tarfile.TarInfo("aclImdb/" + name)
            info.size = len(text)
            tar.addfile(info, io.BytesIO(text.encode()))
    (www / "aclImdb_v1.tar.gz").write_bytes(buf.getvalue())
    # load_dataset(download=True) uses the canonical URL; point it at the local server instead
    import tinytt.data.datasets as ds
    fake = {"aclImdb_v1.tar.gz": hashlib.sha256(buf.getvalue()).hexdigest()}
    monkeypatch.setattr(ds, "_download", functools.partial(ds._download, base_url=base, disable_progress=True,
                                                           checksums=fake))
    d = load_dataset("imdb", data_dir=tmp_path, download=True)
    assert d["train"] == (["no", "yes"], [0, 1]) and d["test"] == (["poor", "fine"], [0, 1])
    assert (tmp_path / "imdb" / "aclImdb_v1.tar.gz").is_file()


def test_download_rejects_unknown_dataset(tmp_path):
    with pytest.raises(ValueError, match="imdb"):
        download("sst2", tmp_path)
    assert SOURCES["imdb"][0].url.startswith("https://ai.stanford.edu/")
    assert all(item.sha256 for item in SOURCES["ptb"])
    assert SOURCES["imdb"][0].sha256 == "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe"


def test_imdb_download_is_checked(server, tmp_path):
    """The archive's published digest is checked: a different file is refused, nothing kept."""
    base, www = server
    (www / "aclImdb_v1.tar.gz").write_bytes(b"not the archive")
    with pytest.raises(ValueError, match="checksum mismatch"):
        download("imdb", tmp_path, base_url=base, disable_progress=True)
    assert not list((tmp_path / "imdb").iterdir())
