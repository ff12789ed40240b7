"""Shared bits of the example scripts: data-directory option and a friendly exit when data is absent."""

import os
import sys


def add_data_args(parser):
    parser.add_argument("--data-dir", default=None,
                        help="data root holding sst2/, sst5/, imdb/, ptb/ (default: $TINYTT_DATA)")


def add_sweep_args(parser, ranks: str):
    """Options shared by the rank-sweep examples (compress_pretrained, tradeoff_plot)."""
    parser.add_argument("--dataset", choices=("sst2", "sst5", "mr", "imdb"), default="sst2")
    parser.add_argument("--model", choices=("mlp", "lstm", "bilstm"), default="mlp")
    parser.add_argument("--ranks", default=ranks)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--emb-dim", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--max-train", type=int, default=None)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    add_data_args(parser)


def load_sweep(args):
    """``(data, vocab, num_classes, base_config)`` for the options of :func:`add_sweep_args`
    (exits with a hint when the dataset is missing)."""
    from tinytt.train import load_classification

    try:
        data, vocab, num_classes = load_classification(args.dataset, args.data_dir, 25000, 256, seed=args.seed,
                                                       max_train=args.max_train)
    except FileNotFoundError as exc:
        missing_data(exc)
    base = {"model": args.model, "readout": "mean", "emb_dim": args.emb_dim, "hidden": args.hidden, "dropout": 0.5}
    return data, vocab, num_classes, base


def missing_data(exc):
    """Print why the data could not be found and exit with status 2."""
    print(f"error: {exc}\n\nThe example needs the dataset files. Point TINYTT_DATA (or --data-dir) at a directory "
          f"laid out like /work/shared/data, e.g.\n  export TINYTT_DATA=/work/shared/data", file=sys.stderr)
    sys.exit(2)


def table(rows, headers):
    cols = [[h] + [str(r[i]) for r in rows] for i, h in enumerate(headers)]
    widths = [max(len(c) for c in col) for col in cols]
    fmt = lambda r: "  ".join(str(v).ljust(w) if i == 0 else str(v).rjust(w)  # noqa: E731
                              for i, (v, w) in enumerate(zip(r, widths)))
    return "\n".join([fmt(headers), "  ".join("-" * w for w in widths)] + [fmt(r) for r in rows])


def data_env_hint():
    return os.environ.get("TINYTT_DATA")
