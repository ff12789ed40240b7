"""The documentation runs as shown.

- Every ```python block of README.md and docs/*.md is executed; the blocks of one file run
  in order in one namespace, in a temporary working directory, on the NumPy backend
  whatever ``TINYTT_BACKEND`` says: the docs are written for the default backend and pass
  NumPy arrays to tinytt (under ``TINYTT_BACKEND=cupy`` the backend is switched to NumPy
  for the file and restored after it).
- A block preceded by ``<!-- no-test -->`` is not run (shell-like or GPU-only snippets).
- A block that needs the datasets (preceded by ``<!-- needs-data -->``, or calling
  ``load_dataset``/``load_ptb``) runs only when ``TINYTT_DATA`` points at a folder; otherwise
  the file's blocks before it run and the rest of the file is skipped with the reason.
- Relative links in the docs point at files that exist, and every ``tinytt.x.y`` name written
  in backticks can be imported.
- ``examples/check_torch_layer.py`` runs and passes (skipped without torch).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted([ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md")))
FENCE = re.compile(r"^(?P<indent>[ ]{0,3})(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`\s]*)[^\n]*$")
NEEDS_DATA = re.compile(r"\b(load_dataset|load_ptb)\(|TINYTT_DATA")
# written by other issues; may not exist yet in a checkout
OPTIONAL_TARGETS = {"docs/benchmarks.md", "docs/reproduction.md"}


def code_blocks(path: Path) -> list:
    """[(first line number, language, code, marker)] of the fenced blocks in ``path``."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, lang = m.group("fence"), m.group("info").lower()
        prev = next((lines[j].strip() for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        marker = prev if prev.startswith("<!--") else ""
        body, j = [], i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            body.append(lines[j][len(m.group("indent")):] if lines[j].startswith(m.group("indent")) else lines[j])
            j += 1
        blocks.append((i + 1, lang, "\n".join(body) + "\n", marker))
        i = j + 1
    return blocks


def python_blocks(path: Path) -> list:
    return [b for b in code_blocks(path) if b[1] in ("python", "py", "python3")]


def _data_available() -> bool:
    path = os.environ.get("TINYTT_DATA")
    return bool(path) and os.path.isdir(path)


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_python_blocks_run(path, tmp_path, monkeypatch):
    import tinytt

    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": f"doc_{path.stem}"}
    backend = tinytt.get_backend()
    tinytt.set_backend("numpy")   # the docs' code is written for the default (NumPy) backend
    try:
        for line, _, code, marker in python_blocks(path):
            if "no-test" in marker:
                continue
            if ("needs-data" in marker or NEEDS_DATA.search(code)) and not _data_available():
                pytest.skip(f"{path.name}:{line} and later blocks need the datasets; set TINYTT_DATA")
            try:
                exec(compile(code, f"{path.relative_to(ROOT)}:{line}", "exec"), namespace)
            except Exception as exc:
                raise AssertionError(
                    f"the python block at {path.relative_to(ROOT)} line {line} failed: "
                    f"{type(exc).__name__}: {exc}") from exc
    finally:
        tinytt.set_backend(backend)


def test_block_parser():
    text = ("intro\n<!-- no-test -->\n```python\nx = 1\n```\n\n```bash\nls\n```\n"
            "```python\ny = 2\n```\n")
    f = Path(__file__).parent / "_doc_parser_probe.md"
    try:
        f.write_text(text)
        blocks = code_blocks(f)
    finally:
        f.unlink()
    assert [(b[1], b[2], "no-test" in b[3]) for b in blocks] == [
        ("python", "x = 1\n", True), ("bash", "ls\n", False), ("python", "y = 2\n", False)]


def test_no_test_markers_are_rare():
    """Opting out is for shell-like or GPU-only snippets only: keep it rare."""
    skipped = [(p.name, b[0]) for p in DOCS for b in python_blocks(p) if "no-test" in b[3]]
    total = sum(len(python_blocks(p)) for p in DOCS)
    assert len(skipped) <= max(3, total // 5), f"too many <!-- no-test --> python blocks: {skipped}"


LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path):
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    missing = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue
        rel = target.split("#")[0]
        full = (path.parent / rel).resolve()
        if full.exists():
            continue
        if full.is_relative_to(ROOT) and full.relative_to(ROOT).as_posix() in OPTIONAL_TARGETS:
            continue
        missing.append(target)
    assert not missing, f"{path.relative_to(ROOT)} links to missing files: {missing}"


NAME = re.compile(r"`(tinytt(?:\.[A-Za-z_][A-Za-z0-9_]*)+)")


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_dotted_names_exist(path):
    """``tinytt.a.b`` written in backticks names something importable (the docs stay honest)."""
    bad = []
    for name in sorted(set(NAME.findall(path.read_text(encoding="utf-8")))):
        parts = name.split(".")
        obj, ok = None, False
        for cut in range(len(parts), 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:cut]))
            except ImportError:
                continue
            ok = True
            for attr in parts[cut:]:
                if not hasattr(obj, attr):
                    ok = False
                    break
                obj = getattr(obj, attr)
            break
        if not ok:
            bad.append(name)
    assert not bad, f"{path.relative_to(ROOT)} names things that do not exist: {bad}"


def test_torch_example():
    if importlib.util.find_spec("torch") is None:
        pytest.skip("torch is not installed")
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    res = subprocess.run([sys.executable, str(ROOT / "examples" / "check_torch_layer.py")],
                         capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.count("PASS") >= 2 or "SKIP" in res.stdout, res.stdout
