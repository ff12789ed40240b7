"""LSTM fed by an embedding lookup: the gathered-input path on and off, same models, same process.

When an LSTM layer's input is an embedding lookup's output and the batch has few distinct ids,
``tinytt.nn.lstm`` projects the distinct rows only and gets ``dW_ih`` and the table's gradient
from per-row sums of ``dz`` (``_GatheredInput``, docs/autodiff.md). This script times whole
training steps of the ``benchmarks/train_step.py`` LSTM models (embedding -> LSTM(256, 128) ->
head, Adam, 64 x 200 tokens) with the path allowed (``GATHERED_MAX_FRACTION`` at its default)
and switched off (0.0), interleaved (``_common.time_interleaved``), on batches with different
numbers of distinct ids: the IMDB batch of ``benchmarks/lookup.py`` (real text, needs
``$TINYTT_DATA``) and uniform ids over vocabularies of V words (``rand:V``). The ratio
``on/off`` says what the path buys; ``distinct_per_position`` against the default fraction
shows where it is taken (above it, "on" runs the dense path too and the ratio is ~1).

    TINYTT_DATA=../shared/data python benchmarks/lstm_gathered_input.py
    python benchmarks/lstm_gathered_input.py --batches rand:5000,rand:8000 --force
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tinytt as tt  # noqa: E402  (before NumPy: its OpenBLAS settings)
import numpy  # noqa: E402
from tinytt.nn import lstm as lstm_mod  # noqa: E402
from _common import add_common_args, configure, emit, time_interleaved  # noqa: E402
import train_step  # noqa: E402

BENCH = "lstm_gathered_input"


def batch_ids(spec: str):
    """(64, 200) int64 ids for ``imdb`` or ``rand:V``, or None (with a note) when unavailable."""
    if spec == "imdb":
        from lookup import imdb_batch  # noqa: PLC0415

        ids, info = imdb_batch()
        return ids, (info if ids is None else None)
    if spec.startswith("rand:"):
        vocab = int(spec.split(":", 1)[1])
        if not 1 <= vocab <= train_step.V:
            raise SystemExit(f"--batches: rand:V needs 1 <= V <= {train_step.V}, got {spec!r}")
        rng = numpy.random.default_rng(0)
        return rng.integers(0, vocab, size=(train_step.B, train_step.T)).astype(numpy.int64), None
    raise SystemExit(f"--batches: expected 'imdb' or 'rand:V', got {spec!r}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser)
    parser.add_argument("--batches", default="imdb,rand:5000,rand:8000,rand:30000",
                        help="comma-separated: imdb and/or rand:V (default: %(default)s)")
    parser.add_argument("--models", default="lstm-final,lstm-mean")
    parser.add_argument("--embeddings", default="dense,tt")
    parser.add_argument("--force", action="store_true",
                        help="'on' allows the path at any number of distinct ids (fraction 1.0), "
                             "to measure it where the default threshold would not take it")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.reps < 1:
        parser.error("--rounds and --reps must be at least 1")
    for flag, value, allowed in (("--models", args.models, ("lstm-final", "lstm-mean")),
                                 ("--embeddings", args.embeddings, ("dense", "tt"))):
        unknown = sorted(set(value.split(",")) - set(allowed))
        if unknown:
            parser.error(f"{flag}: unknown {', '.join(unknown)} (choose from {', '.join(allowed)})")
    configure(args)
    tt.allocator.keep_freed_memory()
    default = lstm_mod.GATHERED_MAX_FRACTION
    on = 1.0 if args.force else default
    y = numpy.random.default_rng(0).integers(0, train_step.C, size=train_step.B).astype(numpy.int64)
    for spec in args.batches.split(","):
        ids, note = batch_ids(spec)
        if ids is None:
            emit({"bench": BENCH, "kind": "note", "batch": spec, "note": note})
            continue
        distinct = int(numpy.unique(ids).shape[0])
        for model in args.models.split(","):
            for kind in args.embeddings.split(","):
                step, _, _ = train_step.tinytt_step_fn(model, kind, ids, y)

                def allow(fraction):
                    return lambda: setattr(lstm_mod, "GATHERED_MAX_FRACTION", fraction)

                try:
                    res = time_interleaved({"on": (step, allow(on)), "off": (step, allow(0.0))},
                                           rounds=args.rounds, reps=args.reps)
                finally:
                    lstm_mod.GATHERED_MAX_FRACTION = default
                emit({"bench": BENCH, "kind": "ab", "batch": spec, "distinct_ids": distinct,
                      "distinct_per_position": round(distinct / ids.size, 3), "fraction_on": on,
                      "model": model, "embedding": kind,
                      "on_s": round(res["on"]["median_s"], 4), "off_s": round(res["off"]["median_s"], 4),
                      "on_over_off": round(res["on"]["median_s"] / res["off"]["median_s"], 3),
                      "on_over_off_by_round": [round(a / b, 3) for a, b in
                                               zip(res["on"]["round_medians_s"], res["off"]["round_medians_s"])]})


if __name__ == "__main__":
    main()
