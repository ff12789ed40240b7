"""Benchmark TT-SVD and TT rounding (float64) against ttpy / torchtt when they are importable.

Cases (peer_bench.md): TT-SVD of (8,)^6 TT-rank 6, (4,)^10 Gaussian with max_rank 16, (32,)^4
TT-rank 20, all at eps 1e-10; rounding of (10,)^8 rank 20 + itself to eps 1e-10, max_rank 20.
Prints one JSON object per line: case, library, median seconds, relative error, ranks, and the
ratio tinytt / peer for each peer measured in the same process.

    python benchmarks/tt_ops.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy

from tinytt import backend
from tinytt.tt.cores import add_cores, full_cores, random_cores
from tinytt.tt.decompositions import round_cores, tt_svd_cores

EPS = 1e-10


def _median_time(fn, repeats: int):
    fn()  # warm-up (plans, caches, LAPACK workspaces)
    times, out = [], None
    for _ in range(repeats):
        backend.synchronize()
        t0 = time.perf_counter()
        out = fn()
        backend.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def _rel_err(cores, ref) -> float:
    full = full_cores([backend.to_numpy(c) for c in cores])
    return float(numpy.linalg.norm(full - ref) / numpy.linalg.norm(ref))


def _cases():
    rng = numpy.random.default_rng(1)
    yield "svd_8^6_r6", "svd", backend.to_numpy(full_cores(random_cores((8,) * 6, 6, seed=0))), None
    yield "svd_4^10_rmax16", "svd", rng.standard_normal((4,) * 10), 16
    yield "svd_32^4_r20", "svd", backend.to_numpy(full_cores(random_cores((32,) * 4, 20, seed=2))), None
    x = [backend.to_numpy(c) for c in random_cores((10,) * 8, 20, seed=3)]
    yield "round_10^8_r20+r20", "round", x, 20


def _peers():
    peers = {}
    try:
        import tt as ttpy  # noqa: PLC0415 - optional peer

        peers["ttpy"] = ttpy
    except Exception:  # not installed or broken build
        pass
    try:
        import torch  # noqa: PLC0415
        import torchtt  # noqa: PLC0415

        torch.set_default_dtype(torch.float64)
        peers["torchtt"] = (torch, torchtt)
    except Exception:
        pass
    return peers


def _run_peer(name, mod, kind, data, max_rank, repeats):
    if name == "ttpy":
        if kind == "svd":
            fn = (lambda: mod.tensor(data, EPS)) if max_rank is None else (lambda: mod.tensor(data, EPS, max_rank))
            t, out = _median_time(fn, repeats)
            ref = data
        else:
            x = mod.vector.from_list([c for c in data])
            y = x + x
            t, out = _median_time(lambda: y.round(EPS, max_rank), repeats)
            ref = 2 * full_cores(data)
        cores = mod.vector.to_list(out)
        return t, _rel_err(cores, ref), [1] + [int(c.shape[2]) for c in cores]
    torch, torchtt = mod
    if kind == "svd":
        td = torch.from_numpy(data)
        kw = {} if max_rank is None else {"rmax": max_rank}
        t, out = _median_time(lambda: torchtt.TT(td, EPS, **kw), repeats)
        ref = data
    else:
        x = torchtt.TT([torch.from_numpy(c) for c in data])
        y = x + x
        t, out = _median_time(lambda: y.round(EPS, max_rank), repeats)
        ref = 2 * full_cores(data)
    cores = [c.numpy() for c in out.cores]
    return t, _rel_err(cores, ref), [1] + [int(c.shape[2]) for c in cores]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    peers = _peers()
    for case, kind, data, max_rank in _cases():
        if kind == "svd":
            dev = backend.to_device(data)
            t, cores = _median_time(lambda: tt_svd_cores(dev, EPS, max_rank), args.repeats)
            err = _rel_err(cores, data)
        else:
            dev = [backend.to_device(c) for c in data]
            summed = add_cores(dev, dev)
            t, cores = _median_time(lambda: round_cores(summed, EPS, max_rank), args.repeats)
            err = _rel_err(cores, 2 * full_cores(data))
        row = {"case": case, "library": "tinytt", "backend": backend.get_backend(), "median_s": t,
               "rel_error": err, "ranks": [1] + [int(c.shape[2]) for c in cores]}
        for name, mod in peers.items():
            try:
                pt, perr, pranks = _run_peer(name, mod, kind, data, max_rank, args.repeats)
            except Exception as exc:  # a peer failing must not stop the benchmark
                print(json.dumps({"case": case, "library": name, "error": f"{type(exc).__name__}: {exc}"}))
                continue
            print(json.dumps({"case": case, "library": name, "median_s": pt, "rel_error": perr, "ranks": pranks}))
            row[f"ratio_vs_{name}"] = t / pt
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
