"""Token vocabulary: a deterministic token <-> id map with JSON persistence.

Ids are assigned as follows: ``<pad>`` = 0, ``<unk>`` = 1, then the counted
tokens by frequency (descending), ties broken by the token string (ascending,
Python ``str`` order), so the same counts always give the same ids.

The JSON file written by :meth:`Vocab.save` looks like::

    {"format": "tinytt.vocab", "version": 1, "tokens": ["<pad>", "<unk>", "the", ...]}

where ``tokens[i]`` is the token with id ``i``.
"""

from __future__ import annotations

import json
import numbers
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from .._validate import int_arg

__all__ = ["Vocab", "PAD", "UNK", "PAD_ID", "UNK_ID", "VOCAB_FORMAT"]

PAD = "<pad>"
UNK = "<unk>"
PAD_ID = 0
UNK_ID = 1
VOCAB_FORMAT = "tinytt.vocab"
_VOCAB_VERSION = 1


class Vocab:
    """Bijective map between token strings and integer ids ``0 .. len-1``.

    Build one with :meth:`Vocab.build` from token lists or a ``Counter``;
    the constructor takes the full id-ordered token list (``tokens[0]`` must be
    ``"<pad>"`` and ``tokens[1]`` ``"<unk>"``).

    Lookups cost O(1) per token.
    """

    __slots__ = ("_itos", "_stoi")

    def __init__(self, tokens: Sequence[str]):
        """Create a vocabulary whose id ``i`` is ``tokens[i]``.

        Raises ``TypeError`` if a token is not a ``str`` and ``ValueError`` if
        tokens repeat or the first two are not ``<pad>``, ``<unk>``.
        """
        itos = list(tokens)
        for i, tok in enumerate(itos):
            if not isinstance(tok, str):
                raise TypeError(f"Vocab(tokens): tokens[{i}] must be str, got {type(tok).__name__}")
        if itos[:2] != [PAD, UNK]:
            raise ValueError(f"Vocab(tokens): tokens must start with [{PAD!r}, {UNK!r}], got {itos[:2]!r}")
        stoi = {tok: i for i, tok in enumerate(itos)}
        if len(stoi) != len(itos):
            dup = next(t for t, c in Counter(itos).items() if c > 1)
            raise ValueError(f"Vocab(tokens): tokens must be unique, {dup!r} repeats")
        self._itos = itos
        self._stoi = stoi

    # ------------------------------------------------------------------ build
    @classmethod
    def build(
        cls,
        token_lists_or_counter: Iterable[Iterable[str]] | Mapping[str, int],
        max_size: int | None = None,
        min_freq: int = 1,
    ) -> "Vocab":
        """Build a vocabulary from token counts.

        Parameters
        ----------
        token_lists_or_counter : iterable of token lists, or mapping token -> count
            E.g. ``[tokenize(t) for t in texts]`` or a ``collections.Counter``.
            Occurrences of ``<pad>``/``<unk>`` themselves are ignored.
        max_size : int or None
            Upper bound on ``len(vocab)`` *including* the two specials (so the
            embedding table has at most ``max_size`` rows); must be >= 2.
            ``None`` keeps every token with ``count >= min_freq``.
        min_freq : int
            Minimum count (>= 1) for a token to get its own id.

        Returns
        -------
        Vocab
            ``<pad>`` = 0, ``<unk>`` = 1, then tokens by count descending, ties by
            token ascending. Cost O(N + V log V) for N tokens and V types.
        """
        if max_size is not None:
            max_size = int_arg("Vocab.build", "max_size", max_size, low=2)
        min_freq = int_arg("Vocab.build", "min_freq", min_freq)
        if isinstance(token_lists_or_counter, Mapping):
            counts = Counter()
            for tok, c in token_lists_or_counter.items():
                if not isinstance(tok, str):
                    raise TypeError(f"Vocab.build: counter keys must be str, got {type(tok).__name__}")
                if isinstance(c, bool) or not isinstance(c, numbers.Integral) or c < 0:
                    raise ValueError(f"Vocab.build: counts must be ints >= 0, got {c!r} for {tok!r}")
                counts[tok] += int(c)
        elif isinstance(token_lists_or_counter, (str, bytes)):
            raise TypeError("Vocab.build: expected token lists (e.g. [['a', 'b'], ['c']]) or a Counter, got a string")
        else:
            counts = Counter()
            for i, toks in enumerate(token_lists_or_counter):
                if isinstance(toks, str):
                    raise TypeError(
                        f"Vocab.build: element {i} is a str; pass a list of token lists, not a list of strings"
                    )
                counts.update(toks)
            bad = next((t for t in counts if not isinstance(t, str)), None)
            if bad is not None:
                raise TypeError(f"Vocab.build: tokens must be str, got {type(bad).__name__} {bad!r}")
        for special in (PAD, UNK):
            counts.pop(special, None)
        items = sorted(((t, c) for t, c in counts.items() if c >= min_freq), key=lambda tc: (-tc[1], tc[0]))
        if max_size is not None:
            items = items[: max_size - 2]
        return cls([PAD, UNK] + [t for t, _ in items])

    # --------------------------------------------------------------- lookups
    def __len__(self) -> int:
        """Number of ids, specials included."""
        return len(self._itos)

    def __contains__(self, token: object) -> bool:
        """Whether ``token`` has its own id."""
        return token in self._stoi

    def __iter__(self):
        """Iterate over tokens in id order."""
        return iter(self._itos)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self._itos == other._itos

    def __hash__(self) -> int:
        return hash(tuple(self._itos))

    def __repr__(self) -> str:
        head = ", ".join(repr(t) for t in self._itos[:6])
        more = ", ..." if len(self._itos) > 6 else ""
        return f"Vocab(size={len(self)}, tokens=[{head}{more}])"

    @property
    def tokens(self) -> list[str]:
        """Copy of the id-ordered token list."""
        return list(self._itos)

    @property
    def pad_id(self) -> int:
        """Id of ``<pad>`` (always 0)."""
        return PAD_ID

    @property
    def unk_id(self) -> int:
        """Id of ``<unk>`` (always 1)."""
        return UNK_ID

    def token_to_id(self, token: str) -> int:
        """Id of ``token``; ``1`` (``<unk>``) for unknown tokens."""
        return self._stoi.get(token, UNK_ID)

    def id_to_token(self, idx: int) -> str:
        """Token with id ``idx``; raises ``IndexError`` outside ``0 .. len-1``."""
        i = int(idx)
        if i != idx or not 0 <= i < len(self._itos):
            raise IndexError(f"Vocab.id_to_token: idx must be an int in [0, {len(self._itos)}), got {idx!r}")
        return self._itos[i]

    def encode(self, tokens: Iterable[str]) -> list[int]:
        """Map a token sequence to ids (unknown tokens -> 1). Cost O(len)."""
        if isinstance(tokens, str):
            raise TypeError("Vocab.encode(tokens): tokens must be a list of str, got a str (tokenize it first)")
        if not isinstance(tokens, (list, tuple)):
            tokens = list(tokens)
        get = self._stoi.get
        ids = [get(t, UNK_ID) for t in tokens]
        if UNK_ID in ids:   # only unknown tokens can be non-strings (keys are str): check those
            for t, i in zip(tokens, ids):
                if i == UNK_ID and not isinstance(t, str):
                    raise TypeError(f"Vocab.encode(tokens): tokens must be str, got {type(t).__name__} {t!r} "
                                    f"(ids are not tokens: decode maps ids back)")
        return ids

    def encode_batch(self, token_lists: Iterable[Iterable[str]]) -> list[list[int]]:
        """``[encode(toks) for toks in token_lists]``; pad the result with ``pad_sequences``."""
        return [self.encode(toks) for toks in token_lists]

    def decode(self, ids: Iterable[int], skip_pad: bool = False) -> list[str]:
        """Map ids (ints or a 1-D integer array) back to tokens.

        ``skip_pad=True`` drops ``<pad>`` ids. Raises ``IndexError`` for ids
        outside ``0 .. len-1``.
        """
        n = len(self._itos)
        out = []
        for i in ids:
            j = int(i)
            if j != i or not 0 <= j < n:
                raise IndexError(f"Vocab.decode: ids must be ints in [0, {n}), got {i!r}")
            if skip_pad and j == PAD_ID:
                continue
            out.append(self._itos[j])
        return out

    # ----------------------------------------------------------- persistence
    def save(self, path: str | os.PathLike) -> None:
        """Write the vocabulary to ``path`` as UTF-8 JSON (see module docstring).

        The file is written to a temporary name and renamed, so a crash never
        leaves a half-written vocabulary.
        """
        path = Path(path)
        payload = {"format": VOCAB_FORMAT, "version": _VOCAB_VERSION, "tokens": self._itos}
        tmp = path.with_name(path.name + ".tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(payload, f, ensure_ascii=False)
                f.write("\n")
            os.replace(tmp, path)
        finally:
            if tmp.exists():   # a failed write (e.g. a token that is not encodable UTF-8) leaves nothing
                tmp.unlink()

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Vocab":
        """Read a vocabulary written by :meth:`save`.

        Raises ``FileNotFoundError`` if ``path`` does not exist and
        ``ValueError`` (naming the file) if it is not valid JSON, lacks the
        ``"format": "tinytt.vocab"`` marker, has an unsupported version or a
        malformed token list.
        """
        path = Path(path)
        try:
            with open(path, encoding="utf-8") as f:
                payload = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"Vocab.load: {path} is not a tinytt vocabulary JSON file ({e})") from e
        if not isinstance(payload, dict) or payload.get("format") != VOCAB_FORMAT:
            raise ValueError(
                f"Vocab.load: {path} is not a tinytt vocabulary file "
                f"(expected a JSON object with \"format\": \"{VOCAB_FORMAT}\")"
            )
        version = payload.get("version")
        if version != _VOCAB_VERSION:
            raise ValueError(f"Vocab.load: {path} has unsupported version {version!r} (supported: {_VOCAB_VERSION})")
        tokens = payload.get("tokens")
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise ValueError(f"Vocab.load: {path}: \"tokens\" must be a list of strings")
        try:
            return cls(tokens)
        except (TypeError, ValueError) as e:
            raise ValueError(f"Vocab.load: {path}: {e}") from e
