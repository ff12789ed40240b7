"""Per-op overhead of the tinytt autodiff engine against raw NumPy (or CuPy).

For small elementwise ops (add, mul, tanh, sigmoid on 10- and 1000-element
float32 arrays) and a 256x256 float32 matmul, times one forward + backward
through tinytt and the same computation written by hand on raw arrays
(forward + hand-written backward, no graph), in microseconds: the median over
repeats of the mean over an inner loop, after a warm-up. Then times the
backward of a 100,000-op chain.

Prints one JSON object per line:

    {"bench": "engine", "op": "add", "shape": [10], "tinytt_us": ..., "numpy_us": ..., "ratio": ...}
    {"bench": "engine", "op": "chain_backward", "n_ops": 100000, "forward_s": ..., "backward_s": ...}

Usage: python benchmarks/engine.py [--quick]   (TINYTT_BACKEND=cupy for the GPU)
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import tinytt as tt   # before NumPy: it sets OpenBLAS's thread timeout (tinytt/_openblas.py)
import numpy  # noqa: E402,I001
from tinytt.backend import synchronize
from tinytt.ops import stable_sigmoid


def _time_us(fn, inner: int, repeats: int, warmup: int) -> float:
    """Median over ``repeats`` of the mean time of ``fn`` over ``inner`` calls, in microseconds."""
    for _ in range(warmup):
        fn()
    synchronize()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        synchronize()
        samples.append((time.perf_counter() - start) / inner * 1e6)
    return statistics.median(samples)


def _cases(xp):
    """(op name, shape, tinytt step, raw-array step) for each benchmark."""
    rng = numpy.random.default_rng(0)
    cases = []
    for n in (10, 1000):
        a = xp.asarray(rng.standard_normal(n).astype(numpy.float32))
        b = xp.asarray(rng.standard_normal(n).astype(numpy.float32))
        g = xp.ones(n, dtype=numpy.float32)
        x = tt.Tensor(a, requires_grad=True)
        y = tt.Tensor(b, requires_grad=True)

        def run_tt(f, x=x, y=y, g=g):
            x.grad = y.grad = None
            f(x, y).backward(g)

        def np_add(a=a, b=b, g=g):
            _ = a + b
            return g, g  # d(a+b)/da = d(a+b)/db = identity

        def np_mul(a=a, b=b, g=g):
            _ = a * b
            return g * b, g * a

        def np_tanh(a=a, g=g):
            out = xp.tanh(a)
            return g * (1 - out * out)

        def np_sigmoid(a=a, g=g):
            out = stable_sigmoid(a, xp)  # the same stable formula tinytt uses
            return g * out * (1 - out)

        cases += [
            ("add", (n,), lambda r=run_tt: r(lambda x, y: x + y), np_add),
            ("mul", (n,), lambda r=run_tt: r(lambda x, y: x * y), np_mul),
            ("tanh", (n,), lambda r=run_tt: r(lambda x, y: tt.tanh(x)), np_tanh),
            ("sigmoid", (n,), lambda r=run_tt: r(lambda x, y: tt.sigmoid(x)), np_sigmoid),
        ]

    m = 256
    a = xp.asarray(rng.standard_normal((m, m)).astype(numpy.float32))
    b = xp.asarray(rng.standard_normal((m, m)).astype(numpy.float32))
    g = xp.ones((m, m), dtype=numpy.float32)
    x = tt.Tensor(a, requires_grad=True)
    y = tt.Tensor(b, requires_grad=True)

    def tt_matmul():
        x.grad = y.grad = None
        (x @ y).backward(g)

    def np_matmul():
        _ = a @ b
        return g @ b.T, a.T @ g

    cases.append(("matmul", (m, m), tt_matmul, np_matmul))
    return cases


def _chain(n_ops: int) -> dict:
    x = tt.Tensor(tt.get_xp().ones(1, dtype=numpy.float32), requires_grad=True)
    start = time.perf_counter()
    y = x
    for _ in range(n_ops):
        y = y + 1.0
    synchronize()
    forward = time.perf_counter() - start
    start = time.perf_counter()
    y.backward()
    synchronize(x.grad)
    backward = time.perf_counter() - start
    return {"bench": "engine", "op": "chain_backward", "n_ops": n_ops, "backend": tt.get_backend(),
            "forward_s": round(forward, 4), "backward_s": round(backward, 4)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    args = parser.parse_args(argv)
    repeats, warmup = (5, 20) if args.quick else (21, 200)
    xp = tt.get_xp()
    for op, shape, tt_step, np_step in _cases(xp):
        inner = 20 if op == "matmul" else 200
        if args.quick:
            inner = max(inner // 4, 5)
        t_us = _time_us(tt_step, inner, repeats, warmup)
        n_us = _time_us(np_step, inner, repeats, warmup)
        print(json.dumps({"bench": "engine", "op": op, "shape": list(shape), "dtype": "float32",
                          "backend": tt.get_backend(), "tinytt_us": round(t_us, 2),
                          "numpy_us": round(n_us, 2), "ratio": round(t_us / n_us, 2),
                          "repeats": repeats, "inner": inner}), flush=True)
    print(json.dumps(_chain(100_000)), flush=True)


if __name__ == "__main__":
    main()
