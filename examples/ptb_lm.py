"""Word-level language modelling on Penn Treebank: perplexity with dense vs TT embeddings.

What it shows: one LSTM language model (embedding 128, hidden 256) trained with a dense
10,001 x 128 embedding and with TT embeddings (rank 16 by default, ``--ranks`` for more),
for the same number of steps; the table gives embedding parameters, compression, validation and test perplexity
and time. Without PTB files (``$TINYTT_DATA/ptb``) use ``--dataset embedded`` (the corpus
built into tinytt, no download).

Runtime with the defaults (300 steps of 20x35 tokens per model, 2 models, about 0.4 s
per step) on a 2-core CPU: about 5 minutes (much longer when the machine is busy). ``--epochs 1 --steps 0`` trains full epochs (about 1,300 steps).

    export TINYTT_DATA=/work/shared/data
    python examples/ptb_lm.py
    python examples/ptb_lm.py --ranks 8,16,32 --steps 600
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_data_args, missing_data, table  # noqa: E402

import tinytt as tt  # noqa: E402
from tinytt.data import Vocab, load_embedded_corpus, load_ptb  # noqa: E402
from tinytt.models import build_model, describe  # noqa: E402
from tinytt.train import LanguageModelTask, fit, lm_stream  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", choices=("ptb", "embedded"), default="ptb")
    p.add_argument("--ranks", default="16", help="TT ranks to compare with the dense embedding")
    p.add_argument("--steps", type=int, default=300, help="steps per epoch (0 = full epochs)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--emb-dim", type=int, default=128)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=20)
    p.add_argument("--bptt", type=int, default=35)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    add_data_args(p)
    args = p.parse_args(argv)
    try:
        corpus = load_ptb(args.data_dir) if args.dataset == "ptb" else load_embedded_corpus()
    except FileNotFoundError as exc:
        missing_data(exc)
    vocab = Vocab.build([corpus["train"]], max_size=20000)
    streams = {k: lm_stream(v, vocab) for k, v in corpus.items()}
    task = LanguageModelTask(streams, batch_size=args.batch_size, bptt=args.bptt, clip=1.0, eval_batch_size=32)
    print(f"{args.dataset}: {len(streams['train']):,} training tokens, vocabulary {len(vocab):,}; "
          f"{task.steps_per_epoch()} steps per full epoch", flush=True)
    rows = []
    variants = [("dense", None)] + [("tt", int(r)) for r in args.ranks.split(",") if r]
    for emb, rank in variants:
        cfg = {"task": "lm", "embedding": emb, "rank": rank or 16, "emb_dim": args.emb_dim, "hidden": args.hidden,
               "dropout": 0.2, "seed": args.seed}
        model = build_model(cfg, len(vocab))
        print(f"-- {emb}" + (f" rank {rank}" if rank else ""), flush=True)
        res = fit(model, tt.optim.Adam(model.parameters(), lr=args.lr), task, args.epochs,
                  max_steps=args.steps or None, log=print)
        info = describe(model)
        rows.append([f"{emb}" + (f" r={rank}" if rank else ""), f"{info['embedding_parameters']:,}",
                     f"{info['compression']:.1f}x", f"{info['total_parameters']:,}",
                     f"{res.best_valid['perplexity']:.1f}", f"{res.test['perplexity']:.1f}", f"{res.seconds:.0f}"])
    print()
    print(table(rows, ["embedding", "emb. params", "compression", "total params", "valid ppl", "test ppl",
                       "time s"]))


if __name__ == "__main__":
    main()
