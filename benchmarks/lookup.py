"""TT embedding lookup: tinytt's strategies against tinytt's dense Embedding and PyTorch (float32).

Setup (../shared/research/peer_bench.md section 3): V = 25000 -> TT-matrix (25,30,40) x (4,8,8), rank 16,
D = 256, cores (1,25,4,16), (16,30,8,16), (16,40,8,1). Batches:

- ``imdb_64x200``: 64 IMDB training reviews (seeded draw) cut or padded to 200 tokens (padding
  id 0 counts as a token), ids from a vocabulary of the 25,000 most frequent lowercased tokens
  (``tinytt.data.tokenize`` + ``Vocab.build(max_size=25000)``), read from
  ``$TINYTT_DATA/imdb/train.tsv.gz`` (skipped with a JSON note when absent);
- ``random_12800`` (64 x 200) and ``random_4096``: uniform ids in [0, 25000).

Implementations: tinytt ``TTEmbedding`` with ``strategy=`` "gather", "prefix", "full" and
"auto", each planning the batch from scratch on every call (the plan cache is cleared, as for
the new batch of every training step), and "auto-cached" (the same batch again: its plan comes
from ``tinytt.tt.lookup.cached_plan``); tinytt dense ``Embedding(25000, 256)``; and, when torch imports, in the same process:
``torch-dense`` (``nn.Embedding``, dense gradient), ``torch-tt-full`` (full table from the cores,
then index), ``torch-tt-gather`` (``index_select`` of each token's core slices + batched
contraction), ``torch-tt-partial`` (cores 1-2 contracted for all (i1, i2) pairs, then one gather
and one ``bmm`` per token) and ``torch-tt-partial-dedup`` (the same on the distinct ids only,
``torch.unique`` first, then ``embedding(inverse, rows)``: the deduplication tinytt does too;
added in session 5 after an audit found it 2.4x faster on real text). The torch TT variants use the tinytt layer's cores; their forward
is checked against tinytt's (relative Frobenius error <= 1e-4, printed as "check" rows).

Ops: "fwd" (forward, autograd recording on) and "fwd+bwd" (forward, then backward seeded with a
materialised ones array of the output shape -- torch's "ones-seeded" rows; gradients are reset
to None before each call, outside the timed region). Times (session 6 on): interleaved, every
implementation and op timed in turn in each of ``--rounds`` rounds (default 5; 1 warm-up and
``--reps`` timed calls each, order reversed every other round), with a 10 ms pause before each
call so that threads the previous call left spinning (PyTorch's OpenMP pool) are idle again;
median over all rounds, plus the median of each round (``round_medians_s``) and the ratios per
round (``time_ratio_by_round``). Before session 6 each implementation was timed in one block,
and the machine's drift between blocks moved the IMDB ratio between 0.94x and 1.31x in two
consecutive runs.
Peak memory: "rss" = increase of the RSS high-water mark during one call, measured in a fresh
subprocess per (batch, implementation) with ``MALLOC_MMAP_THRESHOLD_=65536`` (so freed large
blocks go back to the OS); "tracemalloc" = peak of NumPy allocations during one call (tinytt
rows only). Then ratio rows (each tinytt TT variant vs the fastest torch TT variant; TT-auto vs
tinytt dense, time and memory) and a cProfile of the auto path (fwd+bwd, real-text batch).

    TINYTT_DATA=/work/shared/data python benchmarks/lookup.py [--quick] [--out FILE] [--no-memory]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import tinytt  # noqa: E402  (before NumPy: its OpenBLAS settings, tinytt/_openblas.py)
import numpy  # noqa: E402
from _common import (add_common_args, configure, emit, rss_peak, rss_supported, time_call,  # noqa: E402
                     time_interleaved, tracemalloc_peak, usable_cpus)
from tinytt import backend  # noqa: E402
from tinytt.tt.lookup import plan_cache_clear  # noqa: E402

V, D, RANK = 25000, 256, 16
ROW_SHAPE, COL_SHAPE = (25, 30, 40), (4, 8, 8)
SEQ_LEN, N_REVIEWS = 200, 64
TT_STRATEGIES = ("gather", "prefix", "full", "auto")
#: "tinytt-tt-auto-cached" looks the same batch up with its plan cached (``cached_plan``); every
#: other TT row forgets the plan before each call, as a training step does with a new batch
TINYTT_IMPLS = tuple(f"tinytt-tt-{s}" for s in TT_STRATEGIES) + ("tinytt-tt-auto-cached", "tinytt-dense")
TORCH_TT_IMPLS = ("torch-tt-full", "torch-tt-gather", "torch-tt-partial", "torch-tt-partial-dedup")
TORCH_IMPLS = ("torch-dense",) + TORCH_TT_IMPLS
BENCH = "lookup"


# --- batches --------------------------------------------------------------------------------
def imdb_batch(seed: int = 0):
    """(64, 200) int64 ids of 64 seeded IMDB training reviews, or (None, note) when the file is absent.

    The vocabulary has V = 25,000 ids: ``<pad>`` (0), ``<unk>`` (1) and the 24,998 most
    frequent lowercased tokens, so every id is a row of the 25,000-row table."""
    root = os.environ.get("TINYTT_DATA")
    path = Path(root).expanduser() / "imdb" / "train.tsv.gz" if root else None
    if path is None or not path.is_file():
        return None, f"IMDB batch skipped: {'$TINYTT_DATA is not set' if root is None else f'{path} not found'}"
    from tinytt.data import Vocab, read_tsv, tokenize  # noqa: PLC0415

    t0 = time.perf_counter()
    texts, _ = read_tsv(path)
    token_lists = [tokenize(t) for t in texts]
    vocab = Vocab.build(token_lists, max_size=V)
    pick = numpy.random.default_rng(seed).choice(len(texts), N_REVIEWS, replace=False)
    ids = numpy.zeros((N_REVIEWS, SEQ_LEN), dtype=numpy.int64)  # 0 = <pad>
    for row, i in enumerate(pick):
        enc = vocab.encode(token_lists[i][:SEQ_LEN])
        ids[row, : len(enc)] = enc
    info = {"reviews": len(texts), "vocab_size": len(vocab), "prepare_s": round(time.perf_counter() - t0, 2),
            "pad_fraction": float((ids == 0).mean()), "unk_fraction": float((ids == 1).mean())}
    return ids, info


def random_batch(n: int, seed: int):
    ids = numpy.random.default_rng(seed).integers(0, V, size=n, dtype=numpy.int64)
    return ids.reshape(N_REVIEWS, -1) if n == N_REVIEWS * SEQ_LEN else ids


# --- implementations --------------------------------------------------------------------------
def tt_layer():
    return tinytt.nn.TTEmbedding(V, D, rank=RANK, shape=(ROW_SHAPE, COL_SHAPE), seed=0)


def _torch(threads=None):
    """torch with ``threads`` intra-op threads (default: the machine's CPU count), or None."""
    try:
        import torch  # noqa: PLC0415
    except Exception:  # noqa: BLE001 - torch is optional
        return None
    torch.set_num_threads(int(threads or os.environ.get("TINYTT_BENCH_TORCH_THREADS") or usable_cpus()))
    return torch


def torch_tt_forward(torch, name, cores, ids_t):
    """Rows of the TT-matrix for ``ids_t`` (any shape) as ``ids_t.shape + (256,)``; cores are torch leaves.

    Digits in C order (first digit most significant) for rows and columns, as in tinytt.
    """
    g1, g2, g3 = cores                     # (1,25,4,16), (16,30,8,16), (16,40,8,1)
    v1, v2, v3 = ROW_SHAPE
    d1, d2, d3 = COL_SHAPE
    flat = ids_t.reshape(-1)
    if name == "torch-tt-full":
        pair = torch.einsum("ijb,bklc->ikjlc", g1[0], g2).reshape(v1 * v2, d1 * d2, g2.shape[3])
        full = torch.einsum("pqc,cmn->pmqn", pair, g3[..., 0]).reshape(v1 * v2 * v3, d1 * d2 * d3)
        rows = torch.nn.functional.embedding(flat, full)
    elif name == "torch-tt-gather":
        i1 = torch.div(flat, v2 * v3, rounding_mode="floor")
        i2 = torch.div(flat, v3, rounding_mode="floor") % v2
        i3 = flat % v3
        # row index first and contiguous, so index_select (and its index_add backward) runs on dim 0
        s1 = torch.index_select(g1[0], 0, i1)                                          # (B, d1, r1)
        s2 = torch.index_select(g2.permute(1, 0, 2, 3).contiguous(), 0, i2)            # (B, r1, d2, r2)
        s3 = torch.index_select(g3[..., 0].permute(1, 0, 2).contiguous(), 0, i3)       # (B, r2, d3)
        left = torch.einsum("bxr,brys->bxys", s1, s2).reshape(flat.shape[0], d1 * d2, -1)
        rows = torch.bmm(left, s3).reshape(flat.shape[0], -1)
    elif name in ("torch-tt-partial", "torch-tt-partial-dedup"):
        pair = torch.einsum("ijb,bklc->ikjlc", g1[0], g2).reshape(v1 * v2, d1 * d2, g2.shape[3])
        if name == "torch-tt-partial-dedup":   # rows of the distinct ids only, then spread out
            flat, inverse = torch.unique(flat, return_inverse=True)
        p = torch.div(flat, v3, rounding_mode="floor")
        i3 = flat % v3
        s3 = torch.index_select(g3[..., 0].permute(1, 0, 2).contiguous(), 0, i3)       # (B, r2, d3)
        rows = torch.bmm(torch.index_select(pair, 0, p), s3).reshape(flat.shape[0], -1)
        if name == "torch-tt-partial-dedup":
            rows = torch.nn.functional.embedding(inverse.reshape(-1), rows)
    else:
        raise ValueError(name)
    return rows.reshape(tuple(ids_t.shape) + (d1 * d2 * d3,))


class Impl:
    """One implementation bound to one batch: ``fwd()``, ``fwd_bwd()``, ``reset()`` and ``params``."""

    def __init__(self, name, ids, torch=None):
        self.name = name
        self.ids = ids
        out_shape = tuple(ids.shape) + (D,)
        if name.startswith("tinytt"):
            dev_ids = backend.to_device(ids)
            if name == "tinytt-dense":
                dense = tinytt.nn.Embedding(V, D, seed=0)
                self.params = dense.parameters()
                self._call = lambda: dense(dev_ids)
            elif name == "tinytt-tt-auto-cached":
                layer = tt_layer()
                self.params = layer.parameters()
                self._call = lambda: layer(dev_ids, strategy="auto")
            else:
                strategy = name.rsplit("-", 1)[1]
                layer = tt_layer()
                self.params = layer.parameters()

                def cold_call():
                    plan_cache_clear()   # a new batch: plan from scratch (~0.5 ms on the IMDB batch)
                    return layer(dev_ids, strategy=strategy)

                self._call = cold_call
            xp = backend.get_xp(self.params[0].data)
            self._seed = xp.ones(out_shape, dtype=self.params[0].data.dtype)
            self.rows = lambda: backend.to_numpy(self._call().data)
        else:
            ids_t = torch.from_numpy(ids)
            if name == "torch-dense":
                emb = torch.nn.Embedding(V, D)
                self.params = list(emb.parameters())
                self._call = lambda: emb(ids_t)
            else:
                cores = [torch.tensor(backend.to_numpy(c.data), requires_grad=True) for c in tt_layer().cores]
                self.params = cores
                self._call = lambda: torch_tt_forward(torch, name, cores, ids_t)
            self._seed = torch.ones(out_shape, dtype=torch.float32)
            self.rows = lambda: self._call().detach().numpy()

    def reset(self):
        for p in self.params:
            p.grad = None

    def fwd(self):
        return self._call()

    def fwd_bwd(self):
        out = self._call()
        out.backward(self._seed)
        return out


# --- memory: one subprocess per (batch, implementation) -------------------------------------
def _child_main(argv) -> None:
    """``--_child IDS.npy NAME``: print one JSON line with the peak memory of fwd and fwd+bwd."""
    import json  # noqa: PLC0415

    ids_path, name = argv
    ids = numpy.load(ids_path)
    torch = _torch() if name.startswith("torch") else None
    impl = Impl(name, ids, torch)
    impl.reset()
    impl.fwd_bwd()  # warm-up: plans, caches, lazily allocated workspaces
    impl.reset()
    res = {}
    for op, fn in (("fwd", impl.fwd), ("fwd+bwd", impl.fwd_bwd)):
        if rss_supported():
            res[f"{op}:rss"] = rss_peak(fn, setup=impl.reset)
        if name.startswith("tinytt"):
            res[f"{op}:tracemalloc"] = tracemalloc_peak(fn, setup=impl.reset)
        impl.reset()
    print(json.dumps(res))


def child_memory(ids, names) -> dict:
    """{name: {"fwd:rss": bytes, ...}} measured in fresh subprocesses."""
    import json  # noqa: PLC0415

    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    env.pop("MALLOC_TRIM_THRESHOLD_", None)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "ids.npy")
        numpy.save(path, ids)
        for name in names:
            proc = subprocess.run([sys.executable, __file__, "--_child", path, name], env=env,
                                  capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                out[name] = {"error": proc.stderr.strip().splitlines()[-1:] or ["failed"]}
                continue
            out[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


# --- checks, profile --------------------------------------------------------------------------
def _rel(a, b) -> float:
    a64, b64 = a.astype(numpy.float64), b.astype(numpy.float64)
    return float(numpy.linalg.norm(a64 - b64) / max(numpy.linalg.norm(b64), 1e-300))


def check_forward(batch, ids, impls) -> None:
    """Every TT implementation's forward (and the torch TT core gradients) against tinytt-tt-auto."""
    ref_impl = impls["tinytt-tt-auto"]
    ref = ref_impl.rows()
    ref_impl.reset()
    ref_impl.fwd_bwd()
    ref_grads = [backend.to_numpy(p.grad) for p in ref_impl.params]
    ref_impl.reset()
    for name, impl in impls.items():
        if "-tt-" not in name or name == "tinytt-tt-auto":
            continue
        err = _rel(impl.rows(), ref)
        row = {"bench": BENCH, "kind": "check", "batch": batch, "impl": name, "against": "tinytt-tt-auto",
               "forward_rel_error": err, "tol": 1e-4, "ok": err <= 1e-4}
        impl.reset()
        impl.fwd_bwd()
        grads = [p.grad.numpy() if hasattr(p.grad, "numpy") else backend.to_numpy(p.grad) for p in impl.params]
        impl.reset()
        row["grad_rel_error"] = max(_rel(g, r) for g, r in zip(grads, ref_grads))
        row["ok"] = row["ok"] and row["grad_rel_error"] <= 1e-4
        emit(row)


def profile_auto(ids, top: int = 15) -> None:
    impl = Impl("tinytt-tt-auto", ids)
    n_calls = 10
    for _ in range(2):
        impl.reset()
        impl.fwd_bwd()
    prof = cProfile.Profile()
    for _ in range(n_calls):
        impl.reset()
        prof.enable()
        impl.fwd_bwd()
        prof.disable()
    stats = pstats.Stats(prof)
    total = stats.total_tt
    rows = []
    for (filename, line, func), (cc, nc, tt_, ct, _) in stats.stats.items():
        rows.append({"function": f"{Path(filename).name}:{line}({func})" if line else func,
                     "ncalls_per_call": nc / n_calls, "tottime_ms": 1e3 * tt_ / n_calls,
                     "cumtime_ms": 1e3 * ct / n_calls})
    by_tot = sorted(rows, key=lambda r: -r["tottime_ms"])[:top]
    by_cum = sorted((r for r in rows if r["function"].startswith(("lookup.py", "backend.py", "tensor.py",
                                                                    "tt_embedding.py"))),
                    key=lambda r: -r["cumtime_ms"])[:top]
    for r in by_tot + by_cum:
        for k in ("tottime_ms", "cumtime_ms", "ncalls_per_call"):
            r[k] = round(r[k], 3)
    from tinytt.tt.lookup import plan_lookup  # noqa: PLC0415

    plan = plan_lookup(numpy.asarray(ids).reshape(-1), ROW_SHAPE, COL_SHAPE, [1, RANK, RANK, 1], "auto")
    emit({"bench": BENCH, "kind": "profile", "batch": "imdb_64x200", "impl": "tinytt-tt-auto", "op": "fwd+bwd",
          "chosen_strategy": plan.strategy, "level_modes": [lv.mode for lv in plan.levels],
          "level_nodes": [lv.n_nodes for lv in plan.levels], "distinct_ids": int(plan.uniq.shape[0]),
          "profiled_ms_per_call": round(1e3 * total / n_calls, 3), "top_tottime": by_tot,
          "tinytt_cumtime": by_cum})
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(top)
    print(buf.getvalue(), file=sys.stderr)
    breakdown_auto(ids)


def _line_times(code, fn, n_calls: int = 5, top: int = 8) -> list:
    """Wall time per source line of ``code`` while running ``fn`` (a minimal line profiler).

    Time between two line events of that frame is charged to the earlier line (calls into
    other functions included). Returns the ``top`` lines: [{"line", "source", "ms"}].
    """
    import linecache  # noqa: PLC0415
    import time as _time  # noqa: PLC0415

    acc = {}
    last = {}

    def local(frame, event, arg):
        now = _time.perf_counter()
        prev = last.get(id(frame))
        if prev is not None:
            acc[prev[0]] = acc.get(prev[0], 0.0) + now - prev[1]
        if event == "line":
            last[id(frame)] = (frame.f_lineno, _time.perf_counter())
        elif event == "return":
            last.pop(id(frame), None)
        return local

    def global_trace(frame, event, arg):
        return local if frame.f_code is code else None

    old = sys.gettrace()
    sys.settrace(global_trace)
    try:
        for _ in range(n_calls):
            fn()
    finally:
        sys.settrace(old)
    rows = sorted(acc.items(), key=lambda kv: -kv[1])[:top]
    return [{"line": ln, "source": linecache.getline(code.co_filename, ln).strip(), "ms": round(1e3 * t / n_calls, 3)}
            for ln, t in rows]


def breakdown_auto(ids) -> None:
    """Median time of each stage of the auto lookup, fwd+bwd, called one by one (lookup internals).

    Stages: plan (unique + cost model + level layout), forward (level products), expand
    (``take`` of the distinct rows back to the batch), dedup-grad (segment sum of the output
    gradient onto the distinct ids), backward (core gradients), and the per-level pieces of the
    backward: ``matmul`` calls and ``scatter_add`` calls (timed by wrapping them).
    """
    from tinytt.tt import lookup as lk  # noqa: PLC0415

    arrays = [c.data for c in tt_layer().cores]
    xp = backend.get_xp(*arrays)
    flat = backend.to_device(numpy.asarray(ids).reshape(-1))
    ranks = [1] + [a.shape[3] for a in arrays]
    state = {}

    def plan():
        state["plan"] = lk.plan_lookup(flat, ROW_SHAPE, COL_SHAPE, ranks, "auto")

    def forward():
        state["rows"], state["saved"] = lk._forward(state["plan"], arrays, xp)

    def expand():
        state["out"] = xp.take(state["rows"], state["plan"].inverse, axis=0)

    seed = xp.ones((flat.shape[0], D), dtype=arrays[0].dtype)

    def dedup_grad():
        state["d_rows"] = backend.scatter_add(state["plan"].inverse, seed, state["rows"].shape[0])

    def backward():
        lk._backward(state["plan"], arrays, state["saved"], state["d_rows"], xp)

    stages = {}
    for name, fn in (("plan", plan), ("forward", forward), ("expand_take", expand), ("dedup_grad_scatter", dedup_grad),
                     ("backward_cores", backward)):
        stages[name] = round(1e3 * time_call(fn)["median_s"], 3)
    # inside the backward: time matmul and scatter_add calls by wrapping the module-level names
    import time as _time  # noqa: PLC0415

    acc = {"matmul": 0.0, "scatter_add": 0.0}
    real_matmul, real_scatter = xp.matmul, lk.scatter_add

    def timed(key, fn):
        def wrapper(*a, **k):
            t0 = _time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                acc[key] += _time.perf_counter() - t0
        return wrapper

    n_calls = 10
    try:
        xp.matmul = timed("matmul", real_matmul)
        lk.scatter_add = timed("scatter_add", real_scatter)
        t0 = _time.perf_counter()
        for _ in range(n_calls):
            backward()
        total = _time.perf_counter() - t0
    finally:
        xp.matmul, lk.scatter_add = real_matmul, real_scatter
    plan_obj = state["plan"]
    lines = {}
    for fn_name, fn in (("_forward", forward), ("_backward", backward)):
        lines[fn_name] = _line_times(getattr(lk, fn_name).__code__, fn, n_calls=5)
    emit({"bench": BENCH, "kind": "line_profile", "batch": "imdb_64x200", "impl": "tinytt-tt-auto",
          "note": "ms per call by source line of tinytt/tt/lookup.py (sys.settrace; a loop line counts each pass)",
          **lines})
    emit({"bench": BENCH, "kind": "breakdown", "batch": "imdb_64x200", "impl": "tinytt-tt-auto", "op": "fwd+bwd",
          "strategy": plan_obj.strategy, "stage_median_ms": stages,
          "stage_sum_ms": round(sum(stages.values()), 3),
          "backward_split_ms": {"matmul_batched": round(1e3 * acc["matmul"] / n_calls, 3),
                                "scatter_add": round(1e3 * acc["scatter_add"] / n_calls, 3),
                                "rest (expand-level GEMMs, gathers, zero-fill, transposes)":
                                    round(1e3 * (total - acc["matmul"] - acc["scatter_add"]) / n_calls, 3),
                                "total": round(1e3 * total / n_calls, 3)}})


# --- main ---------------------------------------------------------------------------------------
def run_batch(batch, ids, torch, memory: bool, results: list, rounds: int = 5, reps: int = 3) -> None:
    names = list(TINYTT_IMPLS) + (list(TORCH_IMPLS) if torch is not None else [])
    impls = {name: Impl(name, ids, torch) for name in names}
    check_forward(batch, ids, impls)
    mem = child_memory(ids, names) if memory else {}
    n_tokens = int(ids.size)
    timed = time_interleaved({(name, op): (fn, impl.reset) for name, impl in impls.items()
                              for op, fn in (("fwd", impl.fwd), ("fwd+bwd", impl.fwd_bwd))},
                             rounds=rounds, reps=reps)
    for name, impl in impls.items():
        for op in ("fwd", "fwd+bwd"):
            t = timed[(name, op)]
            row = {"bench": BENCH, "kind": "time", "batch": batch, "tokens": n_tokens,
                   "distinct_ids": int(numpy.unique(ids).size), "impl": name, "op": op,
                   "dtype": "float32", **t, "tokens_per_s": n_tokens / t["median_s"],
                   "torch_threads": torch.get_num_threads() if torch is not None else None}
            m = mem.get(name, {})
            if "error" in m:
                row["peak_error"] = m["error"]
            if f"{op}:rss" in m:
                row["peak_rss_bytes"] = m[f"{op}:rss"]
                row["peak_rss_method"] = "VmHWM increase, fresh subprocess, MALLOC_MMAP_THRESHOLD_=65536"
            if f"{op}:tracemalloc" in m:
                row["peak_tracemalloc_bytes"] = m[f"{op}:tracemalloc"]
            impl.reset()
            results.append(emit(row))


def _by_round(row, against) -> list:
    """Ratio of the two rows' medians in each timing round (the spread shows the noise)."""
    return [round(a / b, 3) for a, b in zip(row.get("round_medians_s", []), against.get("round_medians_s", []))]


def ratio_rows(results: list) -> None:
    by = {(r["batch"], r["impl"], r["op"]): r for r in results}
    batches = sorted({r["batch"] for r in results})
    for batch in batches:
        for op in ("fwd", "fwd+bwd"):
            torch_tt = [by[(batch, n, op)] for n in TORCH_TT_IMPLS if (batch, n, op) in by]
            if torch_tt:
                best = min(torch_tt, key=lambda r: r["median_s"])
                for s in TT_STRATEGIES:
                    r = by[(batch, f"tinytt-tt-{s}", op)]
                    ratio = r["median_s"] / best["median_s"]
                    row = {"bench": BENCH, "kind": "ratio", "batch": batch, "op": op, "impl": r["impl"],
                           "against": best["impl"], "time_ratio": ratio,
                           "time_ratio_by_round": _by_round(r, best)}
                    if "peak_rss_bytes" in r and "peak_rss_bytes" in best:
                        row["rss_ratio"] = r["peak_rss_bytes"] / max(best["peak_rss_bytes"], 1)
                    if batch.startswith("imdb") and op == "fwd+bwd":
                        row["target"] = "<= 1.0"
                        row["meets_target"] = ratio <= 1.0
                    emit(row)
            auto, dense = by[(batch, "tinytt-tt-auto", op)], by[(batch, "tinytt-dense", op)]
            row = {"bench": BENCH, "kind": "ratio", "batch": batch, "op": op, "impl": "tinytt-tt-auto",
                   "against": "tinytt-dense", "time_ratio": auto["median_s"] / dense["median_s"],
                   "time_ratio_by_round": _by_round(auto, dense)}
            for key, name in (("peak_rss_bytes", "rss_ratio"), ("peak_tracemalloc_bytes", "tracemalloc_ratio")):
                if key in auto and key in dense:
                    row[name] = auto[key] / max(dense[key], 1)
            if batch.startswith("imdb") and op == "fwd+bwd":
                row["target"] = "time <= 1.0, memory < 1.0"
                row["meets_target"] = row["time_ratio"] <= 1.0 and all(
                    row[k] < 1.0 for k in ("rss_ratio", "tracemalloc_ratio") if k in row)
            emit(row)


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--_child"]:
        _child_main(argv[1:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser)
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--no-profile", action="store_true", help="skip the cProfile of the auto path")
    parser.add_argument("--glibc-default-malloc", action="store_true",
                        help="leave glibc's malloc settings alone; by default the timing runs after "
                             "tinytt.allocator.keep_freed_memory(), as the tinytt command and "
                             "train_step.py do (PyTorch in this process gets the same setting)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="rounds of interleaved timing (default 5; --quick: 2): each round times every "
                             "implementation and op in turn")
    parser.add_argument("--reps", type=int, default=3, help="timed calls per implementation, op and round "
                        "(default 3; --quick: 2)")
    parser.add_argument("--torch-threads", type=int, default=None,
                        help="torch intra-op threads (default: CPU count); NumPy's BLAS threads follow "
                             "OPENBLAS_NUM_THREADS, which must be set in the environment")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.reps < 1:
        parser.error("--rounds and --reps must be at least 1")
    configure(args)
    if not args.glibc_default_malloc:
        tinytt.allocator.keep_freed_memory()
    if args.torch_threads:
        os.environ["TINYTT_BENCH_TORCH_THREADS"] = str(args.torch_threads)  # the memory subprocesses too
    torch = _torch()
    emit({"bench": BENCH, "kind": "setup", "V": V, "D": D, "row_shape": ROW_SHAPE, "col_shape": COL_SHAPE,
          "rank": RANK, "numpy": numpy.__version__, "torch": getattr(torch, "__version__", None),
          "torch_threads": torch.get_num_threads() if torch is not None else None,
          "cpu_count": os.cpu_count(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
          "openblas_num_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
          "openblas_thread_timeout": os.environ.get("OPENBLAS_THREAD_TIMEOUT")})
    batches = []
    ids, info = imdb_batch()
    if ids is None:
        emit({"bench": BENCH, "kind": "note", "batch": "imdb_64x200", "note": info})
    else:
        emit({"bench": BENCH, "kind": "batch", "batch": "imdb_64x200", "shape": list(ids.shape), **info})
        batches.append(("imdb_64x200", ids))
    batches.append(("random_12800", random_batch(12800, seed=1)))
    batches.append(("random_4096", random_batch(4096, seed=2)))
    results = []
    for batch, b_ids in batches:
        run_batch(batch, b_ids, torch, memory=not args.no_memory, results=results, rounds=args.rounds,
                  reps=args.reps)
    ratio_rows(results)
    if not args.no_profile and batches[0][0] == "imdb_64x200":
        profile_auto(batches[0][1])


if __name__ == "__main__":
    main()
