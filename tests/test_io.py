"""Tests for tinytt.io: round-trips, atomic writes, rejection of foreign/corrupt/pickled files."""

import json
import math
import os
import pathlib
import pickle
import stat
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tinytt import backend, io


# ----------------------------------------------------------------------------- helpers
def assert_same(a, b, where="obj"):
    """Exact structural equality: same container types, bit-identical arrays and floats."""
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray), where
        assert type(b) is np.ndarray, where
        assert a.dtype == b.dtype, (where, a.dtype, b.dtype)
        assert a.shape == b.shape, (where, a.shape, b.shape)
        assert np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes(), where
    elif isinstance(a, np.generic):
        assert type(a) is type(b), (where, type(a), type(b))
        assert a.tobytes() == b.tobytes(), where
    elif isinstance(a, float):
        assert type(b) is float, where
        assert (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b)), where
    elif isinstance(a, dict):
        assert type(b) is dict, where
        assert list(a) == list(b), where
        for k in a:
            assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b), (where, type(a), type(b))
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert type(a) is type(b), (where, type(a), type(b))
        assert a == b, where


DTYPES = [
    np.float32, np.float64, np.int64, np.bool_, np.int8, np.uint16, np.float16, np.complex128,
    np.dtype(">f8"), np.dtype("<U3"), np.dtype("S2"),
]

arrays_st = st.sampled_from(DTYPES).flatmap(
    lambda dt: hnp.arrays(
        dt,
        hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4),
        # raw bit patterns for numbers (NaN payloads, -0.0, subnormals...)
        elements=None,
    )
)
scalars_st = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
)
keys_st = st.text(max_size=6).filter(lambda k: "/" not in k and "\x00" not in k)
tree_st = st.recursive(
    arrays_st | scalars_st,
    lambda children: st.lists(children, max_size=3)
    | st.lists(children, max_size=3).map(tuple)
    | st.dictionaries(keys_st, children, max_size=3),
    max_leaves=8,
)


# ----------------------------------------------------------------------------- round-trips
@settings(deadline=None)
@given(tree=tree_st)
def test_roundtrip_nested_structures(tmp_path_factory, tree):
    path = tmp_path_factory.mktemp("rt") / "ckpt"
    io.save(tree, path)
    assert_same(tree, io.load(path))
    assert os.listdir(path.parent) == ["ckpt"]


@settings(deadline=None)
@given(a=arrays_st)
def test_array_roundtrip_bit_exact(tmp_path_factory, a):
    path = tmp_path_factory.mktemp("arr") / "a.npz"
    io.save({"a": a, "nested": {"list": [a, (a,)]}}, path)
    out = io.load(path)
    assert_same(a, out["a"])
    assert_same(a, out["nested"]["list"][1][0])


def test_special_arrays_and_scalars(tmp_path):
    base = np.arange(24, dtype=np.float64).reshape(2, 3, 4)
    obj = {
        "zero_d_f32": np.array(1.5, dtype=np.float32),
        "zero_d_bool": np.array(True),
        "empty": np.zeros((0, 3), dtype=np.int64),
        "empty_bool": np.zeros((2, 0, 1), dtype=bool),
        "fortran": np.asfortranarray(base),
        "strided": base[:, ::2, 1::3],
        "big_endian": np.arange(5, dtype=">i4"),
        "nan_payload": np.array([np.nan, -0.0, np.inf, 5e-324]).view(np.uint64) ^ np.uint64(1),
        "np_scalars": [np.float32(2.5), np.int64(-3), np.bool_(True), np.float64(0.1)],
        "py": [0, -1, 2**80, 0.1, -0.0, float("inf"), float("nan"), True, False, None, "é\u2603\ud800"],
        "tuple": (1, (2, [3])),
        "empty_containers": [{}, [], ()],
        "": {"weird key !@#$%^&*() ..": 1},
    }
    path = tmp_path / "special"
    io.save(obj, path)
    out = io.load(path)
    assert_same(obj, out)
    assert out["fortran"].shape == (2, 3, 4)


def test_path_written_exactly_as_given(tmp_path):
    p = tmp_path / "model.ckpt"
    io.save({"w": np.ones(3)}, str(p))
    assert sorted(os.listdir(tmp_path)) == ["model.ckpt"]
    io.save({"w": np.ones(3)}, pathlib.Path(tmp_path / "noext"))
    assert sorted(os.listdir(tmp_path)) == ["model.ckpt", "noext"]


def test_readable_by_numpy_without_pickle(tmp_path):
    p = tmp_path / "x.npz"
    w = np.arange(6, dtype=np.float32).reshape(2, 3)
    io.save({"model": {"w": w}, "step": 3}, p)
    with np.load(p, allow_pickle=False) as z:
        assert "arrays/model/w" in z.files
        np.testing.assert_array_equal(z["arrays/model/w"], w)
        meta = json.loads(z["__tinytt__"].tobytes())
    assert meta["format"] == io.FORMAT_NAME and meta["version"] == io.FORMAT_VERSION


def test_overwrite_replaces_file_and_keeps_umask_mode(tmp_path):
    p = tmp_path / "ckpt"
    io.save({"v": 1}, p)
    io.save({"v": 2}, p)
    assert io.load(p) == {"v": 2}
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o666 & ~umask


def test_load_to_device_numpy_backend(tmp_path):
    p = tmp_path / "ckpt"
    io.save({"w": np.ones((2, 2), np.float32)}, p)
    out = io.load(p, to_device=True)
    assert backend.get_xp(out["w"]) is backend.get_xp()
    assert out["w"].dtype == np.float32


@pytest.mark.cupy
def test_cupy_arrays_are_saved_via_host(tmp_path):
    if not backend.cupy_available():
        pytest.skip("CuPy with a GPU is not available")
    import cupy

    a = cupy.arange(12, dtype=cupy.float32).reshape(3, 4)
    p = tmp_path / "gpu"
    io.save({"a": a, "s": cupy.float32(1)}, p)
    out = io.load(p)
    assert isinstance(out["a"], np.ndarray)
    np.testing.assert_array_equal(out["a"], a.get())
    previous = backend.get_backend()
    backend.set_backend("cupy")
    try:
        dev = io.load(p, to_device=True)
        assert isinstance(dev["a"], cupy.ndarray) and dev["a"].dtype == cupy.float32
    finally:
        backend.set_backend(previous)


# ----------------------------------------------------------------------------- invalid input
def _nested(depth: int):
    x = 1
    for _ in range(depth):
        x = [x]
    return x


@pytest.mark.parametrize(
    "obj, exc, words",
    [
        ({"a/b": 1}, ValueError, "'/'"),
        ({"ok": {"x\x00": 1}}, ValueError, "NUL"),
        ({1: 2}, TypeError, "keys must be str"),
        ({"a": {1, 2}}, TypeError, "obj['a']"),
        ({"a": [object()]}, TypeError, "obj['a'][0]"),
        ({"a": np.array([1, None], dtype=object)}, TypeError, "Python objects"),
        ({"a": b"bytes"}, TypeError, "unsupported type"),
        ({"run\udcff": 1}, ValueError, "not valid Unicode"),              # os.fsdecode of b"run\xff"
        ({"m": {"run\udcff": np.ones(2)}}, ValueError, "not valid Unicode"),
        ({"k" * 70000: np.ones(2)}, ValueError, "too long for a zip entry name"),
        (_nested(20000), ValueError, "nested too deeply"),   # far past any recursion limit
        ({"a": np.ma.masked_array([1.0, 2.0], mask=[0, 1])}, TypeError, "masked array"),
    ],
)
def test_save_rejects_unsupported(tmp_path, obj, exc, words):
    with pytest.raises(exc, match=None) as info:
        io.save(obj, tmp_path / "ckpt")
    assert words in str(info.value)
    assert os.listdir(tmp_path) == []


def test_save_rejects_cycles(tmp_path):
    d = {"a": []}
    d["a"].append(d)
    with pytest.raises(ValueError, match="contains itself"):
        io.save(d, tmp_path / "ckpt")
    shared = [1, 2]
    io.save({"x": shared, "y": shared}, tmp_path / "ok")  # a shared (acyclic) node is fine
    assert io.load(tmp_path / "ok") == {"x": [1, 2], "y": [1, 2]}


def test_save_into_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError):
        io.save({"a": 1}, tmp_path / "nope" / "ckpt")


def test_save_to_a_directory_writes_nothing(tmp_path):
    target = tmp_path / "models"
    target.mkdir()
    with pytest.raises(IsADirectoryError, match="is a directory"):
        io.save({"a": 1}, target)
    assert list(tmp_path.iterdir()) == [target] and list(target.iterdir()) == []


def test_save_to_the_longest_file_name(tmp_path):
    # the temporary file's name adds 18 bytes: it is cut, the target keeps its full name
    for name in ("c" * 251 + ".npz", "\u00e9" * 125 + ".npz"):     # 255 bytes of UTF-8 each
        io.save({"w": np.arange(3.0)}, tmp_path / name)
        assert np.array_equal(io.load(tmp_path / name)["w"], np.arange(3.0))
    assert sorted(os.listdir(tmp_path)) == sorted(["c" * 251 + ".npz", "\u00e9" * 125 + ".npz"])


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symbolic links here")
def test_save_through_a_symbolic_link_replaces_its_target(tmp_path):
    io.save({"a": 1}, tmp_path / "real.npz")
    (tmp_path / "link.npz").symlink_to("real.npz")
    io.save({"a": 2}, tmp_path / "link.npz")
    assert (tmp_path / "link.npz").is_symlink()
    assert io.load(tmp_path / "real.npz") == {"a": 2} == io.load(tmp_path / "link.npz")
    assert sorted(os.listdir(tmp_path)) == ["link.npz", "real.npz"]


def test_load_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        io.load(tmp_path / "missing.npz")


# ----------------------------------------------------------------------------- atomicity
OLD = {"w": np.arange(4.0), "epoch": 1}
NEW = {"w": np.arange(1000.0), "epoch": 2, "more": [np.ones(10)] * 3}


def _check_old_intact(tmp_path, path):
    assert_same(OLD, io.load(path))
    assert os.listdir(tmp_path) == [path.name], os.listdir(tmp_path)


@pytest.mark.parametrize("exc", [OSError("disk on fire"), KeyboardInterrupt()])
def test_crash_in_replace_keeps_old_file(tmp_path, monkeypatch, exc):
    path = tmp_path / "ckpt"
    io.save(OLD, path)

    def boom(src, dst):
        assert os.path.exists(src)  # the complete temp file sits next to the target
        raise exc

    monkeypatch.setattr(io.os, "replace", boom)
    with pytest.raises(type(exc)):
        io.save(NEW, path)
    monkeypatch.undo()
    _check_old_intact(tmp_path, path)


def test_crash_midway_through_writing_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "ckpt"
    io.save(OLD, path)
    real = np.lib.format.write_array
    calls = []

    def write_then_die(fp, array, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            fp.write(b"partial garbage")
            raise RuntimeError("simulated crash")
        return real(fp, array, *args, **kwargs)

    monkeypatch.setattr(np.lib.format, "write_array", write_then_die)
    with pytest.raises(RuntimeError, match="simulated crash"):
        io.save(NEW, path)
    monkeypatch.undo()
    _check_old_intact(tmp_path, path)


def test_crash_in_fsync_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "ckpt"
    io.save(OLD, path)

    def fail(fd):
        raise OSError("fsync failed")

    monkeypatch.setattr(io.os, "fsync", fail)
    with pytest.raises(OSError, match="fsync failed"):
        io.save(NEW, path)
    monkeypatch.undo()
    _check_old_intact(tmp_path, path)


# ----------------------------------------------------------------------------- rejected files
def test_truncated_file_raises_value_error(tmp_path):
    good = tmp_path / "good"
    io.save({"w": np.arange(300.0), "b": [np.ones(5, np.float32)], "k": "v"}, good)
    raw = good.read_bytes()
    bad = tmp_path / "bad"
    for n in sorted({0, 1, 10, 100, len(raw) // 3, len(raw) // 2, len(raw) - 22, len(raw) - 1}):
        bad.write_bytes(raw[:n])
        with pytest.raises(ValueError) as info:
            io.load(bad)
        assert str(bad) in str(info.value), n


def test_corrupted_member_raises_value_error(tmp_path):
    good = tmp_path / "good"
    io.save({"w": np.arange(300.0)}, good)
    raw = bytearray(good.read_bytes())
    i = raw.index(np.arange(300.0)[100:101].tobytes())
    raw[i] ^= 0xFF  # flip bits inside the array's data: the zip CRC check catches it
    bad = tmp_path / "bad"
    bad.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="bad"):
        io.load(bad)


def test_foreign_npz_raises_value_error(tmp_path):
    p = tmp_path / "foreign.npz"
    np.savez(p, a=np.arange(3))
    with pytest.raises(ValueError, match="not a tinytt checkpoint") as info:
        io.load(p)
    assert str(p) in str(info.value)


def test_non_zip_file_raises_value_error(tmp_path):
    p = tmp_path / "text.npz"
    p.write_text("hello, I am not a zip file\n" * 10)
    with pytest.raises(ValueError, match="not a tinytt checkpoint") as info:
        io.load(p)
    assert str(p) in str(info.value)
    np.save(tmp_path / "plain.npy", np.arange(3))  # a lone .npy is not a checkpoint either
    with pytest.raises(ValueError):
        io.load(tmp_path / "plain.npy")


def test_newer_version_raises_value_error(tmp_path, monkeypatch):
    p = tmp_path / "future"
    monkeypatch.setattr(io, "FORMAT_VERSION", io.FORMAT_VERSION + 1)
    io.save({"a": 1}, p)
    monkeypatch.undo()
    with pytest.raises(ValueError, match="newer") as info:
        io.load(p)
    assert str(p) in str(info.value)


def _handmade(path, meta, members):
    with zipfile.ZipFile(path, "w") as zf:
        with zf.open("__tinytt__.npy", "w") as fh:
            np.lib.format.write_array(fh, np.frombuffer(json.dumps(meta).encode(), np.uint8))
        for name, arr in members.items():
            with zf.open(name + ".npy", "w") as fh:
                np.lib.format.write_array(fh, arr, allow_pickle=True)


def test_object_array_in_file_is_rejected_without_unpickling(tmp_path, monkeypatch):
    p = tmp_path / "evil"
    meta = {"format": io.FORMAT_NAME, "version": 1, "tree": {"dict": [["x", {"array": "arrays/x"}]]}}
    _handmade(p, meta, {"arrays/x": np.array([{"a": 1}, None], dtype=object)})

    def no_unpickling(*args, **kwargs):
        raise AssertionError("pickle must never be used")

    monkeypatch.setattr(pickle, "load", no_unpickling)
    monkeypatch.setattr(pickle, "loads", no_unpickling)
    with pytest.raises(ValueError) as info:
        io.load(p)
    assert str(p) in str(info.value)


@pytest.mark.parametrize(
    "meta",
    [
        {"format": "something.else", "version": 1, "tree": None},
        {"format": io.FORMAT_NAME, "version": "1", "tree": None},
        {"format": io.FORMAT_NAME, "version": 1},
        {"format": io.FORMAT_NAME, "version": 1, "tree": {"array": "arrays/missing"}},
        {"format": io.FORMAT_NAME, "version": 1, "tree": {"bogus": []}},
        [1, 2, 3],
    ],
)
def test_malformed_metadata_raises_value_error(tmp_path, meta):
    p = tmp_path / "odd"
    _handmade(p, meta, {})
    with pytest.raises(ValueError) as info:
        io.load(p)
    assert str(p) in str(info.value)


def test_a_damaged_array_header_is_refused(tmp_path):
    """The header of an array member says its shape: changed to a smaller one the file loaded
    a shorter array; to a huge one it tried to allocate terabytes; garbled, it raised a parser
    error. Each is now the documented ValueError."""
    import zipfile

    path = tmp_path / "x.npz"
    io.save({"a": np.arange(1000.0)}, path)
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    name = next(n for n, b in members.items() if b"(1000,)" in b)
    for old, new in ((b"(1000,)", b"(10,)  "), (b"(1000,)", b"(10,10)"), (b"(1000,)", b"(10**12"),
                     (b"'shape': (1000,)", b"'shape': ((1000,)")):
        bad = tmp_path / "bad.npz"
        with zipfile.ZipFile(bad, "w") as zf:
            for n, b in members.items():
                zf.writestr(n, b.replace(old, new) if n == name else b)
        with pytest.raises(ValueError, match="not a valid tinytt checkpoint"):
            io.load(bad)
