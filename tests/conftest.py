"""Shared test setup: hypothesis profiles, the backend under test, data location.

- ``HYPOTHESIS_PROFILE`` picks ``dev`` (default), ``ci`` (fewer examples, derandomized)
  or ``stress`` (300 random examples per test, for hunting rare cases before a release);
  with ``CI=true`` and no explicit profile, ``ci`` is used.
- ``TINYTT_BACKEND`` (numpy | cupy) picks the backend the whole suite runs on;
  the ``xp`` fixture is that backend's namespace. Without the variable the GPU-only
  tests skip cleanly when there is no GPU; asking for cupy where CuPy or a GPU is missing
  stops at ``import tinytt`` with an error naming ``TINYTT_BACKEND`` (a GPU run must not
  pass by skipping everything).
- ``data_dir`` fixture: ``$TINYTT_DATA`` when set; tests needing it skip with a
  reason when it is absent (and fail under CI, where it must be present).
"""

import os

import numpy
import pytest
from hypothesis import HealthCheck, settings

import tinytt

settings.register_profile(
    "dev", max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "ci", max_examples=15, deadline=None, derandomize=True, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "stress", max_examples=300, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
_profile = os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") == "true" else "dev")
settings.load_profile(_profile)

BACKEND = os.environ.get("TINYTT_BACKEND", "numpy").strip().lower() or "numpy"


def pytest_report_header(config):
    return f"tinytt backend: {tinytt.get_backend()}, hypothesis profile: {_profile}"


@pytest.fixture(autouse=True)
def _restore_backend():
    """Each test starts on the suite's backend with gradients enabled."""
    before = tinytt.get_backend()
    yield
    if tinytt.get_backend() != before:
        tinytt.set_backend(before)


@pytest.fixture
def xp():
    """The array namespace of the backend under test (numpy or cupy)."""
    return tinytt.get_xp()


@pytest.fixture
def data_dir():
    """Path of the shared datasets ($TINYTT_DATA); skip (or fail under CI) when absent."""
    path = os.environ.get("TINYTT_DATA")
    if not path or not os.path.isdir(path):
        if os.environ.get("CI") == "true":
            pytest.fail(f"TINYTT_DATA must point at the datasets under CI (got {path!r})")
        pytest.skip("datasets not available: set TINYTT_DATA to the data folder (e.g. ../shared/data)")
    return path


def on_device(array):
    """Move a NumPy test array to the backend under test."""
    return tinytt.to_device(numpy.asarray(array))


def assert_same_runs(actual, expected, rtol=None, atol=None, err_msg=""):
    """Two runs of one computation agree: bit for bit on NumPy; on CuPy to rounding, since
    its backward passes sum with atomic adds (``cupyx.scatter_add``: the summation order,
    and so the last bits, change from run to run). ``rtol``/``atol`` default to 1e-6/1e-7
    for float32 and 1e-12/1e-14 for float64; a training loop that carries such
    differences through several optimizer steps passes wider ones."""
    actual, expected = tinytt.to_numpy(actual), tinytt.to_numpy(expected)
    if tinytt.get_backend() == "numpy":
        numpy.testing.assert_array_equal(actual, expected, err_msg=err_msg)
        return
    single = numpy.float32 in (actual.dtype, expected.dtype)
    numpy.testing.assert_allclose(
        actual, expected, err_msg=err_msg,
        rtol=(1e-6 if single else 1e-12) if rtol is None else rtol,
        atol=(1e-7 if single else 1e-14) if atol is None else atol)
