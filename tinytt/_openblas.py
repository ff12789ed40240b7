"""Shorten the busy-wait of NumPy's OpenBLAS threads (imported first by ``tinytt``).

After every call, OpenBLAS keeps its worker threads spinning for ``2**28`` cycles (about
0.1 s here) in case another call follows. In a training step the backward's last GEMMs are
followed by the optimizer's elementwise update, which tinytt spreads over the cores
(``tinytt.parallel``): with a spinning BLAS thread on the other core the update got no
second core (Adam on a 30000 x 256 embedding: 36 ms in the step against 22 ms on its own).
``2**20`` cycles (about 0.5 ms) still bridges the gaps between an LSTM's per-step GEMMs,
so the recurrence keeps its warm BLAS threads; and a short spin is what lets the LSTM's own
worker threads run GEMMs beside BLAS calls (``tinytt.blas_threads.cooperative``). OpenBLAS
reads ``OPENBLAS_THREAD_TIMEOUT`` once, when it loads: this only takes effect when ``tinytt``
is imported before NumPy (the ``tinytt`` command always is), and a value already in the
environment wins.
"""

import os
import sys

#: log2 of the cycles OpenBLAS threads spin before sleeping (OpenBLAS's range: 4-30)
THREAD_TIMEOUT = 20

if "numpy" not in sys.modules:
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", str(THREAD_TIMEOUT))
