"""Per-epoch training time of the IMDB model of docs/reproduction.md: tinytt against PyTorch.

The model of the issue's time-to-accuracy target: Embedding(25000, 256) (dense, or TT
(25,30,40)x(4,8,8) rank 16) -> 1-layer BiLSTM(256 -> 128) -> readout -> Dropout(0.5) ->
Linear(256, 2), Adam 1e-3, batch 64 x 256 tokens (every row full length: the upper bound of
a bucketed IMDB epoch, where most reviews are cut at 256 tokens). Readouts: the mean of the
outputs over time, and the final states of both directions. PyTorch runs the same models in
the same process (dense embedding; its TT variants are in benchmarks/lookup.py).

A training step is zero_grad + forward + backward + Adam step; the script reports the median
step time and the epoch time it implies for IMDB's 25,000 training reviews (391 steps) and
for the 22,500 left after a 10 % validation split (352 steps, what ``tinytt train`` uses).

    python benchmarks/epoch_time.py [--quick] [--out FILE]
    TINYTT_DATA=../shared/data python benchmarks/epoch_time.py --quick --imdb-batches 8

With ``--imdb-batches K`` (needs ``$TINYTT_DATA/imdb``) the script also estimates the epoch
``tinytt train`` really runs: IMDB tokenized and encoded as ``tinytt train --dataset imdb
--max-len 256`` does, batches bucketed by length (``ClassificationTask``, seed 0), K of them
timed at evenly spaced quantiles of their length, a line ``time = a + b * length`` fitted to
those, and summed over every batch of the epoch. PyTorch's figure in the same run is its
full-length step times the number of batches: the anchor protocol
(``../shared/research/imdb_torch_anchor.md``) pads every review to 256 tokens and runs the
mean readout without packing.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import tinytt as tt  # noqa: E402  (before NumPy: its OpenBLAS settings, tinytt/_openblas.py)
import numpy  # noqa: E402
import tinytt.optim  # noqa: E402,F401
from tinytt.models import build_model  # noqa: E402

from _common import add_common_args, configure, emit, time_call, usable_cpus  # noqa: E402

BENCH = "epoch_time"
B, T, V, D, H, C = 64, 256, 25000, 256, 128, 2
STEPS = {"imdb_25000": math.ceil(25000 / B), "imdb_22500": math.ceil(22500 / B)}


def tinytt_model(embedding: str, readout: str):
    """The benchmarked classifier through ``build_model`` (the CLI's configuration keys)."""
    config = dict(task="classify", model="bilstm", readout=readout, embedding=embedding,
                  tt_shape="25,30,40x4,8,8" if embedding == "tt" else None, rank=16,
                  emb_dim=D, hidden=H, layers=1, dropout=0.5, seed=0)
    return build_model(config, V, C)


def tinytt_step(embedding: str, readout: str, ids, y):
    model = tinytt_model(embedding, readout)
    model.train()
    opt = tt.optim.Adam(model.parameters(), lr=1e-3)
    ids_d, y_d = tt.to_device(ids), tt.to_device(y)

    def step():
        opt.zero_grad()
        loss = tt.cross_entropy(model(ids_d), y_d)
        loss.backward()
        opt.step()

    return step


def torch_step(readout: str, ids, y):
    import torch  # noqa: PLC0415

    torch.manual_seed(0)

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(V, D, padding_idx=0)
            self.lstm = torch.nn.LSTM(D, H, batch_first=True, bidirectional=True)
            self.drop = torch.nn.Dropout(0.5)
            self.fc = torch.nn.Linear(2 * H, C)

        def forward(self, x):
            out, (h, _) = self.lstm(self.emb(x))
            feats = out.mean(dim=1) if readout == "mean" else torch.cat([h[-2], h[-1]], dim=-1)
            return self.fc(self.drop(feats))

    model = Model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)  # PyTorch's fastest CPU Adam
    ids_t, y_t = torch.from_numpy(ids), torch.from_numpy(y)

    def step():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(ids_t), y_t).backward()
        opt.step()

    return step


def bucketed_epoch(k: int, embeddings=("dense", "tt")) -> list:
    """Estimated seconds of one real ``tinytt train`` IMDB epoch per embedding (see module doc)."""
    from tinytt.train import ClassificationTask, load_classification  # noqa: PLC0415

    data, _, _ = load_classification("imdb", None, vocab_size=V, max_len=T, seed=0)
    task = ClassificationTask(data, batch_size=B, seed=0, show_progress=False)
    order = task.batch_order(1)
    train = data["train"]
    lengths = numpy.array([int(train.lengths[idx].max()) for idx in order])
    picks = numpy.argsort(lengths, kind="stable")[numpy.linspace(0, len(order) - 1, k).round().astype(int)]
    rows = []
    for embedding in embeddings:
        model = tinytt_model(embedding, "mean")
        model.train()
        opt = tt.optim.Adam(model.parameters(), lr=1e-3)
        times = []
        for j, pick in enumerate([picks[-1]] + list(picks)):  # the first call warms up
            ids, lens, labels = train.batch(order[pick])
            ids_d, labels_d = tt.to_device(ids), tt.to_device(labels)
            t0 = time.perf_counter()
            opt.zero_grad()
            loss = tt.cross_entropy(model(ids_d, lens), labels_d)
            loss.backward()
            opt.step()
            tt.backend.synchronize()
            if j:
                times.append(time.perf_counter() - t0)
        fit_b, fit_a = numpy.polyfit(lengths[picks], times, 1)
        estimate = float(numpy.sum(fit_a + fit_b * lengths))
        rows.append({"bench": BENCH, "impl": "tinytt", "kind": "bucketed_epoch", "embedding": embedding,
                     "readout": "mean", "batches": len(order), "timed_batches": k,
                     "mean_batch_tokens": float(lengths.mean()), "epoch_s_estimate": estimate,
                     "fit_s_per_step_at_256": float(fit_a + fit_b * T)})
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser)
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch baselines")
    parser.add_argument("--imdb-batches", type=int, default=0, metavar="K",
                        help="also estimate the real bucketed IMDB epoch from K timed batches (needs TINYTT_DATA)")
    args = parser.parse_args(argv)
    if args.imdb_batches and args.imdb_batches < 2:
        parser.error("--imdb-batches must be at least 2 (a line is fitted)")
    imdb_dir = os.path.join(os.environ.get("TINYTT_DATA", ""), "imdb")
    if args.imdb_batches and not (os.environ.get("TINYTT_DATA") and os.path.isdir(imdb_dir)):
        parser.error(f"--imdb-batches needs the IMDB data under $TINYTT_DATA/imdb (looked for {imdb_dir!r})")
    configure(args)
    # freed heap pages stay mapped, as in `tinytt train` (cli.py) and train_step.py
    tt.allocator.keep_freed_memory()
    rng = numpy.random.default_rng(0)
    ids = rng.integers(2, V, size=(B, T)).astype(numpy.int64)
    y = rng.integers(0, C, size=B).astype(numpy.int64)
    reps = dict(warmup=1, min_repeats=3, max_repeats=5, budget_s=5.0) if args.quick else \
        dict(warmup=1, min_repeats=5, max_repeats=9, budget_s=15.0)
    torch = None
    if not args.no_torch:
        try:
            import torch  # noqa: PLC0415

            torch.set_num_threads(int(os.environ.get("TORCH_THREADS", usable_cpus())))
        except ImportError:
            emit({"bench": BENCH, "kind": "note", "note": "torch not importable: no PyTorch baseline"})
    emit({"bench": BENCH, "kind": "setup", "batch": B, "tokens": T, "vocab": V, "dim": D, "hidden": H,
          "numpy": numpy.__version__, "torch": getattr(torch, "__version__", None), "cpu_count": os.cpu_count(),
          "torch_threads": torch.get_num_threads() if torch is not None else None,
          "torch_adam": "fused" if torch is not None else None,
          "steps_per_epoch": STEPS, "openblas_thread_timeout": os.environ.get("OPENBLAS_THREAD_TIMEOUT")})
    torch_best = torch_mean = None
    if torch is not None:
        for readout in ("mean", "final"):
            r = time_call(torch_step(readout, ids, y), **reps)
            med, best, n = r["median_s"], r["min_s"], r["repeats"]
            torch_best = med if torch_best is None else min(torch_best, med)
            if readout == "mean":
                torch_mean = med
            emit({"bench": BENCH, "impl": "torch", "embedding": "dense", "readout": readout, "step_median_s": med,
                  "step_min_s": best, "repeats": n, **{f"epoch_s_{k}": med * s for k, s in STEPS.items()}})
    for embedding in ("dense", "tt"):
        for readout in ("mean", "final"):
            r = time_call(tinytt_step(embedding, readout, ids, y), **reps)
            med, best, n = r["median_s"], r["min_s"], r["repeats"]
            row = {"bench": BENCH, "impl": "tinytt", "embedding": embedding, "readout": readout,
                   "step_median_s": med, "step_min_s": best, "repeats": n,
                   **{f"epoch_s_{k}": med * s for k, s in STEPS.items()}}
            if torch_best is not None:
                row["ratio_to_torch_fastest"] = med / torch_best
            emit(row)
    if args.imdb_batches:
        for row in bucketed_epoch(args.imdb_batches):
            if torch_mean is not None:
                # NOT equal work: tinytt runs length-bucketed batches, PyTorch is charged its
                # full-length (256-token) step for every batch; PyTorch could bucket too (its
                # step time is nearly linear in the length), so this ratio flatters tinytt
                row["torch_full_length_epoch_s_same_run"] = torch_mean * row["batches"]
                row["ratio_to_torch_full_length_epoch"] = (row["epoch_s_estimate"]
                                                           / row["torch_full_length_epoch_s_same_run"])
            emit(row)


if __name__ == "__main__":
    main()
