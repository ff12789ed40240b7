"""tinytt.allocator: the opt-in glibc heap padding used by the ``tinytt`` command."""

import sys

import numpy
import pytest

import tinytt as tt
from tinytt import allocator


@pytest.mark.parametrize("bad,exc", [(-1, ValueError), (1 << 31, ValueError), (1.5, TypeError),
                                     ("1", TypeError), (True, TypeError)])
def test_keep_freed_memory_rejects_bad_pads(bad, exc):
    with pytest.raises(exc, match="pad_bytes"):
        allocator.keep_freed_memory(bad)


def test_keep_freed_memory_applies_on_glibc_and_changes_no_result():
    rng = numpy.random.default_rng(0)
    ids = rng.integers(0, 50, (4, 9))
    layer = tt.nn.TTEmbedding(50, 12, rank=3, dtype="float64", seed=0)
    before = tt.to_numpy(layer(ids).data)
    applied = allocator.keep_freed_memory(64 << 20)
    try:
        if sys.platform.startswith("linux") and applied:
            assert allocator.kept_bytes() == 64 << 20
        else:
            assert applied is False
        numpy.testing.assert_array_equal(tt.to_numpy(layer(ids).data), before)
    finally:
        allocator.keep_freed_memory(128 << 10)  # glibc's default pad again
