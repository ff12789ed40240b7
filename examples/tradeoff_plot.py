"""Compression vs accuracy: sweep the TT rank and plot test accuracy against compression.

What it shows: one classifier (MLP over mean-pooled embeddings by default; ``--model lstm``
for the LSTM) trained with a dense embedding and with TT embeddings of ranks 1..32; it
writes ``tradeoff.png`` (compression on a log axis vs test accuracy, dense as a
horizontal line) when matplotlib is installed and always prints the table.

Runtime with the defaults (SST-2, MLP, 2 epochs, 7 runs) on a 2-core CPU: under a minute (about
15 s); ``--model lstm`` takes a few minutes.

    export TINYTT_DATA=/work/shared/data
    python examples/tradeoff_plot.py
    python examples/tradeoff_plot.py --model lstm --ranks 2,8,32 --out lstm_tradeoff.png
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_sweep_args, load_sweep, table  # noqa: E402

from tinytt.train import train_classifier  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_sweep_args(p, ranks="1,2,4,8,16,32")
    p.add_argument("--out", default="tradeoff.png")
    args = p.parse_args(argv)
    data, vocab, num_classes, base = load_sweep(args)
    results = []
    for emb, rank in [("dense", None)] + [("tt", int(r)) for r in args.ranks.split(",") if r]:
        print(f"-- {emb}" + (f" rank {rank}" if rank else ""), flush=True)
        r = train_classifier(dict(base, embedding=emb, rank=rank or 16), data, vocab, num_classes,
                             epochs=args.epochs, lr=args.lr, seed=args.seed, show_progress=False, log=print)
        results.append((emb if rank is None else f"tt r={rank}", r))
    print()
    print(table([[n, f"{r['embedding_parameters']:,}", f"{r['compression']:.1f}x", f"{r['valid_accuracy']:.4f}",
                  f"{r['test_accuracy']:.4f}", f"{r['seconds']:.0f}"] for n, r in results],
                ["embedding", "emb. params", "compression", "valid acc", "test acc", "time s"]))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("\n(matplotlib is not installed: table only; pip install matplotlib for the plot)")
        return
    tt_runs = [(r["compression"], r["test_accuracy"], n) for n, r in results if n != "dense"]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([c for c, _, _ in tt_runs], [a for _, a, _ in tt_runs], "o-", label="TT embedding")
    for c, a, n in tt_runs:
        ax.annotate(n.split()[-1], (c, a), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.axhline(results[0][1]["test_accuracy"], color="gray", linestyle="--", label="dense")
    ax.set_xscale("log")
    ax.set_xlabel("embedding compression (dense parameters / TT parameters)")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"{args.dataset}, {args.model}: compression vs accuracy")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
