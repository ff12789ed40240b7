"""Compress a trained dense embedding with TT-SVD vs train a TT embedding from scratch.

What it shows: a classifier (MLP over mean-pooled embeddings by default) is trained
briefly with a dense embedding; its trained V x D matrix is then decomposed by TT-SVD
(``TTEmbedding.from_dense``) at several ranks and put back into the same network (no
retraining, and optionally ``--finetune`` epochs), and compared with TT embeddings of the
same ranks trained from scratch. The table gives rank, compression, relative
reconstruction error of the matrix, and test accuracy. The paper trains TT embeddings
end to end rather than compressing trained ones; this script measures what each route gives
(the authors' notebooks, not the paper, find trained embeddings far from low TT rank).

Runtime with the defaults (SST-2, MLP, 2 epochs, ranks 4,16,64) on a 2-core CPU: about
1 minute (ranks 4,16 took 42 s).

    export TINYTT_DATA=/work/shared/data
    python examples/compress_pretrained.py
    python examples/compress_pretrained.py --model lstm --ranks 8,32 --finetune 1
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_sweep_args, load_sweep, table  # noqa: E402

import numpy  # noqa: E402

from tinytt import to_numpy  # noqa: E402
from tinytt.models import build_model, describe  # noqa: E402
from tinytt.nn import TTEmbedding  # noqa: E402
from tinytt.train import ClassificationTask, train_classifier  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_sweep_args(p, ranks="4,16,64")
    p.add_argument("--finetune", type=int, default=0, help="epochs of fine-tuning after TT-SVD")
    args = p.parse_args(argv)
    data, vocab, num_classes, base = load_sweep(args)
    print(f"-- dense {args.model}, {args.epochs} epochs", flush=True)
    dense = train_classifier(dict(base, embedding="dense"), data, vocab, num_classes, epochs=args.epochs,
                             lr=args.lr, seed=args.seed, log=print)
    W = to_numpy(dense["model"].embedding.weight.data)
    w_norm = numpy.linalg.norm(W)
    task = ClassificationTask(data, show_progress=False)
    rows = [["dense (trained)", "-", f"{W.size:,}", "1.0x", "0", f"{dense['test_accuracy']:.4f}", "-"]]
    for rank in (int(r) for r in args.ranks.split(",") if r):
        # 1) TT-SVD of the trained matrix, put into a copy of the trained network
        model = build_model(dict(base, embedding="dense", task="classify", seed=args.seed), len(vocab), num_classes)
        model.load_state_dict(dense["model"].state_dict())
        emb = TTEmbedding.from_dense(W.astype(numpy.float32), rank=rank, padding_idx=0)
        err = numpy.linalg.norm(to_numpy(emb.to_dense().data) - W) / w_norm
        model.embedding = emb
        acc_svd = task.evaluate(model, "test")["accuracy"]
        acc_ft = "-"
        if args.finetune:
            ft = train_classifier({}, data, vocab, num_classes, epochs=args.finetune, lr=args.lr, seed=args.seed,
                                  model=model, show_progress=False)
            acc_ft = f"{ft['test_accuracy']:.4f}"
        info = describe(model)
        # 2) the same TT layout trained from scratch
        print(f"-- TT rank {rank} from scratch", flush=True)
        scratch = train_classifier(dict(base, embedding="tt", rank=rank), data, vocab, num_classes,
                                   epochs=args.epochs, lr=args.lr, seed=args.seed, show_progress=False)
        rows.append([f"TT-SVD r={rank}", f"{err:.3f}", f"{info['embedding_parameters']:,}",
                     f"{info['compression']:.1f}x", "", f"{acc_svd:.4f}", acc_ft])
        rows.append([f"TT scratch r={rank}", "-", f"{scratch['embedding_parameters']:,}",
                     f"{scratch['compression']:.1f}x", "", f"{scratch['test_accuracy']:.4f}", "-"])
    print()
    print(table([[r[0], r[1], r[2], r[3], r[5], r[6]] for r in rows],
                ["embedding", "rel. error", "emb. params", "compression", "test acc", "after finetune"]))


if __name__ == "__main__":
    main()
