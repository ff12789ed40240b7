"""Tests for tinytt.data.corpus (the embedded standard-library corpus)."""

import hashlib
import subprocess
import sys
from pathlib import Path

from tinytt.data import corpus_stats, embedded_documents, load_embedded_corpus
from tinytt.data import corpus as corpus_mod

_DIGEST_SCRIPT = (
    "import hashlib; from tinytt.data import load_embedded_corpus as f; c = f(); "
    "print(hashlib.sha256('\\x00'.join(c['train'] + ['|'] + c['valid'] + ['|'] + c['test']).encode()).hexdigest())"
)


def _digest(c):
    return hashlib.sha256("\x00".join(c["train"] + ["|"] + c["valid"] + ["|"] + c["test"]).encode()).hexdigest()


def test_corpus_shape_and_size():
    c = load_embedded_corpus()
    assert set(c) == {"train", "valid", "test"}
    stats = corpus_stats(c)
    assert 250_000 <= stats["tokens"] <= 1_500_000
    assert 5_000 <= stats["types"] <= 40_000
    # ~90/5/5 split
    assert 0.8 <= stats["train_tokens"] / stats["tokens"] <= 0.95
    for split in ("valid", "test"):
        assert 0.02 <= stats[f"{split}_tokens"] / stats["tokens"] <= 0.1
        assert c[split][-1] == "<eos>"
    assert all(isinstance(t, str) and t and t == t.lower() for t in c["train"][:5000])
    assert {"the", "return", "(", "<eos>"} <= set(c["train"])


def test_corpus_cached_copies():
    a = load_embedded_corpus()
    a["train"].clear()
    b = load_embedded_corpus()
    assert b["train"] and b == load_embedded_corpus()


def test_documents_unique_and_keys_sorted_within_topics():
    docs = embedded_documents()
    texts = [t for _, t in docs]
    assert len(set(texts)) == len(texts)
    topics = [k for k, _ in docs if k.startswith("topic:")]
    assert topics and topics == sorted(topics)


def test_module_list_avoids_side_effect_and_gui_modules():
    banned = {"antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "test", "webbrowser"}
    tops = {m.split(".")[0] for m in corpus_mod.STDLIB_MODULES}
    assert not tops & banned
    assert len(set(corpus_mod.STDLIB_MODULES)) == len(corpus_mod.STDLIB_MODULES)


def test_corpus_deterministic_across_processes():
    here = _digest(load_embedded_corpus())
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", _DIGEST_SCRIPT], cwd=root, capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout.strip() == here


def test_falls_back_to_in_process_collection(monkeypatch):
    monkeypatch.setattr(corpus_mod.sys, "executable", "/nonexistent/python")
    monkeypatch.setattr(corpus_mod, "collect_documents", lambda: [("k", "doc")])
    assert corpus_mod._collect_isolated() == [("k", "doc")]


def test_chunks_split_long_documents_at_paragraphs():
    para = " ".join(["word"] * 600)
    parts = corpus_mod._chunks(f"{para}\n\n{para}\n   \n{para}")
    assert [len(p) for p in parts] == [1200, 600]
    assert corpus_mod._chunks("") == [[]]
