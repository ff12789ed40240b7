"""tinytt.allocator: the opt-in glibc heap padding used by the ``tinytt`` command."""

import sys

import pytest

from tinytt import allocator


@pytest.mark.parametrize("bad,exc", [(-1, ValueError), (1 << 31, ValueError), (1.5, TypeError),
                                     ("1", TypeError), (True, TypeError)])
def test_keep_freed_memory_rejects_bad_pads(bad, exc):
    with pytest.raises(exc, match="pad_bytes"):
        allocator.keep_freed_memory(bad)


def test_keep_freed_memory_applies_on_glibc():
    applied = allocator.keep_freed_memory(64 << 20)
    try:
        if sys.platform.startswith("linux") and applied:
            assert allocator.kept_bytes() == 64 << 20
        else:
            assert applied is False
    finally:
        allocator.keep_freed_memory(128 << 10)  # glibc's default pad again


_FAULT_PROBE = r"""
import resource, sys
import numpy
from tinytt import allocator
applied = allocator.keep_freed_memory(64 << 20)
def step():
    # a training step's pattern: arrays of 0.5-8 MiB allocated, written and freed
    arrays = [numpy.ones(n, dtype=numpy.float32) for n in (1 << 17, 1 << 19, 1 << 21)]
    return sum(float(a[-1]) for a in arrays)
for _ in range(5):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step()
after = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
print(int(applied), (after - before) // 20)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings: Linux only")
def test_kept_memory_means_steady_steps_fault_no_pages():
    # M_TOP_PAD alone freezes glibc's mmap threshold at 128 KiB, so every array above it
    # was a fresh mapping faulting ~2,700 pages per step here; with the threshold raised too,
    # steady-state steps reuse the kept heap
    import subprocess

    out = subprocess.run([sys.executable, "-c", _FAULT_PROBE], capture_output=True, text=True, check=True)
    applied, faults = map(int, out.stdout.split())
    if not applied:
        pytest.skip("mallopt not available (not glibc)")
    assert faults < 100, f"{faults} page faults per steady-state step"
