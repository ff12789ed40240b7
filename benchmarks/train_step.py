"""Training-step benchmark: tinytt against PyTorch (when importable) on the same models.

Models (float32, batch 64 x 200 tokens, vocabulary 30000, Adam lr 1e-3, cross-entropy, 2 classes):

- ``lstm-final``: Embedding(30000, 256) -> LSTM(256, 128) -> final hidden state -> Linear(128, 2)
- ``lstm-mean``:  Embedding(30000, 256) -> LSTM(256, 128) -> mean of outputs over time -> Linear(128, 2)
- ``mlp``:        Embedding(30000, 256) -> mean over time -> Linear(256, 128) -> ReLU -> Linear(128, 2)

each with a dense embedding and a TT embedding of rank 16 (``nn.TTEmbedding(30000, 256, rank=16)``,
shape (25, 30, 40) x (4, 8, 8)). A step is zero_grad + forward + backward + optimizer step;
every step reuses one batch, so tinytt's lookup-plan cache is cleared first in each step (a
training step plans a new batch; PyTorch's dedup lookup also runs ``torch.unique`` each step).
PyTorch runs the same models in the same process with ``nn.Embedding`` and with three TT
embeddings built from the same cores: ``tt-partial`` (cores 1-2 contracted for every (i1, i2)
pair, then one gather and one ``bmm`` per token), ``tt-partial-dedup`` (the same on the
distinct ids only, then spread out: the fastest PyTorch TT lookup on real text in
``benchmarks/lookup.py``) and ``tt-full`` (the whole table from the cores, then indexing: what
the paper's layer does). PyTorch's optimizer is ``Adam(fused=True)``, its fastest CPU
implementation (``--torch-adam default`` for the for-loop one; session 5 on, after an audit
measured it 3x faster than the default on the 7.7 M-parameter dense embedding). Reported: the median of N timed steps after warm-up, one JSON object
per line, plus the LSTM "GEMM floor" (the time NumPy's BLAS needs for just the matrix products
of one LSTM forward + backward, measured in the same run) and the ratios to it, to PyTorch's
dense model, and to PyTorch's fastest formulation with the same kind of embedding
(``ratio_to_torch_fastest``: for LSTMs the faster of the final/mean readouts, for TT the
fastest of the TT lookups), and to PyTorch's same model (``ratio_to_torch_same_model``: the
same readout and kind of embedding; for TT the fastest PyTorch TT lookup).

Timing is interleaved: every model is built first, then each of ``--rounds`` rounds (default 3)
times every model in turn (1 warm-up step, ``--reps`` timed steps; the order reverses each round)
and measures the GEMM floor again, so a slow drift of the machine's speed hits tinytt and
PyTorch alike. Medians pool all rounds; ``ratio_to_torch_fastest_by_round`` gives the same
ratio per round (its spread shows how far one run's noise moves the ratio).

Memory: like the ``tinytt`` command, the benchmark first calls
``tinytt.allocator.keep_freed_memory()`` (session 6 on), so steady-state steps reuse mapped heap
pages instead of faulting ~7,000 fresh pages per LSTM step (~30 ms here); PyTorch in the same
process gets the same setting. ``--glibc-default-malloc`` skips it.

    python benchmarks/train_step.py            # full run (3 rounds x 3 timed steps)
    python benchmarks/train_step.py --quick    # one round of 3 timed steps
    TINYTT_DATA=../shared/data python benchmarks/train_step.py --ids imdb   # a real-text batch
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import tinytt as tt  # noqa: E402  (before NumPy: its OpenBLAS settings, tinytt/_openblas.py)
import numpy  # noqa: E402
import tinytt.optim  # noqa: E402,F401
from tinytt import nn  # noqa: E402
from tinytt.tt.lookup import plan_cache_clear  # noqa: E402
from _common import malloc_mode, usable_cpus  # noqa: E402

B, T, V, D, H, C = 64, 200, 30000, 256, 128, 2
_OUT = [None]


def _emit(row: dict) -> None:
    """Print one JSON line; also append it to the --out file when given."""
    line = json.dumps(row)
    print(line, flush=True)
    if _OUT[0]:
        with open(_OUT[0], "a", encoding="utf-8") as f:
            f.write(line + "\n")


def _median_time(step, warmup: int, reps: int) -> tuple:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        step()
        tt.backend.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times), times


# --- tinytt models ---------------------------------------------------------------------------------
class LSTMClassifier(nn.Module):
    def __init__(self, emb, readout):
        self.emb = emb
        self.lstm = nn.LSTM(D, H, seed=1)
        self.head = nn.Linear(H, C, seed=2)
        self.readout = readout

    def forward(self, ids):
        out, (h, _) = self.lstm(self.emb(ids))
        feats = h[0] if self.readout == "final" else out.mean(axis=1)
        return self.head(feats)


class MLPClassifier(nn.Module):
    def __init__(self, emb):
        self.emb = emb
        self.fc1 = nn.Linear(D, H, seed=1)
        self.fc2 = nn.Linear(H, C, seed=2)

    def forward(self, ids):
        return self.fc2(tt.relu(self.fc1(self.emb(ids).mean(axis=1))))


def make_embedding(kind: str):
    if kind == "dense":
        return nn.Embedding(V, D, seed=0)
    return nn.TTEmbedding(V, D, rank=16, seed=0)


def tinytt_step_fn(model_name: str, emb_kind: str, ids, y):
    emb = make_embedding(emb_kind)
    if model_name == "mlp":
        model = MLPClassifier(emb)
    else:
        model = LSTMClassifier(emb, model_name.split("-")[1])
    opt = tt.optim.Adam(model.parameters(), lr=1e-3)
    ids_d, y_d = tt.to_device(ids), tt.to_device(y)
    losses = []

    def step():
        # every step of real training has a new batch: no lookup plan from the step before
        plan_cache_clear()
        opt.zero_grad()
        loss = tt.cross_entropy(model(ids_d), y_d)
        loss.backward()
        opt.step()
        losses.append(loss.item())

    return step, losses, sum(p.size for p in model.parameters())


# --- PyTorch models ------------------------------------------------------------------------------------
TORCH_EMBEDDINGS = ("dense", "tt-partial", "tt-partial-dedup", "tt-full")


def torch_tt_embedding(torch, variant: str):
    """A PyTorch module looking up rows of tinytt's rank-16 TT embedding (same cores, 3 cores):
    the TT lookups of ``benchmarks/lookup.py`` (``torch_tt_forward``) on trainable cores."""
    from lookup import COL_SHAPE, ROW_SHAPE, torch_tt_forward  # noqa: PLC0415

    layer = make_embedding("tt")
    assert (layer.row_shape, layer.col_shape) == (ROW_SHAPE, COL_SHAPE), "lookup.py's TT shape"

    class TorchTTEmbedding(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.cores = torch.nn.ParameterList(
                [torch.nn.Parameter(torch.tensor(tt.to_numpy(c.data))) for c in layer.cores])

        def forward(self, ids):
            return torch_tt_forward(torch, "torch-" + variant, list(self.cores), ids)

    return TorchTTEmbedding()


def check_torch_tt(torch, ids) -> None:
    """Emit the relative error of each PyTorch TT lookup against tinytt's rows for ``ids``."""
    want = tt.to_numpy(make_embedding("tt")(tt.to_device(ids)).data)
    for variant in TORCH_EMBEDDINGS[1:]:
        got = torch_tt_embedding(torch, variant)(torch.from_numpy(ids)).detach().numpy()
        err = float(numpy.linalg.norm(got - want) / numpy.linalg.norm(want))
        _emit({"what": "check", "embedding": variant, "rel_error_vs_tinytt": err, "ok": err <= 1e-4})


def torch_step_fn(model_name: str, ids, y, emb_kind: str = "dense", fused_adam: bool = True):
    import torch  # noqa: PLC0415

    torch.manual_seed(0)

    def embedding():
        return torch.nn.Embedding(V, D) if emb_kind == "dense" else torch_tt_embedding(torch, emb_kind)

    class TorchLSTM(torch.nn.Module):
        def __init__(self, readout):
            super().__init__()
            self.emb = embedding()
            self.lstm = torch.nn.LSTM(D, H, batch_first=True)
            self.head = torch.nn.Linear(H, C)
            self.readout = readout

        def forward(self, ids):
            out, (h, _) = self.lstm(self.emb(ids))
            return self.head(h[0] if self.readout == "final" else out.mean(dim=1))

    class TorchMLP(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = embedding()
            self.fc1 = torch.nn.Linear(D, H)
            self.fc2 = torch.nn.Linear(H, C)

        def forward(self, ids):
            return self.fc2(torch.relu(self.fc1(self.emb(ids).mean(dim=1))))

    model = TorchMLP() if model_name == "mlp" else TorchLSTM(model_name.split("-")[1])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=fused_adam)
    ids_t, y_t = torch.from_numpy(ids), torch.from_numpy(y)
    losses = []

    def step():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(ids_t), y_t)
        loss.backward()
        opt.step()
        losses.append(loss.item())

    return step


# --- GEMM floor ------------------------------------------------------------------------------------------
def gemm_floor(reps: int) -> float:
    """Seconds NumPy needs for the matrix products of one LSTM(256,128) forward + backward
    at (64, 200): input projection, per-step recurrence (forward and backward), dx, dW_ih, dW_hh."""
    rng = numpy.random.default_rng(0)
    f32 = numpy.float32
    x = rng.standard_normal((B * T, D)).astype(f32)
    w_ih = rng.standard_normal((D, 4 * H)).astype(f32)
    w_hh = rng.standard_normal((H, 4 * H)).astype(f32)
    dz = rng.standard_normal((B * T, 4 * H)).astype(f32)
    hs = rng.standard_normal((B * T, H)).astype(f32)
    h = rng.standard_normal((B, H)).astype(f32)
    z = rng.standard_normal((B, 4 * H)).astype(f32)   # one step of the backward's dz (defined
    # values: an uninitialised buffer may hold denormals or NaN, which can slow the product)
    dh = numpy.empty((B, H), f32)
    w_hh_t = numpy.ascontiguousarray(w_hh.T)

    # the forward's per-step product in its faster layout: (4H, H) @ (H, B), i.e. z^T, runs
    # ~2.8x faster in NumPy's OpenBLAS on 2 threads than (B, H) @ (H, 4H) (124 vs 343 us
    # measured here in session 7; the floor was ~45 ms higher with the slow layout)
    h_t = numpy.ascontiguousarray(h.T)
    z_t = numpy.empty((4 * H, B), f32)

    def run():
        x @ w_ih
        for t in range(T):
            numpy.matmul(w_hh_t, h_t, out=z_t)
        for t in range(T):
            numpy.matmul(z, w_hh_t, out=dh)
        dz @ w_ih.T
        x.T @ dz
        hs.T @ dz

    return _median_time(run, 1, reps)[0]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one round of 1 warm-up and 3 timed steps")
    parser.add_argument("--reps", type=int, default=None, help="timed steps per model and round (default 3)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="rounds (default 3): each round times every model in turn, so slow "
                             "drifts of the machine hit tinytt and PyTorch alike")
    parser.add_argument("--models", default="lstm-final,lstm-mean,mlp")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch baselines")
    parser.add_argument("--torch-adam", choices=("fused", "default"), default="fused",
                        help="PyTorch's Adam implementation: fused=True (its fastest on CPU, the default "
                             "since session 5) or the default for-loop one")
    parser.add_argument("--out", metavar="FILE", default=None, help="also append the JSON lines to FILE")
    parser.add_argument("--glibc-default-malloc", action="store_true",
                        help="leave glibc's malloc settings alone; by default the benchmark calls "
                             "tinytt.allocator.keep_freed_memory() first, as the tinytt command does "
                             "(freed heap pages stay mapped: no page faults in steady state; PyTorch "
                             "in this process gets the same setting)")
    parser.add_argument("--ids", choices=("random", "imdb"), default="random",
                        help="the batch: uniform random ids over the 30,000-word vocabulary (default; "
                             "~10,400 distinct of 12,800) or 64 seeded IMDB training reviews cut or "
                             "padded to 200 tokens, 25,000 most frequent words (real text: 2,351 "
                             "distinct ids; needs $TINYTT_DATA, as benchmarks/lookup.py)")
    parser.add_argument("--keep-freed-memory", action="store_true", help=argparse.SUPPRESS)  # the default now
    args = parser.parse_args(argv)
    _OUT[0] = args.out
    if not args.glibc_default_malloc:
        tt.allocator.keep_freed_memory()
    warmup, reps, rounds = (1, 3, 1) if args.quick else (2, 3, 3)
    if args.reps:
        reps = args.reps
    if args.rounds:
        rounds = args.rounds
    if reps < 1 or rounds < 1:
        parser.error("--reps and --rounds must be at least 1")
    unknown = sorted(set(args.models.split(",")) - {"lstm-final", "lstm-mean", "mlp"})
    if unknown:
        parser.error(f"--models: unknown {', '.join(unknown)} (choose from lstm-final, lstm-mean, mlp)")
    rng = numpy.random.default_rng(0)
    ids = rng.integers(0, V, size=(B, T)).astype(numpy.int64)
    y = rng.integers(0, C, size=B).astype(numpy.int64)
    batch_info = {"ids": "random"}
    if args.ids == "imdb":
        from lookup import imdb_batch  # noqa: PLC0415

        ids, info = imdb_batch()
        if ids is None:
            parser.error(info)
        batch_info = {"ids": "imdb", **info}
    batch_info["distinct_ids"] = int(numpy.unique(ids).shape[0])
    try:
        if args.no_torch:
            raise ImportError
        import torch  # noqa: PLC0415

        torch.set_num_threads(int(os.environ.get("TORCH_THREADS", usable_cpus())))
        torch_version = torch.__version__
    except ImportError:
        torch = None
        torch_version = None
    emb_kinds = ["dense"] + (["tt"] if hasattr(nn, "TTEmbedding") else [])
    env = {"what": "env", "machine": platform.machine(), "cpus": os.cpu_count(),
           "numpy": numpy.__version__, "torch": torch_version, "backend": tt.get_backend(),
           "malloc": malloc_mode(),
           "openblas_thread_timeout": os.environ.get("OPENBLAS_THREAD_TIMEOUT"),
           "batch": B, "time": T, "vocab": V, "dim": D, "hidden": H, "warmup": warmup, "reps": reps,
           "rounds": rounds, "torch_threads": torch.get_num_threads() if torch is not None else None,
           "torch_adam": args.torch_adam if torch is not None else None, **batch_info}
    _emit(env)
    if torch is not None and "tt" in emb_kinds:
        check_torch_tt(torch, ids)
    models = args.models.split(",")
    variants = []  # (impl, model, embedding, step, losses, n_params), PyTorch first within a model
    for model_name in models:
        for emb_kind in (TORCH_EMBEDDINGS if "tt" in emb_kinds else ("dense",)) if torch is not None else ():
            variants.append(("torch", model_name, emb_kind, torch_step_fn(model_name, ids, y, emb_kind,
                                                                       args.torch_adam == "fused"), None, None))
        for emb_kind in emb_kinds:
            variants.append(("tinytt", model_name, emb_kind) + tuple(tinytt_step_fn(model_name, emb_kind, ids, y)))
    times = {v[:3]: [] for v in variants}        # every timed step of each variant, all rounds
    round_medians = {v[:3]: [] for v in variants}
    floor_times = []
    for r in range(rounds):
        floor_times.append(gemm_floor(max(3, reps // 2)))
        # alternate the order each round, so no variant always runs right after the same one
        for impl, model_name, emb_kind, step, _, _ in (variants if r % 2 == 0 else variants[::-1]):
            _, _, block = _median_time(step, warmup if r == 0 else 1, reps)
            times[impl, model_name, emb_kind].extend(block)
            round_medians[impl, model_name, emb_kind].append(statistics.median(block))
    floor = statistics.median(floor_times)
    _emit({"what": "lstm_gemm_floor", "median_s": round(floor, 4),
           "round_medians_s": [round(t, 4) for t in floor_times]})

    def fastest_torch(model_name, emb_kind, per_round=None, same_readout=False):
        """PyTorch's fastest median for the same model family (LSTMs: either readout, or only
        ``model_name``'s with ``same_readout``) and the same kind of embedding (TT: either TT
        lookup) -- over all rounds, or in round ``per_round`` -- or None without PyTorch."""
        family = model_name if same_readout or not model_name.startswith("lstm") else "lstm"
        found = [statistics.median(t) if per_round is None else round_medians[key][per_round]
                 for key, t in times.items()
                 if key[0] == "torch" and key[1].startswith(family) and (key[2] == "dense") == (emb_kind == "dense")]
        return min(found) if found else None

    for impl, model_name, emb_kind, _, losses, n_params in variants:
        key = (impl, model_name, emb_kind)
        med = statistics.median(times[key])
        row = {"what": "train_step", "impl": impl, "model": model_name, "embedding": emb_kind,
               "median_s": round(med, 4), "min_s": round(min(times[key]), 4),
               "round_medians_s": [round(t, 4) for t in round_medians[key]],
               "tokens_per_s": round(B * T / med)}
        if impl == "tinytt":
            row.update(params=int(n_params), loss_first=round(losses[0], 4), loss_last=round(losses[-1], 4))
            if model_name.startswith("lstm"):
                row["ratio_to_gemm_floor"] = round(med / floor, 3)
            if torch is not None:
                row["ratio_to_torch_dense"] = round(med / statistics.median(times["torch", model_name, "dense"]), 3)
                # the same model (readout and kind of embedding; TT: PyTorch's fastest TT lookup)
                row["ratio_to_torch_same_model"] = round(med / fastest_torch(model_name, emb_kind, same_readout=True), 3)
                row["ratio_to_torch_fastest"] = round(med / fastest_torch(model_name, emb_kind), 3)
                per_round = [round_medians[key][i] / fastest_torch(model_name, emb_kind, i) for i in range(rounds)]
                row["ratio_to_torch_fastest_by_round"] = [round(x, 3) for x in per_round]
        _emit(row)

if __name__ == "__main__":
    main()
