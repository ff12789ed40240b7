"""Benchmark TT-SVD and TT rounding (float64) against torchtt (and ttpy) in the same process.

Cases (../shared/research/peer_bench.md sections 1-2), all at eps 1e-10:

- ``svd_8^6_r6``: TT-SVD of a (8,)^6 tensor of TT-rank 6, no rank cap;
- ``svd_4^10_rmax16``: TT-SVD of a (4,)^10 Gaussian tensor, max_rank 16;
- ``svd_32^4_r20``: TT-SVD of a (32,)^4 tensor of TT-rank 20, no rank cap;
- ``round_10^8_r20+r20``: rounding of x + x (x: (10,)^8, rank 20; the sum has rank 40),
  max_rank 20; the exact answer is 2x;
- ``round_10^8_r20+0.1z`` (extra, lossy): rounding of x + 0.1 z (z a second rank-20 TT),
  max_rank 20; the error is measured against the unrounded sum.

Peers, called as their documentation says: ``torchtt.TT(full, eps=..., rmax=...)`` and
``tt.round(eps, rmax)`` (torch float64, ``torch.set_num_threads(2)``); ``ttpy``
(``tt.tensor(full, eps, rmax)``, ``.round(eps, rmax)``) when importable -- it is not installable
on this machine (a 2017 numpy.distutils + Fortran sdist), so a "note" row says so.

Prints one JSON object per line: case, library, median/min seconds and repeats, relative
Frobenius error (TT-SVD: against the dense input; rounding: computed in TT format by a QR sweep,
never forming the 10^8-entry tensor), ranks; for tinytt, ``ratio_vs_<peer>`` (same run),
``ratio_vs_fastest_peer`` and ``ratio_vs_peer_bench`` (against the best peer figure measured
earlier on this machine, ../shared/research/peer_bench.md).

    python benchmarks/tt_ops.py [--quick] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import tinytt  # noqa: F401,I001 - before NumPy: it sets OpenBLAS's thread timeout (tinytt/_openblas.py)
import numpy

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import add_common_args, configure, emit, time_call  # noqa: E402
from tinytt import backend  # noqa: E402
from tinytt.tt.cores import add_cores, full_cores, random_cores  # noqa: E402
from tinytt.tt.decompositions import round_cores, tt_svd_cores  # noqa: E402

BENCH = "tt_ops"
EPS = 1e-10
TORCH_THREADS = os.cpu_count() or 2   # the machine's default (2 here); --torch-threads overrides
# Best peer medians (seconds) from ../shared/research/peer_bench.md, measured on this machine (ttpy, torchtt).
PEER_BENCH_BEST = {"svd_8^6_r6": ("ttpy", 11.6e-3), "svd_4^10_rmax16": ("torchtt", 84.4e-3),
                   "svd_32^4_r20": ("torchtt", 117.4e-3), "round_10^8_r20+r20": ("ttpy", 4.86e-3),
                   "round_10^8_r20+0.1z": ("ttpy", 5.06e-3)}


def _host(c):
    return numpy.asarray(backend.to_numpy(c), dtype=numpy.float64)


def tt_norm(cores) -> float:
    """Frobenius norm of a TT (host float64) by a right-to-left QR sweep (no dense tensor)."""
    cores = [_host(c) for c in cores]
    cur = cores[-1]
    for k in range(len(cores) - 1, 0, -1):
        r0, n, r1 = cur.shape
        q, r = numpy.linalg.qr(cur.reshape(r0, n * r1).T)
        prv = cores[k - 1]
        cur = (prv.reshape(-1, r0) @ r.T).reshape(prv.shape[0], prv.shape[1], r.shape[0])
    return float(numpy.linalg.norm(cur))


def tt_rel_error(cores, ref_cores) -> float:
    """||TT(cores) - TT(ref)|| / ||TT(ref)|| in TT format."""
    a = [_host(c) for c in cores]
    b = [_host(c) for c in ref_cores]
    diff = add_cores(a, [-b[0]] + b[1:])
    return tt_norm(diff) / tt_norm(b)


def dense_rel_error(cores, ref) -> float:
    full = full_cores([_host(c) for c in cores])
    return float(numpy.linalg.norm(full - ref) / numpy.linalg.norm(ref))


def cases():
    """(name, kind, input, max_rank, reference) -- host float64 arrays / core lists."""
    rng = numpy.random.default_rng(1)
    as_host = lambda cs: [_host(c) for c in cs]  # noqa: E731
    yield "svd_8^6_r6", "svd", full_cores(as_host(random_cores((8,) * 6, 6, seed=0))), None, None
    yield "svd_4^10_rmax16", "svd", rng.standard_normal((4,) * 10), 16, None
    yield "svd_32^4_r20", "svd", full_cores(as_host(random_cores((32,) * 4, 20, seed=2))), None, None
    x = as_host(random_cores((10,) * 8, 20, seed=3))
    yield "round_10^8_r20+r20", "round", (x, x), 20, [2 * x[0]] + x[1:]
    z = as_host(random_cores((10,) * 8, 20, seed=4))
    zs = [0.1 * z[0]] + z[1:]
    yield "round_10^8_r20+0.1z", "round", (x, zs), 20, add_cores(x, zs)


def _ranks(cores):
    return [1] + [int(c.shape[2]) for c in cores]


def run_tinytt(kind, data, max_rank, ref):
    if kind == "svd":
        dev = backend.to_device(data)
        t = time_call(lambda: tt_svd_cores(dev, EPS, max_rank))
        cores = tt_svd_cores(dev, EPS, max_rank)
        err = dense_rel_error(cores, data)
    else:
        summed = add_cores([backend.to_device(c) for c in data[0]], [backend.to_device(c) for c in data[1]])
        t = time_call(lambda: round_cores(summed, EPS, max_rank))
        cores = round_cores(summed, EPS, max_rank)
        err = tt_rel_error(cores, ref)
    return t, err, _ranks(cores)


def load_peers(torch_threads=None) -> dict:
    peers = {}
    try:
        import tt as ttpy  # noqa: PLC0415 - optional peer

        peers["ttpy"] = ttpy
    except Exception as exc:  # noqa: BLE001 - not installed or a broken build
        emit({"bench": BENCH, "kind": "note", "library": "ttpy",
              "note": f"ttpy not importable ({type(exc).__name__}: {exc}); ttpy 1.2.1 is a 2017 "
                      "numpy.distutils + Fortran sdist that does not install here (needs setuptools<60, "
                      "gfortran, LAPACK dev files); its figures from ../shared/research/peer_bench.md are used as "
                      "ratio_vs_peer_bench"})
    try:
        import torch  # noqa: PLC0415
        import torchtt  # noqa: PLC0415

        torch.set_num_threads(torch_threads or TORCH_THREADS)
        peers["torchtt"] = (torch, torchtt)
    except Exception as exc:  # noqa: BLE001
        emit({"bench": BENCH, "kind": "note", "library": "torchtt",
              "note": f"torchtt not importable ({type(exc).__name__}: {exc})"})
    return peers


def run_peer(name, mod, kind, data, max_rank, ref):
    if name == "ttpy":
        if kind == "svd":
            args = (data, EPS) if max_rank is None else (data, EPS, max_rank)
            t = time_call(lambda: mod.tensor(*args))
            out = mod.tensor(*args)
        else:
            y = mod.vector.from_list(data[0]) + mod.vector.from_list(data[1])
            t = time_call(lambda: y.round(EPS, max_rank))
            out = y.round(EPS, max_rank)
        cores = mod.vector.to_list(out)
    else:
        torch, torchtt = mod
        if kind == "svd":
            full = torch.from_numpy(data)  # float64
            kw = {"eps": EPS} if max_rank is None else {"eps": EPS, "rmax": max_rank}
            t = time_call(lambda: torchtt.TT(full, **kw))
            out = torchtt.TT(full, **kw)
        else:
            y = torchtt.TT([torch.from_numpy(c) for c in data[0]]) + torchtt.TT([torch.from_numpy(c)
                                                                                  for c in data[1]])
            t = time_call(lambda: y.round(EPS, max_rank))
            out = y.round(EPS, max_rank)
        cores = [c.numpy() for c in out.cores]
        assert cores[0].dtype == numpy.float64
    err = dense_rel_error(cores, data) if kind == "svd" else tt_rel_error(cores, ref)
    return t, err, _ranks(cores)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser)
    parser.add_argument("--no-peers", action="store_true", help="time tinytt only")
    parser.add_argument("--torch-threads", type=int, default=None,
                        help="torch intra-op threads (default: CPU count); NumPy's BLAS threads follow "
                             "OPENBLAS_NUM_THREADS, which must be set in the environment")
    args = parser.parse_args(argv)
    configure(args)
    peers = {} if args.no_peers else load_peers(args.torch_threads)
    if "torchtt" in peers:
        torch = peers["torchtt"][0]
        emit({"bench": BENCH, "kind": "setup", "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
              "numpy": numpy.__version__, "cpu_count": os.cpu_count(),
              "openblas_num_threads": os.environ.get("OPENBLAS_NUM_THREADS")})
    for case, kind, data, max_rank, ref in cases():
        t, err, ranks = run_tinytt(kind, data, max_rank, ref)
        row = {"bench": BENCH, "kind": "time", "case": case, "library": "tinytt", "dtype": "float64", "eps": EPS,
               "max_rank": max_rank, **t, "rel_error": err, "ranks": ranks}
        peer_times = {}
        for name, mod in peers.items():
            try:
                pt, perr, pranks = run_peer(name, mod, kind, data, max_rank, ref)
            except Exception as exc:  # noqa: BLE001 - a failing peer must not stop the benchmark
                emit({"bench": BENCH, "kind": "error", "case": case, "library": name,
                      "error": f"{type(exc).__name__}: {exc}"})
                continue
            emit({"bench": BENCH, "kind": "time", "case": case, "library": name, "dtype": "float64", "eps": EPS,
                  "max_rank": max_rank, **pt, "rel_error": perr, "ranks": pranks})
            peer_times[name] = pt["median_s"]
            row[f"ratio_vs_{name}"] = t["median_s"] / pt["median_s"]
        if peer_times:
            fastest = min(peer_times, key=peer_times.get)
            row["fastest_peer"] = fastest
            row["ratio_vs_fastest_peer"] = t["median_s"] / peer_times[fastest]
        bench_peer, bench_s = PEER_BENCH_BEST[case]
        row["peer_bench_best"] = {"library": bench_peer, "median_s": bench_s}
        row["ratio_vs_peer_bench"] = t["median_s"] / bench_s
        row["target"] = "<= 1.0 vs fastest peer"
        row["meets_target"] = row.get("ratio_vs_fastest_peer", row["ratio_vs_peer_bench"]) <= 1.0
        emit(row)


if __name__ == "__main__":
    main()
