"""Sentiment classification with dense vs TT embeddings (SST-2, SST-5 or IMDB; LSTM and MLP).

What it shows: for each model (an LSTM classifier and an MLP over mean-pooled embeddings)
the same network is trained with a dense embedding and with a TT embedding (the paper's
automatic shapes, rank 16); the table gives embedding parameters, compression, total
parameters, validation and test accuracy (test at the best-validation epoch) and time.

Runtime with the defaults (SST-2, 3 epochs, 4 runs) on a 2-core CPU: about 1 minute
(2 epochs took 31 s in total).
IMDB is much longer (25k reviews of up to 256 tokens): use ``--max-train`` to subsample.

    export TINYTT_DATA=/work/shared/data
    python examples/sentiment.py                       # SST-2
    python examples/sentiment.py --dataset sst5 --epochs 3
    python examples/sentiment.py --dataset imdb --models lstm --max-train 5000
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_data_args, missing_data, table  # noqa: E402

from tinytt.train import load_classification, train_classifier  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", choices=("sst2", "sst5", "imdb", "mr"), default="sst2")
    p.add_argument("--models", default="lstm,mlp", help="comma list of lstm, bilstm, mlp")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--emb-dim", type=int, default=128)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--max-len", type=int, default=256)
    p.add_argument("--vocab-size", type=int, default=25000)
    p.add_argument("--max-train", type=int, default=None, help="subsample the training set")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    add_data_args(p)
    args = p.parse_args(argv)
    try:
        data, vocab, num_classes = load_classification(args.dataset, args.data_dir, args.vocab_size, args.max_len,
                                                       seed=args.seed, max_train=args.max_train)
    except FileNotFoundError as exc:
        missing_data(exc)
    print(f"{args.dataset}: {len(data['train'])} train / {len(data['valid'])} valid / {len(data['test'])} test, "
          f"vocabulary {len(vocab)}, {num_classes} classes", flush=True)
    rows = []
    for kind in args.models.split(","):
        for emb in ("dense", "tt"):
            cfg = {"model": kind, "readout": "mean", "embedding": emb, "emb_dim": args.emb_dim,
                   "hidden": args.hidden, "rank": args.rank, "dropout": 0.5}
            print(f"-- {kind} + {emb}", flush=True)
            r = train_classifier(cfg, data, vocab, num_classes, epochs=args.epochs, lr=args.lr, seed=args.seed,
                                 log=print)
            rows.append([f"{kind} {emb}", f"{r['embedding_parameters']:,}", f"{r['compression']:.1f}x",
                         f"{r['total_parameters']:,}", f"{r['valid_accuracy']:.4f}", f"{r['test_accuracy']:.4f}",
                         r["best_epoch"], f"{r['seconds']:.0f}"])
    print()
    print(table(rows, ["model", "emb. params", "compression", "total params", "valid acc", "test acc",
                       "best epoch", "time s"]))


if __name__ == "__main__":
    main()
