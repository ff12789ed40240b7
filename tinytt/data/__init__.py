"""Text data for tinytt: tokenizer, vocabulary, batching, dataset readers and loaders.

Typical use::

    from tinytt.data import load_dataset, tokenize, Vocab, BucketBatcher

    splits = load_dataset("sst2")                      # needs $TINYTT_DATA
    train_texts, train_labels = splits["train"]
    train_tokens = [tokenize(t) for t in train_texts]
    vocab = Vocab.build(train_tokens, max_size=20000)
    seqs = vocab.encode_batch(train_tokens)
    for ids, lengths, labels in BucketBatcher(seqs, train_labels, batch_size=64, seed=0):
        ...                                            # ids: int64 (B, T), lengths/labels: (B,)

Language modelling without any download::

    corpus = load_embedded_corpus()                    # {"train": [...], "valid": [...], "test": [...]}

Modules: :mod:`~tinytt.data.tokenizer`, :mod:`~tinytt.data.vocab`,
:mod:`~tinytt.data.batching`, :mod:`~tinytt.data.readers`,
:mod:`~tinytt.data.datasets`, :mod:`~tinytt.data.corpus`,
:mod:`~tinytt.data.downloads`, :mod:`~tinytt.data.paths`,
:mod:`~tinytt.data.progress`. Only numpy and the standard library are used
(``tqdm`` optionally).
"""

from .batching import BucketBatcher, bptt_batches, iterate_batches, pad_sequences
from .corpus import corpus_stats, embedded_documents, load_embedded_corpus
from .datasets import DATASETS, NUM_CLASSES, load_dataset, load_ptb, split_indices
from .downloads import SOURCES, download, fetch_url, sha256_file
from .paths import DATA_ENV_VAR, data_root, default_cache_dir
from .progress import ProgressBar, progress
from .readers import read_aclimdb, read_lm_tokens, read_tsv
from .tokenizer import tokenize
from .vocab import PAD, PAD_ID, UNK, UNK_ID, Vocab

__all__ = [
    # tokenizer / vocabulary
    "tokenize", "Vocab", "PAD", "UNK", "PAD_ID", "UNK_ID",
    # batching
    "pad_sequences", "BucketBatcher", "iterate_batches", "bptt_batches",
    # readers
    "read_tsv", "read_lm_tokens", "read_aclimdb",
    # datasets
    "load_dataset", "load_ptb", "split_indices", "DATASETS", "NUM_CLASSES",
    "load_embedded_corpus", "embedded_documents", "corpus_stats",
    # paths and download
    "data_root", "default_cache_dir", "DATA_ENV_VAR", "download", "fetch_url", "sha256_file", "SOURCES",
    # progress
    "progress", "ProgressBar",
]
