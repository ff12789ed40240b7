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
