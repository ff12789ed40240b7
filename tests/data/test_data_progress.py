"""Tests for tinytt.data.progress (no TTY needed: fake streams)."""

import importlib
import io

import pytest

from tinytt.data import ProgressBar, progress

progress_mod = importlib.import_module("tinytt.data.progress")


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


def test_plain_lines_when_not_a_tty():
    f = io.StringIO()
    out = list(progress(range(4), desc="work", file=f, min_interval=0))
    assert out == [0, 1, 2, 3]
    lines = f.getvalue().splitlines()
    assert lines[0] == lines[0].strip() and "\r" not in f.getvalue()
    assert lines[-1].startswith("work: 100% (4/4)") and lines[-1].endswith("done")


def test_plain_lines_are_rate_limited():
    f = io.StringIO()
    list(progress(range(1000), desc="x", file=f, min_interval=3600))
    assert len(f.getvalue().splitlines()) == 1  # only the final line


def test_builtin_bar_on_tty_without_tqdm(monkeypatch):
    monkeypatch.setattr(progress_mod, "_tqdm", None)
    f = FakeTTY()
    list(progress(iter(range(3)), total=3, desc="bar", file=f))
    text = f.getvalue()
    assert text.startswith("\r") and text.endswith("\n")
    assert "100%" in text and "#" in text and "3/3" in text


def test_uses_tqdm_on_tty_when_available(monkeypatch):
    calls = []

    class FakeTqdm:
        def __init__(self, **kw):
            calls.append(("init", kw))

        def update(self, n):
            calls.append(("update", n))

        def close(self):
            calls.append(("close",))

    monkeypatch.setattr(progress_mod, "_tqdm", FakeTqdm)
    list(progress([1, 2], desc="t", file=FakeTTY()))
    assert calls[0][0] == "init" and calls[0][1]["total"] == 2
    assert calls[1:] == [("update", 1), ("update", 1), ("close",)]
    calls.clear()
    list(progress([1, 2], file=io.StringIO(), min_interval=3600))  # not a TTY: no tqdm
    assert calls == []


def test_disable_and_unknown_total_and_bytes():
    f = io.StringIO()
    assert list(progress((i for i in range(3)), file=f, disable=True)) == [0, 1, 2]
    assert f.getvalue() == ""
    f = io.StringIO()
    with ProgressBar(desc="dl", unit="B", file=f, min_interval=3600) as bar:
        bar.update(3 * 1024 * 1024)
    assert f.getvalue().strip().startswith("dl: 3.0 MiB") and "done" in f.getvalue()
    bar.close()  # idempotent
    assert f.getvalue().count("\n") == 1


def test_bar_closed_on_break_and_error():
    f = io.StringIO()
    for i in progress(range(10), desc="b", file=f, min_interval=3600):
        if i == 2:
            break
    import gc
    gc.collect()
    assert "done" in f.getvalue()
    f = io.StringIO()
    with pytest.raises(RuntimeError):
        for _ in progress(range(10), desc="e", file=f, min_interval=3600):
            raise RuntimeError("boom")
    assert "e: 0%" in f.getvalue()
