"""tinytt/_openblas.py: the OpenBLAS spin timeout set on import, before NumPy loads."""

import os
import subprocess
import sys

import pytest


def _timeout_after(code, env_value=None):
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    if env_value is not None:
        env["OPENBLAS_THREAD_TIMEOUT"] = env_value
    out = subprocess.run([sys.executable, "-c", code + "; import os; print(os.environ.get('OPENBLAS_THREAD_TIMEOUT'))"],
                         env=env, capture_output=True, text=True, timeout=120, check=True)
    return out.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("code,env_value,expected", [
    ("import tinytt", None, "20"),                # tinytt first: the library's default
    ("import tinytt", "7", "7"),                  # a value the user set wins
    ("import numpy, tinytt", None, "None"),       # NumPy first: OpenBLAS already read it, leave it
])
def test_thread_timeout_is_set_only_before_numpy_and_never_overrides(code, env_value, expected):
    assert _timeout_after(code, env_value) == expected
