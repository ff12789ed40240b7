"""Tests for tinytt.data.tokenizer."""

import re
import sys
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinytt.data import tokenize
from tinytt.data import tokenizer as tok_mod


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Hello, World!", ["hello", ",", "world", "!"]),
        ("I don't know", ["i", "do", "n't", "know"]),
        ("can't won't", ["ca", "n't", "wo", "n't"]),
        ("It's I'm we'll they're I've he'd",
         ["it", "'s", "i", "'m", "we", "'ll", "they", "'re", "i", "'ve", "he", "'d"]),
        # already PTB-tokenized text (SST, MR) gives the same tokens
        ("it 's a does n't -lrb- b -rrb- .", ["it", "'s", "a", "does", "n't", "-lrb-", "b", "-rrb-", "."]),
        ("Great movie.<br /><br />Loved it", ["great", "movie", ".", "loved", "it"]),
        ("<i>Bold</i> <BR> <p class='x'>y</p>", ["bold", "y"]),
        ("<unk> <eos>", ["<", "unk", ">", "<", "eos", ">"]),
        ("Wait... what?!", ["wait", "...", "what", "?", "!"]),
        ("3.5/10, 1,000 people at 10:30pm", ["3.5", "/", "10", ",", "1,000", "people", "at", "10:30", "pm"]),
        ("well-made O'Brien rock'n'roll", ["well-made", "o'brien", "rock'n'roll"]),
        ("dogs' toys 'quoted'", ["dogs", "'", "toys", "'", "quoted", "'"]),
        ("It\u2019s fine", ["it", "'s", "fine"]),
        ("sys.argv and __init__", ["sys", ".", "argv", "and", "__init__"]),
        ("Café naïve", ["café", "naïve"]),
        ("", []),
        ("   \n\t ", []),
    ],
)
def test_tokenize_examples(text, expected):
    assert tokenize(text) == expected


def test_tokenize_rejects_non_str():
    with pytest.raises(TypeError, match="text must be str"):
        tokenize(b"bytes")
    with pytest.raises(TypeError):
        tokenize(["a", "b"])


@given(st.text(max_size=200))
def test_tokens_nonempty_without_whitespace(text):
    toks = tokenize(text)
    assert all(t and not any(c.isspace() for c in t) for t in toks)


@given(st.text(max_size=200))
def test_chunked_fast_path_equals_plain_regex(text):
    # tokenize() splits on whitespace first for speed; that must not change the result
    cleaned = unicodedata.normalize("NFC", tok_mod._HTML_TAG.sub(" ", text).lower())
    cleaned = cleaned.replace("\u2019", "'").replace("\u2018", "'")
    assert tokenize(text) == [m.group(0) for m in tok_mod._token_pattern(True).finditer(cleaned)]


@pytest.mark.parametrize("text, expected", [
    ("İstanbul", ["i\u0307stanbul"]),                     # 'İ'.lower() is 'i' + U+0307: was ['i', '̇', 'stanbul']
    ("cafe\u0301 nai\u0308ve", ["café", "naïve"]),        # NFD input: was ['cafe', '́', 'nai', '̈', 've']
    ("CAFÉ café", ["café", "café"]),
    ("हिन्दी, ok", ["हिन्दी", ",", "ok"]),                    # vowel signs and virama (Mc, Mn)
    ("do\u0301n't", ["dó", "n't"]),
    ("x\U0001d165y 😀", ["x\U0001d165y", "😀"]),          # a mark above U+FFFF
])
def test_words_keep_their_combining_marks(text, expected):
    assert tokenize(text) == expected


def test_every_combining_mark_stays_in_its_word():
    marks = [chr(c) for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c))[0] == "M"]
    bmp = "".join(m for m in marks if m <= "\uffff")
    assert len(tokenize("a" + bmp + "b")) == 1
    assert len(tokenize("a" + "".join(marks) + "b")) == 1


_ascii = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=120)


@given(_ascii)
def test_retokenizing_joined_tokens_is_stable(text):
    toks = tokenize(text)
    assert tokenize(" ".join(toks)) == toks


@given(_ascii)
def test_tokens_are_lowercase_ascii(text):
    assert all(t == t.lower() for t in tokenize(text))
    # every letter and digit of the (tag-free) input survives
    plain = re.sub(r"<[^<>]*>", "", text)
    if plain == text:
        assert sorted(c for c in "".join(tokenize(text)) if c.isalnum()) == sorted(
            c for c in text.lower() if c.isalnum()
        )
