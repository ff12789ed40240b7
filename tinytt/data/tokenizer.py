"""Word tokenizer for English text.

``tokenize(text)`` lowercases, removes simple HTML tags (IMDB reviews contain
``<br />``), and splits into words, numbers and punctuation. Contractions are
split the Penn-Treebank way, which is also how SST and MR are already
tokenized, so raw and pre-tokenized text end up with the same tokens:

>>> tokenize("I don't like it's <br />ending... Mr. O'Brien's 3.5/10!")
['i', 'do', "n't", 'like', 'it', "'s", 'ending', '...', 'mr', '.', "o'brien", "'s", '3.5', '/', '10', '!']

Rules, in order of precedence at each position:

* ``n't`` is split off the word before it (``don't`` -> ``do n't``,
  ``can't`` -> ``ca n't``, as in the PTB);
* the clitics ``'s 'm 'd 'll 're 've`` are separate tokens (``it's`` -> ``it 's``);
* the PTB bracket escapes ``-lrb- -rrb- -lsb- -rsb- -lcb- -rcb-`` (used by SST)
  are single tokens;
* numbers keep inner ``.``/``,``/``:`` between digits (``3.5``, ``1,000``, ``10:30``);
* words are runs of letters, digits, ``_`` and combining marks (Unicode category
  M: accents, the dot of ``i̇``, vowel signs), joined by inner ``-`` or by an
  apostrophe that does not start a clitic (``well-made``, ``o'brien``);
* any other non-space character is punctuation; a run of the same character is
  one token (``...``, ``!!``, ``--``).

Text is lowercased and then normalised to NFC, so a word written with
precomposed or with combining accents gives one token (``café`` either way), and
a combining mark stays in its word (``İstanbul`` -> ``i̇stanbul``, whose lowercase
``i`` + U+0307 has no precomposed form). On SST-2, SST-5, MR and IMDB this changes
no token (the same 186,291 / 228,043 / 230,861 / 13,298,345 tokens).

Curly apostrophes (U+2019, U+2018) are treated as ``'``. HTML tags are only
removed for a fixed set of common tag names (``br p i b em strong u a span div
hr``...), written without a space after ``<`` or ``</`` (``<br />``, ``</p>``), so
tokens such as ``<unk>`` or ``<eos>`` are *not* removed (they become ``<``, ``unk``,
``>``; use ``str.split`` for pre-tokenized text such as PTB), nor is text such as
``x < b and y > c``.
Cost: linear in ``len(text)``.
"""

from __future__ import annotations

import functools
import re
import sys
import unicodedata

__all__ = ["tokenize"]

_HTML_TAG = re.compile(
    r"</?(?:br|p|i|b|u|em|strong|a|span|div|hr|font|center|blockquote|li|ul|ol|sup|sub|s|strike|tt|pre|code)"
    r"\b[^<>]{0,200}?/?\s*>",
    re.IGNORECASE,
)

_CLITICS = r"(?:s|m|d|ll|re|ve)"


def _combining_marks(astral: bool) -> str:
    """A regex character-class body (ranges) of the code points of Unicode category M
    (Mn, Mc, Me), none of which Python's ``\\w`` matches: those below U+10000, or with
    ``astral`` those above (marks live in planes 0, 1 and 14 only)."""
    cat = unicodedata.category
    codes = (*range(0x10000, 0x20000), *range(0xE0000, min(0xE1000, sys.maxunicode + 1))) if astral else range(0x10000)
    spans: list[list[int]] = []
    for c in codes:
        if cat(chr(c))[0] == "M":
            if spans and spans[-1][1] == c - 1:
                spans[-1][1] = c
            else:
                spans.append([c, c])
    return "".join(chr(lo) if lo == hi else f"{chr(lo)}-{chr(hi)}" for lo, hi in spans)


@functools.cache
def _token_pattern(astral: bool = False) -> re.Pattern:
    """The token regex; a word character ``w`` is ``\\w`` or a combining mark below U+10000
    (with ``astral``: of any plane). Built on first use (the scan of the code points takes
    ~30 ms). ``astral`` is only asked for when the text holds a character above U+FFFF:
    ``re`` tests those members of a class one range at a time, which makes every word
    ~1.8x slower to match."""
    w = f"[\\w{_combining_marks(False)}{_combining_marks(True) if astral else ''}]"
    return re.compile(
        rf"{w}+(?=n't\b)"  # word before n't  (do|n't)
        r"|n't\b"  # the n't itself
        rf"|'{_CLITICS}\b"  # 's 'm 'd 'll 're 've
        r"|-(?:lrb|rrb|lsb|rsb|lcb|rcb)-"  # PTB bracket escapes used by SST
        r"|\d+(?:[.,:]\d+)+"  # numbers with inner separators
        rf"|{w}+(?:-{w}+|'(?!{_CLITICS}\b|t\b){w}+)*"  # words, hyphenated words, o'brien
        r"|([^\w\s])\1*"  # punctuation; runs of one character kept together
    )


def tokenize(text: str) -> list[str]:
    """Split ``text`` into lowercase word and punctuation tokens.

    Parameters
    ----------
    text : str
        Any text; HTML line breaks and simple formatting tags are removed.

    Returns
    -------
    list[str]
        Tokens in order, lowercased and NFC-normalised; empty for empty or
        whitespace-only text. Combining marks (Unicode category M) stay in
        their word. The rules are described in the module docstring. Linear
        cost in ``len(text)``.

    Raises
    ------
    TypeError
        If ``text`` is not a ``str``.
    """
    if not isinstance(text, str):
        raise TypeError(f"tokenize(text): text must be str, got {type(text).__name__}")
    text = _HTML_TAG.sub(" ", text)
    text = unicodedata.normalize("NFC", text.lower()).replace("\u2019", "'").replace("\u2018", "'")
    out: list[str] = []
    append, extend = out.append, out.extend
    finditer = _token_pattern(not text.isascii() and max(text) > "\uffff").finditer
    # No token spans whitespace, so whitespace chunks can be handled one by one;
    # purely alphabetic chunks (most of them) are single tokens: a 2x speed-up.
    for chunk in text.split():
        if chunk.isalpha():
            append(chunk)
        else:
            extend(m.group(0) for m in finditer(chunk))
    return out
