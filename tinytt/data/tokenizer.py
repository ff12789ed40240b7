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
* words are runs of letters, digits and ``_``, joined by inner ``-`` or by an
  apostrophe that does not start a clitic (``well-made``, ``o'brien``);
* any other non-space character is punctuation; a run of the same character is
  one token (``...``, ``!!``, ``--``).

Curly apostrophes (U+2019, U+2018) are treated as ``'``. HTML tags are only
removed for a fixed set of common tag names (``br p i b em strong u a span div
hr``...), so tokens such as ``<unk>`` or ``<eos>`` are *not* removed (they become
``<``, ``unk``, ``>``; use ``str.split`` for pre-tokenized text such as PTB).
Cost: linear in ``len(text)``.
"""

from __future__ import annotations

import re

__all__ = ["tokenize"]

_HTML_TAG = re.compile(
    r"<\s*/?\s*(?:br|p|i|b|u|em|strong|a|span|div|hr|font|center|blockquote|li|ul|ol|sup|sub|s|strike|tt|pre|code)"
    r"\b[^<>]{0,200}?/?\s*>",
    re.IGNORECASE,
)

_CLITICS = r"(?:s|m|d|ll|re|ve)"
_TOKEN = re.compile(
    r"\w+(?=n't\b)"  # word before n't  (do|n't)
    r"|n't\b"  # the n't itself
    rf"|'{_CLITICS}\b"  # 's 'm 'd 'll 're 've
    r"|-(?:lrb|rrb|lsb|rsb|lcb|rcb)-"  # PTB bracket escapes used by SST
    r"|\d+(?:[.,:]\d+)+"  # numbers with inner separators
    rf"|\w+(?:-\w+|'(?!{_CLITICS}\b|t\b)\w+)*"  # words, hyphenated words, o'brien
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
        Tokens in order; empty for empty or whitespace-only text. The rules are
        described in the module docstring. Linear cost in ``len(text)``.

    Raises
    ------
    TypeError
        If ``text`` is not a ``str``.
    """
    if not isinstance(text, str):
        raise TypeError(f"tokenize(text): text must be str, got {type(text).__name__}")
    text = _HTML_TAG.sub(" ", text)
    text = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    out: list[str] = []
    append, extend, finditer = out.append, out.extend, _TOKEN.finditer
    # No token spans whitespace, so whitespace chunks can be handled one by one;
    # purely alphabetic chunks (most of them) are single tokens: a 2x speed-up.
    for chunk in text.split():
        if chunk.isalpha():
            append(chunk)
        else:
            extend(m.group(0) for m in finditer(chunk))
    return out
