"""Command line: ``tinytt demo | train | eval | info`` (also ``python -m tinytt ...``).

- ``tinytt demo``: no arguments, no network, about two minutes on a 2-core CPU. Trains a
  small LSTM language model on the corpus built into tinytt (Python's own
  documentation) twice, with a dense and with a TT embedding, and prints a table:
  embedding parameters, compression, total parameters, perplexity, time.
- ``tinytt train``: classification (``--task classify``: SST-2/5, MR, IMDB or your own
  ``label<TAB>text`` files) or language modelling (``--task lm``: PTB, the embedded
  corpus or plain text files), LSTM/BiLSTM/MLP, dense or TT embedding; ``--save`` writes
  a checkpoint after every epoch, ``--resume`` continues one, ``--json`` prints the final
  metrics as one JSON line.
- ``tinytt eval --checkpoint CKPT --test PATH``: rebuilds model and vocabulary from a
  checkpoint and evaluates a file.
- ``tinytt info``: versions, backend, BLAS, GPU.

Bad arguments give an argparse-style message and exit code 2 before training starts;
so does an invalid ``TINYTT_NUM_THREADS`` (``info`` lists it in its output instead). An
invalid ``TINYTT_BACKEND`` fails ``import tinytt`` itself, with a message naming it. Ctrl-C during training exits with code 130 and leaves the last
checkpoint intact.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time

import numpy

from . import models
from .allocator import keep_freed_memory

__all__ = ["main", "build_parser"]

CLASSIFY_DATASETS = ("sst2", "sst5", "mr", "imdb")
LM_DATASETS = ("ptb", "embedded")

# defaults of ``tinytt train`` (None in argparse so that --resume can tell "given" from "default")
TRAIN_DEFAULTS = {
    "classify": {**models.MODEL_DEFAULTS["classify"],
                 "max_len": 256, "vocab_size": 25000, "epochs": 3, "batch_size": 64, "lr": 1e-3,
                 "clip": 0.0, "bptt": 35, "valid_fraction": 0.1},
    "lm": {**models.MODEL_DEFAULTS["lm"],
           "max_len": None, "vocab_size": 20000, "epochs": 3, "batch_size": 20, "lr": 2e-3,
           "clip": 1.0, "bptt": 35, "valid_fraction": 0.1},
}
# keys that describe the model/data and are taken from the checkpoint on --resume
_MODEL_KEYS = ("task", "model", "readout", "embedding", "rank", "cores", "tt_shape", "emb_dim", "hidden",
               "layers", "dropout", "max_len", "vocab_size", "batch_size", "lr", "seed", "clip", "bptt",
               "valid_fraction", "dataset", "train", "valid", "test")


class _Exit(Exception):
    """Internal: stop with an argparse-style error (exit code 2)."""


# ----------------------------------------------------------------------------- arg types
def _number(kind, low: float, low_open: bool, high: float = math.inf, words: str = ""):
    """An argparse type: ``kind`` (int or float) in the interval from ``low`` (excluded when
    ``low_open``) up to ``high`` (excluded), finite; ``words`` describes it in the error."""
    def parse(text):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {words}, got {text!r}") from None
        if not (math.isfinite(v) and (v > low if low_open else v >= low) and v < high):
            raise argparse.ArgumentTypeError(f"must be {words}, got {text}")
        return v
    return parse


_positive_int = _number(int, 1, False, words="a positive integer (>= 1)")
_nonneg_int = _number(int, 0, False, words="a non-negative integer")
_positive_float = _number(float, 0.0, True, words="a positive number")
_nonneg_float = _number(float, 0.0, False, words="a non-negative number")
_probability = _number(float, 0.0, False, 1.0, words="a number in [0, 1)")


def _fraction(text):
    v = _probability(text)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1), got {text}")
    return v


def _tt_shape(text):
    try:
        rows, cols = models.parse_tt_shape(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if len(rows) < 2:  # as --cores: one core is just the dense matrix
        raise argparse.ArgumentTypeError(f"a TT embedding needs at least 2 cores (factors on each side of "
                                         f"the x), got {text!r}")
    return rows, cols


def _cores(text):
    v = _positive_int(text)
    if v < 2:
        raise argparse.ArgumentTypeError(f"a TT embedding needs at least 2 cores, got {text}")
    return v


# ----------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    """The ``tinytt`` argument parser with its sub-commands demo, train, eval and info."""
    p = argparse.ArgumentParser(
        prog="tinytt",
        description="tinytt: tensor-train (TT) embeddings on NumPy/CuPy with a small autodiff "
                    "(Tensorized Embedding Layers, arXiv 1901.10787).",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    d = sub.add_parser("demo", help="dense vs TT embedding on a small language model (~2 min, no download)",
                       description="Train an LSTM language model on the corpus built into tinytt with a dense "
                                   "and with a TT embedding; print parameters, compression and perplexity.")
    d.add_argument("--steps", type=_positive_int, default=None,
                   help=f"training steps per model (default {DEMO['steps']})")
    d.add_argument("--seconds", type=_positive_float, default=None,
                   help=f"wall-time cap on the training of both models together, in seconds "
                        f"(default {DEMO['seconds']:g})")
    d.add_argument("--vocab-size", type=_positive_int, default=10000, help="vocabulary cap (default 10000)")
    d.add_argument("--no-progress", action="store_true", help="no progress bars")
    d.add_argument("--json", action="store_true", help="also print the results as one JSON line")

    t = sub.add_parser("train", help="train a classifier or language model (dense or TT embedding)",
                       description="Train a text classifier (--task classify) or a language model (--task lm) "
                                   "with a dense or TT embedding. Defaults depend on --task (shown as "
                                   "'classify X, lm Y'); with --resume the checkpoint's settings are used.")
    t.add_argument("--task", choices=("classify", "lm"), default=None, help="default: classify")
    src = t.add_argument_group("data")
    src.add_argument("--dataset", choices=CLASSIFY_DATASETS + LM_DATASETS, default=None,
                     help="named dataset (classify: sst2 sst5 mr imdb; lm: ptb embedded)")
    src.add_argument("--train", metavar="PATH", default=None,
                     help="training file: label<TAB>text lines (classify) or plain text (lm)")
    src.add_argument("--valid", metavar="PATH", default=None,
                     help="validation file (default: carved from train, --valid-fraction of it: seeded examples "
                          "for classifiers, the end of the text for language models)")
    src.add_argument("--test", metavar="PATH", default=None, help="test file")
    src.add_argument("--data-dir", default=None, help="data root (default $TINYTT_DATA)")
    src.add_argument("--download", action="store_true", help="download the dataset when missing (imdb, ptb)")
    src.add_argument("--max-len", type=_positive_int, default=None, help="keep the first N tokens (classify; 256)")
    src.add_argument("--vocab-size", type=_positive_int, default=None,
                     help="vocabulary cap incl. <pad>/<unk> (classify 25000, lm 20000)")
    m = t.add_argument_group("model")
    m.add_argument("--model", choices=("lstm", "bilstm", "mlp"), default=None, help="default: lstm")
    m.add_argument("--readout", choices=("final", "mean"), default=None,
                   help="LSTM classifier readout: final state or mean of outputs (default: mean)")
    m.add_argument("--embedding", choices=("dense", "tt"), default=None, help="default: dense")
    m.add_argument("--rank", type=_positive_int, default=None, help="TT rank (default 16)")
    m.add_argument("--cores", type=_cores, default=None, help="number of TT cores (default 3)")
    m.add_argument("--tt-shape", type=_tt_shape, default=None, metavar="V1,V2,..xD1,D2,..",
                   help="TT factorisation, e.g. 25,30,40x4,8,8 (default: the paper's automatic shapes)")
    m.add_argument("--emb-dim", type=_positive_int, default=None, help="embedding size (classify 256, lm 128)")
    m.add_argument("--hidden", type=_positive_int, default=None, help="hidden size (classify 128, lm 256)")
    m.add_argument("--layers", type=_positive_int, default=None, help="LSTM layers (default 1)")
    m.add_argument("--dropout", type=_probability, default=None, help="dropout (classify 0.5, lm 0.2)")
    o = t.add_argument_group("optimisation")
    o.add_argument("--epochs", type=_positive_int, default=None, help="epochs (default 3)")
    o.add_argument("--batch-size", type=_positive_int, default=None, help="batch size (classify 64, lm 20)")
    o.add_argument("--bptt", type=_positive_int, default=None, help="lm: BPTT window (default 35)")
    o.add_argument("--lr", type=_positive_float, default=None, help="Adam learning rate (classify 1e-3, lm 2e-3)")
    o.add_argument("--clip", type=_nonneg_float, default=None, help="gradient-norm clip, 0 = off (classify 0, lm 1)")
    o.add_argument("--seed", type=_nonneg_int, default=None, help="seed (default 0)")
    o.add_argument("--valid-fraction", type=_fraction, default=None,
                   help="fraction of train carved out for validation when there is no valid split (0.1)")
    o.add_argument("--max-steps", type=_positive_int, default=None, help="cap on steps per epoch (smoke tests)")
    o.add_argument("--test-every-epoch", action="store_true",
                   help="evaluate the test split after every epoch (default: once, with the best-validation weights)")
    r = t.add_argument_group("checkpoints and output")
    r.add_argument("--save", metavar="CKPT", default=None, help="write a checkpoint after every epoch")
    r.add_argument("--resume", metavar="CKPT", default=None, help="continue training from a checkpoint")
    r.add_argument("--json", action="store_true", help="print the final metrics as one JSON line on stdout")
    r.add_argument("--no-progress", action="store_true", help="no progress bars")

    e = sub.add_parser("eval", help="evaluate a checkpoint on a file",
                       description="Rebuild model and vocabulary from a checkpoint and evaluate a file "
                                   "(label<TAB>text for classifiers, plain text for language models).")
    e.add_argument("--checkpoint", required=True, metavar="CKPT")
    e.add_argument("--test", required=True, metavar="PATH")
    e.add_argument("--weights", choices=("best", "last"), default="best",
                   help="best-validation weights (default) or those of the last epoch")
    e.add_argument("--batch-size", type=_positive_int, default=None,
                   help="evaluation batch size (classifiers: examples, default 256; language models: "
                        "rows of the token stream, default 10 as in training's evaluation)")
    e.add_argument("--json", action="store_true", help="print the metrics as one JSON line")

    i = sub.add_parser("info", help="versions, backend, BLAS and GPU information")
    i.add_argument("--json", action="store_true", help="print as JSON")
    return p


# ----------------------------------------------------------------------------- helpers
def _err(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _check_file(parser, flag: str, path, regular: bool = False) -> None:
    """Exit 2 unless ``path`` exists and is not a directory (data files may be pipes, FIFOs or
    /dev/stdin); with ``regular`` it must be a regular file (checkpoints are zip archives,
    read with seeks)."""
    if path is not None and (os.path.isdir(path) or not os.path.exists(path)):
        what = "is a directory, not a file" if os.path.isdir(path) else "does not exist"
        parser.error(f"{flag}: {path} {what}")
    if path is not None and regular and not os.path.isfile(path):
        parser.error(f"{flag}: {path} is not a regular file (a checkpoint cannot be read from a pipe)")


def _env_errors() -> list:
    """What is wrong with ``TINYTT_NUM_THREADS`` (read by tinytt.parallel at each use), as
    messages naming the variable; empty when fine. (A bad ``TINYTT_BACKEND`` already failed
    ``import tinytt``, with a message naming it.)"""
    from .parallel import num_threads

    try:
        num_threads()
    except ValueError as exc:
        return [str(exc)]
    return []


def _fmt_int(n) -> str:
    return f"{int(n):,}"


def _table(rows, headers) -> str:
    cols = [[h] + [str(r[i]) for r in rows] for i, h in enumerate(headers)]
    widths = [max(len(c) for c in col) for col in cols]
    line = "  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths)))
    out = [line, "  ".join("-" * w for w in widths)]
    for r in rows:
        out.append("  ".join(str(v).ljust(w) if i == 0 else str(v).rjust(w)
                             for i, (v, w) in enumerate(zip(r, widths))))
    return "\n".join(out)


# ----------------------------------------------------------------------------- data loading
def _tokenize_all(texts, show_progress: bool, desc: str):
    from .data import progress, tokenize

    return [tokenize(t) for t in progress(texts, desc=desc, disable=not show_progress or len(texts) < 5000)]


def _load_classify(cfg: dict, args, parser, show_progress: bool):
    """-> (splits of (token lists, labels) with "valid" filled, num_classes)."""
    from .data import NUM_CLASSES, load_dataset, read_tsv

    if cfg.get("dataset"):
        # MR has no official split: carve it with a FIXED seed (the test set must not change
        # with --seed) and the requested validation fraction
        try:
            raw = load_dataset(cfg["dataset"], args.data_dir, download=args.download,
                               valid_fraction=cfg["valid_fraction"])
        except (FileNotFoundError, ValueError) as exc:
            parser.error(str(exc))
        except OSError as exc:  # a failed download
            parser.exit(1, f"{parser.prog}: error: {exc}\n")
        num_classes = NUM_CLASSES[cfg["dataset"]]
    else:
        raw = {}
        for split in ("train", "valid", "test"):
            path = cfg.get(split)
            if path is None:
                raw[split] = None
                continue
            try:
                raw[split] = read_tsv(path)
            except FileNotFoundError:
                parser.error(f"--{split}: {path} does not exist")
            except ValueError as exc:
                parser.error(f"--{split}: {exc}")
        num_classes = None
    splits = {}
    for split, val in raw.items():
        if val is None:
            splits[split] = None
            continue
        texts, labels = val
        if not texts:
            parser.error(f"the {split} split is empty")
        splits[split] = (_tokenize_all(texts, show_progress, f"tokenize {split}"), list(labels))
    all_labels = [lab for s in splits.values() if s is not None for lab in s[1]]
    if min(all_labels) < 0:
        parser.error(f"labels must be integers 0..K-1, found {min(all_labels)}")
    if num_classes is None:
        num_classes = max(2, max(all_labels) + 1)
        trained = cfg.get("num_classes")  # present when resuming a checkpoint
        if trained is not None:
            if num_classes > trained:
                parser.error(f"--resume: the data no longer matches the checkpoint: it was trained with {trained} "
                             f"classes but the data now has labels up to {max(all_labels)} ({num_classes} classes)")
            num_classes = trained
    elif max(all_labels) >= num_classes:
        parser.error(f"dataset {cfg['dataset']} has labels up to {max(all_labels)}, expected < {num_classes}")
    untrained = sorted(set(range(num_classes)) - set(splits["train"][1]))
    if untrained:   # (labels seen only in --valid/--test, or a one-class training file)
        shown = ", ".join(map(str, untrained[:10])) + (", ..." if len(untrained) > 10 else "")
        _err(f"note: the model has {num_classes} classes (0..{num_classes - 1}) but the training data has "
             f"no example of class {shown}")
    if splits.get("valid") is None:
        from .train import carve_validation

        toks, labels = splits["train"]
        if len(toks) < 2:
            parser.error("need at least 2 training examples to carve a validation split (or pass --valid)")
        tr, va = carve_validation(len(toks), cfg["valid_fraction"], cfg["seed"])
        if len(tr) == 0:
            parser.error(f"--valid-fraction {cfg['valid_fraction']}: the training split is empty after carving "
                         f"{len(va)} of the {len(toks)} training examples for validation; use a smaller "
                         f"--valid-fraction or pass --valid")
        splits["valid"] = ([toks[i] for i in va], [labels[i] for i in va])
        splits["train"] = ([toks[i] for i in tr], [labels[i] for i in tr])
    return splits, num_classes


def _load_lm(cfg: dict, args, parser):
    """-> {"train": tokens, "valid": tokens, "test": tokens or None}."""
    from .data import load_embedded_corpus, load_ptb, read_lm_tokens

    name = cfg.get("dataset")
    if name == "ptb":
        try:
            return load_ptb(args.data_dir, download=args.download)
        except (FileNotFoundError, ValueError) as exc:
            parser.error(str(exc))
        except OSError as exc:  # a failed download
            parser.exit(1, f"{parser.prog}: error: {exc}\n")
    if name == "embedded":
        return load_embedded_corpus()
    out = {}
    for split in ("train", "valid", "test"):
        path = cfg.get(split)
        if path is None:
            out[split] = None
            continue
        try:
            out[split] = read_lm_tokens(path)
        except FileNotFoundError:
            parser.error(f"--{split}: {path} does not exist")
        except ValueError as exc:
            parser.error(f"--{split}: {exc}")
    if not out["train"]:
        parser.error(f"--train: {cfg['train']} holds no tokens")
    if out["valid"] is None:  # carve the last fraction of the stream (contiguous text)
        n = len(out["train"])
        k = max(2, int(round(cfg["valid_fraction"] * n)))
        out["train"], out["valid"] = out["train"][: n - k], out["train"][n - k:]
    return out


#: a TT embedding larger than this (and than the dense matrix) is refused before it is built
_MAX_TT_PARAMS = 1 << 26


def _check_tt_shape(parser, cfg: dict, vocab_size: int) -> None:
    if cfg.get("embedding") != "tt":
        return
    from .nn import TTEmbedding
    from .tt.shapes import tt_matrix_num_params

    if cfg.get("tt_shape") is None:
        rows, cols = TTEmbedding.default_shape(vocab_size, cfg["emb_dim"], cfg["cores"])
    else:
        rows, cols = cfg["tt_shape"]
    ranks = [1] + [cfg["rank"]] * (len(rows) - 1) + [1]
    n_params = tt_matrix_num_params(rows, cols, ranks)
    dense = vocab_size * cfg["emb_dim"]
    if n_params > max(dense, _MAX_TT_PARAMS):
        parser.error(f"--rank {cfg['rank']}: the TT embedding would have {n_params:,} parameters, more than the "
                     f"dense {vocab_size:,} x {cfg['emb_dim']} matrix ({dense:,}); use a smaller rank")
    if n_params > dense:
        _err(f"note: with --rank {cfg['rank']} the TT embedding has {n_params:,} parameters, more than the dense "
             f"matrix ({dense:,}): no compression")
    if cfg.get("tt_shape") is None:
        return
    if math.prod(rows) < vocab_size:
        parser.error(f"--tt-shape: the row factors {'x'.join(map(str, rows))} = {math.prod(rows)} must be >= "
                     f"the vocabulary size {vocab_size} (use --vocab-size or larger factors)")
    if math.prod(cols) != cfg["emb_dim"]:
        parser.error(f"--tt-shape: the column factors {'x'.join(map(str, cols))} = {math.prod(cols)} must "
                     f"equal --emb-dim {cfg['emb_dim']}")


def _note_missing_keys(config: dict, defaults: dict, verb: str, skip=()) -> None:
    """Say on stderr which of ``defaults``' keys a checkpoint's ``config`` lacks (configs the
    Python API wrote may), and the defaults used for them: never a silent change of model."""
    missing = [k for k in defaults if k not in config and k not in skip]
    if missing:
        _err(f"note: the checkpoint's config lacks {', '.join(missing)}; {verb} with tinytt train's defaults "
             + ", ".join(f"{k}={defaults[k]!r}" for k in missing))


# ----------------------------------------------------------------------------- train
def _train_config(args, parser, resumed: dict | None) -> dict:
    given = {k: getattr(args, k) for k in ("task", "model", "readout", "embedding", "rank", "cores", "tt_shape",
                                           "emb_dim", "hidden", "layers", "dropout", "max_len", "vocab_size",
                                           "epochs", "batch_size", "lr", "seed", "clip", "bptt",
                                           "valid_fraction", "dataset", "train", "valid", "test")}
    if resumed is not None:
        task = resumed.get("task", "classify")
        if task not in TRAIN_DEFAULTS:
            parser.error(f"--resume: the checkpoint's task must be 'classify' or 'lm', got {task!r}")
        # a checkpoint written by the Python API may leave keys out: they take tinytt train's defaults
        _note_missing_keys(resumed, TRAIN_DEFAULTS[task], "resumed")
        cfg = {**TRAIN_DEFAULTS[task], **resumed, "task": task}
        if cfg.get("dataset") is None and cfg.get("train") is None:
            parser.error("--resume: the checkpoint's config names no data ('dataset' or 'train'); "
                         "tinytt train writes them")
        ignored = [k for k in _MODEL_KEYS if given.get(k) is not None and k not in ("epochs",)
                   and not _same_setting(k, given[k], cfg.get(k))]
        if ignored:
            _err("note: --resume keeps the checkpoint's settings; ignoring "
                 + ", ".join(f"--{k.replace('_', '-')}" for k in ignored))
        if given["epochs"] is not None:
            cfg["epochs"] = given["epochs"]
        return cfg
    task = given["task"] or ("lm" if given["dataset"] in LM_DATASETS else "classify")
    cfg = dict(TRAIN_DEFAULTS[task])
    cfg.update({k: v for k, v in given.items() if v is not None})
    cfg["task"] = task
    if cfg.get("dataset") is None and cfg.get("train") is None:
        parser.error("give --dataset NAME or --train PATH (or --resume CKPT)")
    if cfg.get("dataset") is not None and cfg.get("train") is not None:
        parser.error("give either --dataset or --train, not both")
    if cfg.get("dataset") is not None:
        ok = CLASSIFY_DATASETS if task == "classify" else LM_DATASETS
        if cfg["dataset"] not in ok:
            parser.error(f"--dataset {cfg['dataset']} does not fit --task {task} (choose from {', '.join(ok)})")
        for flag in ("valid", "test"):
            if cfg.get(flag) is not None:
                parser.error(f"--{flag} goes with --train, not with --dataset")
    if cfg.get("train") is None and (cfg.get("valid") or cfg.get("test")):
        parser.error("--valid/--test need --train")
    if task == "lm" and cfg["model"] != "lstm":
        parser.error(f"--task lm supports --model lstm only, got {cfg['model']}")
    if cfg["vocab_size"] < 3:
        parser.error(f"--vocab-size must be at least 3 (2 ids are <pad>/<unk>), got {cfg['vocab_size']}")
    if cfg["embedding"] != "tt":
        stray = [f"--{k.replace('_', '-')}" for k in ("rank", "cores", "tt_shape") if given.get(k) is not None]
        if stray:
            parser.error(f"{', '.join(stray)} {'needs' if len(stray) == 1 else 'need'} --embedding tt "
                         f"(the embedding is {cfg['embedding']})")
    if cfg.get("tt_shape") is not None:
        rows, cols = cfg["tt_shape"]
        cfg["tt_shape"] = [list(rows), list(cols)]
        if args.cores is not None and args.cores != len(rows):
            parser.error(f"--cores {args.cores} does not match --tt-shape with {len(rows)} factors")
        cfg["cores"] = len(rows)
        if math.prod(cols) != cfg["emb_dim"]:
            parser.error(f"--tt-shape: the column factors {'x'.join(map(str, cols))} = {math.prod(cols)} must "
                         f"equal --emb-dim {cfg['emb_dim']}")
    for flag in ("train", "valid", "test"):
        if cfg.get(flag) is not None:
            cfg[flag] = os.path.abspath(cfg[flag])
    return cfg


def _norm(v):
    if isinstance(v, tuple):
        return [_norm(x) for x in v]
    if isinstance(v, list):
        return [_norm(x) for x in v]
    return v


def _same_setting(key: str, given, stored) -> bool:
    """Whether a flag given with --resume equals the checkpoint's value (data files compared
    as resolved paths: the checkpoint stores them absolute)."""
    if key in ("train", "valid", "test") and stored is not None:
        return os.path.realpath(given) == os.path.realpath(stored)
    return _norm(given) == _norm(stored)


def cmd_train(args, parser) -> int:
    """``tinytt train``: read the data, build the model (or resume a checkpoint), train with
    Adam, evaluate, optionally save; returns the exit code. Bad arguments go to
    ``parser.error`` (exit status 2) with a message naming the flag."""
    from .data import Vocab
    from .optim import Adam
    from .train import (ClassificationData, ClassificationTask, LanguageModelTask, fit, load_checkpoint, lm_stream,
                        set_random_states)

    show = not args.no_progress
    for flag in ("train", "valid", "test"):
        _check_file(parser, f"--{flag}", getattr(args, flag))
    resumed = None
    if args.resume is not None:
        _check_file(parser, "--resume", args.resume, regular=True)
        try:
            resumed = load_checkpoint(args.resume)
        except ValueError as exc:
            parser.error(f"--resume: {exc}")
    cfg = _train_config(args, parser, None if resumed is None else resumed["config"])
    if resumed is not None:
        for flag in ("train", "valid", "test"):
            if cfg.get(flag) is not None and (os.path.isdir(cfg[flag]) or not os.path.exists(cfg[flag])):
                parser.error(f"--resume: the checkpoint's --{flag} file {cfg[flag]} no longer exists")
        if cfg["epochs"] < resumed["epoch"]:
            parser.error(f"--epochs {cfg['epochs']}: the checkpoint {args.resume} has already run {resumed['epoch']} "
                         f"epochs; --epochs is the total, so give {resumed['epoch']} or more")
    save_path = args.save or args.resume
    if save_path is not None:
        d = os.path.dirname(os.path.abspath(save_path))
        if not os.path.isdir(d):
            parser.error(f"--save: directory {d} does not exist")
        if os.path.isdir(save_path):
            parser.error(f"--save: {save_path} is a directory; give the checkpoint's file name "
                         f"(e.g. {os.path.join(save_path, 'model.npz')})")
        for flag in ("train", "valid", "test"):
            if cfg.get(flag) is not None and os.path.realpath(cfg[flag]) == os.path.realpath(save_path):
                parser.error(f"--save: {save_path} is the --{flag} data file; the checkpoint would replace it")

    t_data = time.perf_counter()
    if cfg["task"] == "classify":
        splits, num_classes = _load_classify(cfg, args, parser, show)
        vocab = resumed["vocab"] if resumed else Vocab.build(splits["train"][0], max_size=cfg["vocab_size"])
        data = {k: (None if v is None else ClassificationData.from_tokens(v[0], v[1], vocab, cfg["max_len"]))
                for k, v in splits.items()}
        task = ClassificationTask(data, batch_size=cfg["batch_size"], seed=cfg["seed"], clip=cfg["clip"],
                                  show_progress=show)
        cfg["num_classes"] = num_classes
        n_train = len(data["train"])
    else:
        corpus = _load_lm(cfg, args, parser)
        vocab = resumed["vocab"] if resumed else Vocab.build([corpus["train"]], max_size=cfg["vocab_size"])
        streams = {k: (None if v is None else lm_stream(v, vocab)) for k, v in corpus.items()}
        if len(streams["train"]) < 2 * cfg["batch_size"] + 2:
            carved = cfg.get("dataset") is None and cfg.get("valid") is None
            parser.error(f"the training text has {len(streams['train'])} tokens"
                         + (f" after carving --valid-fraction {cfg['valid_fraction']} for validation" if carved else "")
                         + f"; need at least {2 * cfg['batch_size'] + 2} for --batch-size {cfg['batch_size']}")
        for split in ("valid", "test"):
            if streams.get(split) is not None and len(streams[split]) < 4:
                parser.error(f"the {split} text has {len(streams[split])} tokens; need at least 4")
        task = LanguageModelTask(streams, batch_size=cfg["batch_size"], bptt=cfg["bptt"], clip=cfg["clip"],
                                 show_progress=show)
        num_classes = None
        n_train = len(streams["train"])
    data_seconds = time.perf_counter() - t_data
    _check_tt_shape(parser, cfg, len(vocab))

    try:
        model = models.build_model(cfg, len(vocab), num_classes)
    except ValueError as exc:
        parser.error(str(exc))
    optimizer = Adam(model.parameters(), lr=cfg["lr"])
    start_epoch, history, best_state = 0, [], None
    if resumed is not None:
        try:
            model.load_state_dict(resumed["model"])
            if resumed["optim"]:
                optimizer.load_state_dict(resumed["optim"])
        except (KeyError, ValueError, TypeError) as exc:
            parser.error(f"--resume: the data no longer matches the checkpoint {args.resume}: {exc}")
        set_random_states(model, resumed["random"])
        start_epoch, history, best_state = resumed["epoch"], resumed["history"], resumed["best_model"]
        _err(f"resuming from {args.resume} after epoch {start_epoch} of {cfg['epochs']}")
    info = models.describe(model)
    if not args.json:
        print(f"{cfg['task']}: {cfg.get('dataset') or os.path.basename(cfg['train'])}, vocabulary {len(vocab):,}, "
              f"{n_train:,} training {'examples' if cfg['task'] == 'classify' else 'tokens'}; "
              f"{cfg['embedding']} embedding {info['embedding_parameters']:,} parameters "
              f"(compression {info['compression']}x), total {info['total_parameters']:,}", flush=True)
    def log(msg):
        _err(msg)

    try:
        res = fit(model, optimizer, task, cfg["epochs"], start_epoch=start_epoch, history=history,
                  best_state=best_state, checkpoint=save_path, vocab=vocab, config=cfg,
                  test_every_epoch=args.test_every_epoch, log=log, max_steps=args.max_steps)
    except KeyboardInterrupt:
        done = len(history)
        if save_path is not None and done > 0:
            _err(f"\ninterrupted; the checkpoint {save_path} (after epoch {done}) is intact; "
                 f"continue with: tinytt train --resume {save_path}")
        else:
            _err("\ninterrupted; no checkpoint was written" + ("" if save_path else " (use --save CKPT)"))
        return 130
    except FloatingPointError as exc:
        _err(f"error: {exc}")
        return 1
    metric = task.metric
    out = {
        "task": cfg["task"],
        f"test_{metric}": None if res.test is None else res.test[metric],
        f"valid_{metric}": None if res.best_valid is None else res.best_valid[metric],
        "best_epoch": res.best_epoch,
        "test_loss": None if res.test is None else res.test["loss"],
        "valid_loss": None if res.best_valid is None else res.best_valid["loss"],
        "train_loss": history[-1]["train_loss"] if history else None,
        **info,
        "seconds": round(res.seconds, 3),
        "data_seconds": round(data_seconds, 3),
        "epoch_seconds": res.epoch_seconds,
        "eval_seconds": res.eval_seconds,
        "vocab_size": len(vocab),
        "num_train": n_train,
        "epochs_run": len(history),
        "history": history,
        "checkpoint": save_path,
        "config": cfg,
    }
    if args.json:
        print(json.dumps(out), flush=True)
    else:
        tm = out[f"test_{metric}"]
        print(f"best epoch {res.best_epoch}: valid {metric} {out[f'valid_{metric}']:.4f}"
              + (f", test {metric} {tm:.4f}" if tm is not None else "")
              + f"; {res.seconds:.1f} s" + (f"; checkpoint {save_path}" if save_path else ""))
    return 0


# ----------------------------------------------------------------------------- eval
def cmd_eval(args, parser) -> int:
    """``tinytt eval``: load a checkpoint and report its metric on ``--test``; returns the exit code."""
    from .data import read_lm_tokens, read_tsv, tokenize
    from .train import ClassificationData, ClassificationTask, LanguageModelTask, load_checkpoint, lm_stream

    _check_file(parser, "--checkpoint", args.checkpoint, regular=True)
    _check_file(parser, "--test", args.test)
    try:
        ck = load_checkpoint(args.checkpoint)
    except ValueError as exc:
        parser.error(f"--checkpoint: {exc}")
    cfg, vocab = dict(ck["config"]), ck["vocab"]
    cfg.setdefault("task", "classify")
    _note_missing_keys(cfg, models.MODEL_DEFAULTS.get(cfg["task"], {}), "rebuilt", skip=("seed", "dropout"))
    if cfg["task"] == "classify" and "max_len" not in cfg:
        _err("note: the checkpoint's config lacks max_len; evaluating on whole texts (not cut to the length "
             "the model was trained on)")
    if cfg["task"] == "classify" and not isinstance(cfg.get("num_classes"), int):
        parser.error(f"--checkpoint: {args.checkpoint}'s config has no 'num_classes' (an int); a classifier "
                     f"checkpoint for 'tinytt eval' needs it (tinytt train writes it)")
    state = ck["best_model"] if args.weights == "best" and ck["best_model"] is not None else ck["model"]
    try:
        model = models.build_model(cfg, len(vocab), cfg.get("num_classes"))
        model.load_state_dict(state)
    except (ValueError, TypeError, KeyError) as exc:
        reason = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        parser.error(f"--checkpoint: its config does not rebuild the model its weights belong to: {reason}")
    t0 = time.perf_counter()
    try:
        if cfg["task"] == "classify":
            texts, labels = read_tsv(args.test)
            if not texts:
                parser.error(f"--test: {args.test} holds no examples")
            if min(labels) < 0 or max(labels) >= cfg["num_classes"]:
                parser.error(f"--test: labels must lie in 0..{cfg['num_classes'] - 1}")
            data = ClassificationData.from_tokens([tokenize(t) for t in texts], labels, vocab, cfg.get("max_len"))
            task = ClassificationTask({"train": data, "test": data}, batch_size=1,
                                      eval_batch_size=args.batch_size or 256, show_progress=False)
        else:
            stream = lm_stream(read_lm_tokens(args.test), vocab)
            if len(stream) < 4:
                parser.error(f"--test: {args.test} has too few tokens")
            task = LanguageModelTask({"train": stream, "test": stream}, bptt=cfg.get("bptt", 35),
                                     eval_batch_size=args.batch_size or 10, show_progress=False)
    except ValueError as exc:
        parser.error(f"--test: {exc}")
    res = task.evaluate(model, "test")
    out = {"task": cfg["task"], f"test_{task.metric}": res[task.metric], "test_loss": res["loss"], "n": res["n"],
           "weights": "best" if state is ck["best_model"] else "last", "epoch": ck["epoch"],
           **models.describe(model), "seconds": round(time.perf_counter() - t0, 3), "config": cfg}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{args.test}: {task.metric} {res[task.metric]:.4f}, loss {res['loss']:.4f} over {res['n']:,} "
              f"{'examples' if cfg['task'] == 'classify' else 'tokens'} ({out['weights']} weights, "
              f"checkpoint epoch {ck['epoch']})")
    return 0


# ----------------------------------------------------------------------------- info
def _blas_info() -> dict:
    out = {}
    try:
        cfg = numpy.show_config(mode="dicts")
        deps = cfg.get("Build Dependencies", {})
        for key in ("blas", "lapack"):
            d = deps.get(key, {})
            if d:
                out[key] = {k: d.get(k) for k in ("name", "version", "openblas configuration") if d.get(k)}
        simd = cfg.get("SIMD Extensions", {})
        if simd:
            found = simd.get("found") or []
            out["simd"] = ",".join(found) if isinstance(found, list) else str(found)
    except Exception as exc:  # noqa: BLE001 - information only
        out["error"] = f"{type(exc).__name__}: {exc}"
    try:
        from threadpoolctl import threadpool_info

        out["threadpools"] = [{k: p.get(k) for k in ("internal_api", "version", "num_threads", "threading_layer")}
                              for p in threadpool_info()]
    except Exception:  # noqa: BLE001 - optional dependency
        pass
    return out


def collect_info() -> dict:
    """Versions, backend, BLAS, thread settings, GPU and optional packages, as a JSON-able dict.

    Invalid ``TINYTT_NUM_THREADS``/``TINYTT_BACKEND`` values are listed under ``env_errors``
    (``cpu_threads["workers"]`` is then None) instead of raised."""
    import tinytt

    from .backend import get_backend, gpu_info

    try:
        import opt_einsum

        oe = opt_einsum.__version__
    except Exception:  # noqa: BLE001
        oe = None
    optional = {}
    for name in ("tqdm", "matplotlib", "hypothesis", "threadpoolctl"):
        try:
            mod = __import__(name)
            optional[name] = getattr(mod, "__version__", "installed")
        except Exception:  # noqa: BLE001
            optional[name] = None
    return {
        "tinytt": tinytt.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "numpy": numpy.__version__,
        "opt_einsum": oe,
        "backend": get_backend(),
        "backend_env": os.environ.get("TINYTT_BACKEND"),
        "env_errors": _env_errors(),
        "data_env": os.environ.get("TINYTT_DATA"),
        "blas": _blas_info(),
        "threads_env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                                   "OPENBLAS_THREAD_TIMEOUT", "TINYTT_NUM_THREADS")
                        if k in os.environ},
        "cpu_threads": _cpu_threads_info(),
        "gpu": gpu_info(),
        "optional": optional,
    }


def _cpu_threads_info() -> dict:
    """tinytt's worker threads and whether they may run BLAS work (the LSTM's pipelines)."""
    from . import blas_threads
    from .parallel import num_threads

    try:
        workers = num_threads()
    except ValueError:  # an invalid TINYTT_NUM_THREADS: collect_info lists it under env_errors
        workers = None
    return {"workers": workers, "blas_spin_log2": blas_threads.spin_log2(),
            "blas_work_in_threads": blas_threads.cooperative()}


def cmd_info(args, parser) -> int:
    """``tinytt info``: print :func:`collect_info` (as JSON with ``--json``); returns 0."""
    info = collect_info()
    if args.json:
        print(json.dumps(info, default=str))
        return 0
    blas = info["blas"].get("blas", {})
    gpu = info["gpu"]
    lines = [
        f"tinytt      {info['tinytt']}",
        f"python      {info['python']} ({info['platform']})",
        f"numpy       {info['numpy']}",
        f"opt_einsum  {info['opt_einsum']}",
        f"backend     {info['backend']}" + (f" (TINYTT_BACKEND={info['backend_env']})" if info["backend_env"] else ""),
        f"cpus        {info['cpu_count']}",
        f"blas        {blas.get('name', 'unknown')} {blas.get('version', '')}".rstrip(),
    ]
    if blas.get("openblas configuration"):
        lines.append(f"            {blas['openblas configuration']}")
    if info["blas"].get("simd"):
        lines.append(f"simd        {info['blas']['simd']}")
    for pool in info["blas"].get("threadpools", []):
        lines.append(f"threadpool  {pool.get('internal_api')} {pool.get('version')} "
                     f"threads={pool.get('num_threads')}")
    if info["threads_env"]:
        lines.append("threads env " + " ".join(f"{k}={v}" for k, v in info["threads_env"].items()))
    ct = info["cpu_threads"]
    lines.append(f"workers     {ct['workers'] or 'unknown (invalid TINYTT_NUM_THREADS)'}; "
                 f"BLAS work in worker threads (LSTM pipelines): "
                 + ("yes" if ct["blas_work_in_threads"] else
                    f"no (OpenBLAS spin 2**{ct['blas_spin_log2']} cycles: import tinytt before NumPy"
                    " or set OPENBLAS_THREAD_TIMEOUT=20)" if ct["blas_spin_log2"] else
                    "no (NumPy's BLAS thread count cannot be set)"))
    if gpu.get("cupy"):
        devs = ", ".join(f"{d['id']}: {d['name']} ({d['memory_gib']} GiB)" for d in gpu.get("devices", []))
        lines.append(f"cupy        {gpu['cupy']}; GPUs: {devs or 'none'}"
                     + (f" ({gpu['reason']})" if gpu.get("reason") else ""))
    else:
        lines.append(f"cupy        not available ({gpu.get('reason', '')})")
    lines.append(f"data        TINYTT_DATA={info['data_env'] or '(not set)'}")
    lines.append("optional    " + ", ".join(f"{k} {v or 'absent'}" for k, v in info["optional"].items()))
    lines += [f"error       {msg}" for msg in info["env_errors"]]
    print("\n".join(lines))
    return 0


# ----------------------------------------------------------------------------- demo
DEMO = {"vocab_size": 10000, "emb_dim": 64, "hidden": 128, "batch_size": 32, "bptt": 35, "lr": 3e-3,
        "dropout": 0.1, "clip": 1.0, "rank": 16, "cores": 3, "steps": 120, "seconds": 80.0, "seed": 0,
        "eval_batch_size": 32}


def run_demo(steps=None, seconds=None, vocab_size=None, show_progress=True, out=None) -> dict:
    """The ``tinytt demo`` experiment; returns its results (also printed to ``out``).

    Both models share sizes and seeds; the dense table starts at N(0, 0.1^2) (the usual
    language-model initialisation), the TT cores at the Glorot-through-cores
    initialisation. The dense and the TT model are trained in lockstep on the same batches (one step of
    each per batch), so both get the same number of steps even when the wall-time cap
    ``seconds`` (both models together) ends training before ``steps``.
    """
    from .backend import to_device
    from .data import Vocab, bptt_batches, load_embedded_corpus, progress
    from .functional import cross_entropy
    from .ops import reshape
    from .optim import Adam, clip_grad_norm
    from .train import LanguageModelTask, lm_stream

    out = sys.stdout if out is None else out
    cfg = dict(DEMO)
    for k, v in (("steps", steps), ("seconds", seconds), ("vocab_size", vocab_size)):
        if v is not None:
            cfg[k] = v
    t0 = time.perf_counter()
    corpus = load_embedded_corpus()
    vocab = Vocab.build([corpus["train"]], max_size=cfg["vocab_size"])
    streams = {k: lm_stream(v, vocab) for k, v in corpus.items()}
    task = LanguageModelTask({"train": streams["train"], "valid": streams["valid"]}, batch_size=cfg["batch_size"],
                             bptt=cfg["bptt"], eval_batch_size=cfg["eval_batch_size"], show_progress=False)
    print(f"tinytt demo: LSTM language model (embedding {cfg['emb_dim']}, hidden {cfg['hidden']}) on the corpus "
          f"built into tinytt (Python's documentation: {len(streams['train']):,} training tokens, vocabulary "
          f"{len(vocab):,}), dense vs TT embedding, {cfg['steps']} Adam steps of {cfg['batch_size']}x{cfg['bptt']} "
          f"tokens each (at most {cfg['seconds']:.0f} s). Data ready in {time.perf_counter() - t0:.1f} s.",
          file=out, flush=True)
    runs = []
    for kind in ("dense", "tt"):
        model_cfg = {"task": "lm", "embedding": kind, "emb_dim": cfg["emb_dim"], "hidden": cfg["hidden"],
                     "rank": cfg["rank"], "cores": cfg["cores"], "dropout": cfg["dropout"], "seed": cfg["seed"],
                     "dense_init_std": 0.1}
        model = models.build_model(model_cfg, len(vocab))
        model.train()
        runs.append({"kind": kind, "model": model, "opt": Adam(model.parameters(), lr=cfg["lr"]),
                     "state": None, "losses": [], "seconds": 0.0})
    deadline = time.perf_counter() + cfg["seconds"]
    batches = bptt_batches(streams["train"], cfg["batch_size"], cfg["bptt"])
    total = min(cfg["steps"], task.steps_per_epoch())
    steps = 0
    for x, y in progress(batches, total=total, desc="training dense + TT", disable=not show_progress):
        xd, yd = to_device(x), to_device(y.reshape(-1))
        for r in runs:
            ts = time.perf_counter()
            model = r["model"]
            logits, r["state"] = model(xd, model.detach_state(r["state"]))
            loss = cross_entropy(reshape(logits, (-1, logits.shape[-1])), yd)
            r["opt"].zero_grad()
            loss.backward()
            clip_grad_norm(r["opt"].params, cfg["clip"])
            r["opt"].step()
            r["losses"].append(loss.data)
            r["seconds"] += time.perf_counter() - ts
        steps += 1
        if steps >= total or time.perf_counter() > deadline:
            break
    results = []
    for r in runs:
        te = time.perf_counter()
        va = task.evaluate(r["model"], "valid")
        eval_s = time.perf_counter() - te
        losses = numpy.asarray([float(v) for v in r["losses"]])
        k = max(1, min(10, len(losses) // 4))
        row = {"embedding": r["kind"], **models.describe(r["model"]), "steps": len(losses),
               "train_ppl_first": float(numpy.exp(losses[:k].mean())),
               "train_ppl_last": float(numpy.exp(losses[-k:].mean())),
               "valid_perplexity": va["perplexity"], "train_seconds": round(r["seconds"], 2),
               "eval_seconds": round(eval_s, 2), "seconds": round(r["seconds"] + eval_s, 2)}
        if r["kind"] == "tt":
            emb = r["model"].embedding
            row["tt_shape"] = [list(emb.row_shape), list(emb.col_shape)]
            row["tt_ranks"] = list(emb.ranks)
        results.append(row)
    rows = []
    for r in results:
        name = "dense" if r["embedding"] == "dense" else (
            "TT " + "x".join(map(str, r["tt_shape"][0])) + " / " + "x".join(map(str, r["tt_shape"][1]))
            + f", rank {cfg['rank']}")
        rows.append([name, _fmt_int(r["embedding_parameters"]), f"{r['compression']:.1f}x",
                     _fmt_int(r["total_parameters"]), r["steps"],
                     f"{r['train_ppl_first']:.0f} -> {r['train_ppl_last']:.0f}",
                     f"{r['valid_perplexity']:.1f}", f"{r['seconds']:.1f}"])
    print(file=out)
    print(_table(rows, ["embedding", "emb. params", "compression", "total params", "steps",
                        "train ppl first -> last", "valid ppl", "time s"]), file=out)
    dense, tt_ = results
    ratio = tt_["valid_perplexity"] / dense["valid_perplexity"]
    falling = all(r["train_ppl_last"] < r["train_ppl_first"] for r in results)
    print(f"\nWhat it shows: the TT embedding stores the {len(vocab):,} x {cfg['emb_dim']} table in "
          f"{tt_['embedding_parameters']:,} numbers instead of {dense['embedding_parameters']:,} "
          f"({tt_['compression']:.0f}x fewer; the whole model has {dense['total_parameters'] / tt_['total_parameters']:.1f}x "
          f"fewer parameters) and its validation perplexity is {ratio:.2f}x the dense one after the same "
          f"{tt_['steps']} steps; training perplexity {'falls' if falling else 'does NOT fall'} for both "
          f"(total {time.perf_counter() - t0:.0f} s).", file=out, flush=True)
    return {"config": cfg, "vocab_size": len(vocab), "results": results,
            "seconds": round(time.perf_counter() - t0, 2)}


def cmd_demo(args, parser) -> int:
    """``tinytt demo``: the offline dense-vs-TT language-model run (``run_demo``); returns 0."""
    if args.vocab_size < 3:
        parser.error(f"--vocab-size must be at least 3 (2 ids are <pad>/<unk>), got {args.vocab_size}")
    res = run_demo(args.steps, args.seconds, args.vocab_size, show_progress=not args.no_progress)
    if args.json:
        print(json.dumps(res))
    return 0


# ----------------------------------------------------------------------------- main
def main(argv=None) -> int:
    """Entry point of ``tinytt`` and ``python -m tinytt``; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    sub = parser._subparsers._group_actions[0].choices[args.command]  # the sub-command's parser
    handler = {"demo": cmd_demo, "train": cmd_train, "eval": cmd_eval, "info": cmd_info}[args.command]
    env_errors = [] if args.command == "info" else _env_errors()  # (info reports them in its output)
    if env_errors:
        sub.error(env_errors[0])
    if args.command in ("demo", "train") and os.environ.get("TINYTT_KEEP_FREED_MEMORY", "1") != "0":
        keep_freed_memory()  # steady-state steps reuse mapped pages (tinytt/allocator.py)
    try:
        return handler(args, sub)
    except KeyboardInterrupt:
        _err("\ninterrupted")
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
