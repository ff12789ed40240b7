"""Named datasets: SST-2, SST-5, MR, IMDB (classification) and PTB (language modelling).

Files are looked up below the data root (:func:`tinytt.data.paths.data_root`:
``data_dir`` argument, else ``$TINYTT_DATA``, else the user cache dir) in the
layout of ``/work/shared/data`` (each ``.tsv.gz`` may also be a plain ``.tsv``,
each PTB ``.txt.gz`` a plain ``.txt``)::

    sst2/{train,dev,test}.tsv.gz      sst5/{train,dev,test}.tsv.gz
    mr/all.tsv.gz                     imdb/{train,test}.tsv.gz
    ptb/ptb.{train,valid,test}.txt.gz

IMDB may instead be given as ``imdb/aclImdb_v1.tar.gz`` or ``imdb/aclImdb/``
(the original release; ``download=True`` fetches the tarball). The texts are
returned raw; tokenize them with :func:`tinytt.data.tokenize`.
"""

from __future__ import annotations

import numbers
import os
from pathlib import Path

import numpy as np

from .downloads import SOURCES, download as _download
from .paths import DATA_ENV_VAR, data_root
from .readers import read_aclimdb, read_lm_tokens, read_tsv

__all__ = ["DATASETS", "NUM_CLASSES", "load_dataset", "load_ptb", "split_indices"]

#: split name in the result -> file stem on disk (``None``: carved from ``all``).
DATASETS: dict[str, dict[str, str | None]] = {
    "sst2": {"train": "train", "valid": "dev", "test": "test"},
    "sst5": {"train": "train", "valid": "dev", "test": "test"},
    "mr": {"train": None, "valid": None, "test": None},
    "imdb": {"train": "train", "valid": None, "test": "test"},
}
#: number of label values per classification dataset (labels are 0 .. k-1)
NUM_CLASSES = {"sst2": 2, "sst5": 5, "mr": 2, "imdb": 2}

Split = tuple[list[str], list[int]]


def split_indices(n: int, valid_fraction: float = 0.1, test_fraction: float = 0.1,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded train/valid/test partition of ``range(n)``.

    ``perm = np.random.default_rng(seed).permutation(n)``; the first
    ``round(test_fraction * n)`` entries of ``perm`` are test, the next
    ``round(valid_fraction * n)`` valid, the rest train. Each part is returned
    sorted ascending (original order). For MR (n = 10,662) the defaults give
    8,530 / 1,066 / 1,066, the sizes of the Hugging Face ``rotten_tomatoes``
    split (not the same examples). ``n`` and ``seed`` are ints >= 0, the fractions numbers
    in [0, 1) with a sum below 1 (ValueError naming the argument otherwise).
    """
    for nm, v in (("n", n), ("seed", seed)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 0:
            raise ValueError(f"split_indices: {nm} must be an int >= 0, got {v!r}")
    for nm, v in (("valid_fraction", valid_fraction), ("test_fraction", test_fraction)):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not 0.0 <= v < 1.0:
            raise ValueError(f"split_indices: {nm} must be a number in [0, 1), got {v!r}")
    if valid_fraction + test_fraction >= 1.0:
        raise ValueError(f"split_indices: valid_fraction + test_fraction must be < 1, "
                         f"got {valid_fraction} + {test_fraction}")
    perm = np.random.default_rng(seed).permutation(n)
    n_test = int(round(test_fraction * n))
    n_valid = int(round(valid_fraction * n))
    test = np.sort(perm[:n_test])
    valid = np.sort(perm[n_test:n_test + n_valid])
    train = np.sort(perm[n_test + n_valid:])
    return train, valid, test


def _missing(what: str, looked: list[Path], root: Path, data_dir, downloadable: bool,
             download: bool = False) -> FileNotFoundError:
    source = "data_dir argument" if data_dir is not None else (
        f"${DATA_ENV_VAR}" if os.environ.get(DATA_ENV_VAR) else f"default (${DATA_ENV_VAR} is not set)")
    hint = (f"Set {DATA_ENV_VAR} to the directory that holds the dataset folders "
            f"(e.g. export {DATA_ENV_VAR}=/work/shared/data) or pass data_dir (CLI: --data-dir)")
    if downloadable:
        hint += ", or pass download=True (CLI: --download) to fetch it"
    elif download:
        hint = (f"download=True (CLI: --download) cannot fetch it: tinytt has no download source for it "
                f"(only for {', '.join(sorted(SOURCES))}). " + hint)
    paths = "\n  ".join(str(p) for p in looked)
    return FileNotFoundError(f"{what} not found under data root {root} ({source}). Looked for:\n  {paths}\n{hint}.")


def _find(root: Path, name: str, filenames: list[str]) -> Path | None:
    for fn in filenames:
        p = root / name / fn
        if p.is_file():
            return p
    return None


def _subset(texts, labels, idx) -> Split:
    return [texts[i] for i in idx], [labels[i] for i in idx]


def load_dataset(
    name: str,
    data_dir: str | os.PathLike | None = None,
    *,
    download: bool = False,
    seed: int = 0,
    valid_fraction: float = 0.1,
    test_fraction: float = 0.1,
) -> dict[str, Split | None]:
    """Load a sentence/document classification dataset.

    Parameters
    ----------
    name : {"sst2", "sst5", "mr", "imdb"}
    data_dir : path or None
        Data root (default ``$TINYTT_DATA``, else the user cache dir).
    download : bool
        Download when missing: IMDB's ``aclImdb_v1.tar.gz`` is fetched if no copy
        is found. SST and MR have no download source: files that are present are
        used, missing ones raise ``FileNotFoundError`` saying so.
    seed, valid_fraction, test_fraction
        MR only (it has no official split): the splits are carved from
        ``mr/all.tsv.gz`` by :func:`split_indices` (default 80/10/10, seed 0).

    Returns
    -------
    dict
        ``{"train": (texts, labels), "valid": (texts, labels) or None,
        "test": (texts, labels)}`` with raw text strings and int labels
        ``0 .. NUM_CLASSES[name]-1``. ``valid`` is SST's ``dev`` set, MR's
        carved split, and ``None`` for IMDB (carve one from train with
        :func:`split_indices` if needed).

    Raises
    ------
    ValueError
        Unknown ``name`` or malformed files.
    FileNotFoundError
        Data missing; the message lists the paths looked at and how to get them.
    """
    if name not in DATASETS:
        raise ValueError(f"load_dataset: name must be one of {sorted(DATASETS)}, got {name!r} "
                         f"(for Penn Treebank use load_ptb)")

    def read_checked(path):
        """read_tsv, then the dataset's own label range (read_tsv allows up to MAX_CLASSES)."""
        texts, labels = read_tsv(path)
        bad = [y for y in labels if not 0 <= y < NUM_CLASSES[name]]
        if bad:
            raise ValueError(f"load_dataset: {path} has label {bad[0]}, but {name!r} has classes "
                             f"0..{NUM_CLASSES[name] - 1}")
        return texts, labels

    root = data_root(data_dir)
    if name == "mr":
        fns = ["all.tsv.gz", "all.tsv"]
        path = _find(root, name, fns)
        if path is None:
            raise _missing("dataset 'mr'", [root / name / f for f in fns], root, data_dir, False, download)
        texts, labels = read_checked(path)
        tr, va, te = split_indices(len(texts), valid_fraction, test_fraction, seed)
        return {"train": _subset(texts, labels, tr), "valid": _subset(texts, labels, va),
                "test": _subset(texts, labels, te)}

    out: dict[str, Split | None] = {}
    looked: list[Path] = []
    missing = False
    paths = {}
    for split, stem in DATASETS[name].items():
        if stem is None:
            continue
        fns = [f"{stem}.tsv.gz", f"{stem}.tsv"]
        looked += [root / name / f for f in fns]
        paths[split] = _find(root, name, fns)
        missing = missing or paths[split] is None
    if not missing:
        for split, stem in DATASETS[name].items():
            out[split] = read_checked(paths[split]) if stem is not None else None
        return out
    if name == "imdb":
        for alt in ("aclImdb_v1.tar.gz", "aclImdb"):
            p = root / "imdb" / alt
            looked.append(p)
            if p.exists():
                break
        else:
            if not download:
                raise _missing("dataset 'imdb'", looked, root, data_dir, True)
            p = _download("imdb", root) / "aclImdb_v1.tar.gz"
        acl = read_aclimdb(p)
        return {"train": acl["train"], "valid": None, "test": acl["test"]}
    raise _missing(f"dataset {name!r}", looked, root, data_dir, False, download)


def load_ptb(
    data_dir: str | os.PathLike | None = None,
    *,
    download: bool = False,
    eos: str | None = "<eos>",
) -> dict[str, list[str]]:
    """Load the Penn Treebank language-modelling data (Mikolov's version).

    Reads ``ptb/ptb.{train,valid,test}.txt.gz`` (or ``.txt``) below the data
    root. Each line is split on whitespace and followed by an ``eos`` token
    (``"<eos>"``; ``None`` adds none), the usual PTB convention: train has
    929,589 tokens and 10,000 types including ``<eos>``. Words are already
    lowercased, numbers are ``N`` and rare words ``<unk>`` (which
    ``Vocab.build`` maps to its own ``<unk>`` id 1).

    Returns ``{"train": tokens, "valid": tokens, "test": tokens}``. With
    ``download=True`` missing files are fetched from the canonical address
    (checksums verified). Raises ``FileNotFoundError`` naming the paths
    looked at when the data is missing.
    """
    root = data_root(data_dir)
    paths, looked = {}, []
    for split in ("train", "valid", "test"):
        fns = [f"ptb.{split}.txt.gz", f"ptb.{split}.txt"]
        looked += [root / "ptb" / f for f in fns]
        paths[split] = _find(root, "ptb", fns)
    if any(p is None for p in paths.values()):
        if not download:
            raise _missing("dataset 'ptb'", looked, root, data_dir, True)
        _download("ptb", root)
        paths = {s: p if p is not None else root / "ptb" / f"ptb.{s}.txt" for s, p in paths.items()}
    return {split: read_lm_tokens(p, eos=eos) for split, p in paths.items()}
