"""tinytt.blas_threads: NumPy's OpenBLAS on one thread inside a block, restored after;
threads share the cores only when OpenBLAS's helpers spin briefly."""

import os
import subprocess
import sys
import threading

import numpy
import pytest

from tinytt import blas_threads

pytestmark = pytest.mark.skipif(not blas_threads.available(),
                                reason="NumPy's BLAS is not an OpenBLAS whose thread count can be set")


def test_count_is_one_inside_and_restored_after_even_on_error():
    before = blas_threads.get_num_threads()
    with blas_threads.single_threaded_blas() as applied:
        assert applied is True
        assert blas_threads.get_num_threads() == 1
    assert blas_threads.get_num_threads() == before
    with pytest.raises(RuntimeError, match="inside"):
        with blas_threads.single_threaded_blas():
            raise RuntimeError("inside")
    assert blas_threads.get_num_threads() == before


def test_nested_and_concurrent_uses_restore_only_at_the_last_exit():
    before = blas_threads.get_num_threads()
    inner_entered, outer_may_leave = threading.Event(), threading.Event()
    seen = []

    def other_thread():
        with blas_threads.single_threaded_blas():
            inner_entered.set()
            outer_may_leave.wait(10)
        seen.append(blas_threads.get_num_threads())  # the main thread is still inside

    with blas_threads.single_threaded_blas():
        with blas_threads.single_threaded_blas():
            assert blas_threads.get_num_threads() == 1
        assert blas_threads.get_num_threads() == 1  # inner exit does not restore
        worker = threading.Thread(target=other_thread)
        worker.start()
        assert inner_entered.wait(10)
        outer_may_leave.set()
        worker.join(10)
        assert seen == [1]
    assert blas_threads.get_num_threads() == before


def test_gemm_results_inside_equal_a_float64_product():
    rng = numpy.random.default_rng(0)
    a, b = rng.standard_normal((64, 128)), rng.standard_normal((128, 96))
    want = numpy.einsum("ik,kj->ij", a, b)  # no BLAS
    with blas_threads.single_threaded_blas():
        got = a @ b
    numpy.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


_PROBE = ("import tinytt.blas_threads as b, numpy\n"
          "from tinytt.nn import lstm\n"
          "print(b.spin_log2(), b.cooperative(), len(lstm._row_blocks(64, 128, numpy)) > 1 or None,"
          " lstm._pipeline_chunk(200, 64, 128, numpy))")


@pytest.mark.parametrize("first,env_value,expected", [
    ("import tinytt", None, "20 True"),          # tinytt first: OPENBLAS_THREAD_TIMEOUT=20
    ("import numpy", None, "28 False"),          # NumPy first: OpenBLAS's long default spin
    ("import numpy", "18", "18 True"),           # the user's short setting
    ("import numpy", "40", "30 False"),          # clamped to OpenBLAS's range like OpenBLAS does
])
def test_threads_share_the_cores_only_with_a_short_spin(first, env_value, expected):
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_THREAD_TIMEOUT", "TINYTT_NUM_THREADS")}
    env["TINYTT_NUM_THREADS"] = "2"
    if env_value is not None:
        env["OPENBLAS_THREAD_TIMEOUT"] = env_value
    out = subprocess.run([sys.executable, "-c", first + "\n" + _PROBE], env=env, capture_output=True,
                         text=True, timeout=120, check=True).stdout.split()
    spin, cooperative, split, chunk = out
    assert f"{spin} {cooperative}" == expected
    if cooperative == "True":
        assert split == "True" and int(chunk) > 0       # the LSTM uses both cores
    else:
        assert split == "None" and chunk == "0"         # serial paths: nothing spins against it
