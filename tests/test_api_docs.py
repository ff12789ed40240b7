"""Every public name has a docstring of its own and is listed in docs/api.md."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULES = ["tinytt", "tinytt.nn", "tinytt.optim", "tinytt.data", "tinytt.testing", "tinytt.models", "tinytt.train"]
# documented in their own sections of docs/api.md as well
EXTRA = ["tinytt.testing.strategies", "tinytt.testing.reference"]


def public_names(modname):
    mod = importlib.import_module(modname)
    return [(modname, name, getattr(mod, name)) for name in mod.__all__]


def all_public():
    out = []
    for modname in MODULES:
        out += public_names(modname)
    return out


def own_doc(obj):
    if inspect.isclass(obj):
        return obj.__dict__.get("__doc__")
    return getattr(obj, "__doc__", None)


def needs_docstring(obj):
    return inspect.ismodule(obj) or inspect.isclass(obj) or inspect.isfunction(obj) or inspect.isbuiltin(obj)


def test_every_public_name_has_a_docstring():
    missing = [f"{m}.{n}" for m, n, obj in all_public()
               if needs_docstring(obj) and not (own_doc(obj) or "").strip()]
    assert not missing, f"public names without a docstring of their own: {missing}"


def _listed(text, qualified):
    return re.search(re.escape(qualified) + r"(?![A-Za-z0-9_])", text) is not None


def test_every_public_name_is_in_api_md():
    text = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    missing = [f"{m}.{n}" for m, n, _ in all_public() if not _listed(text, f"{m}.{n}")]
    assert not missing, f"docs/api.md does not list: {missing}"


@pytest.mark.parametrize("modname", EXTRA)
def test_testing_submodules_in_api_md(modname):
    if modname.endswith("strategies"):
        pytest.importorskip("hypothesis")
    text = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    missing = [f"{m}.{n}" for m, n, _ in public_names(modname) if not _listed(text, f"{m}.{n}")]
    assert not missing, f"docs/api.md does not list: {missing}"
    undocumented = [f"{m}.{n}" for m, n, obj in public_names(modname)
                    if needs_docstring(obj) and not (own_doc(obj) or "").strip()]
    assert not undocumented, undocumented
