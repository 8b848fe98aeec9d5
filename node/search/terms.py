"""The terms a document's values become in the tantivy index, for both sides (pure).

- ``v``: ``KEY=value`` for each field value, folded: exact and wildcard matching on
  the whole value run on these (a wildcard is a regular expression over the terms,
  walked with the term dictionary, anchored on the ``KEY=`` prefix).
- ``r``: ``HASH`` + ``NUMBER`` for each value with a sort number: ``HASH`` is 16 hex
  digits of the key's BLAKE2b (fixed width, no character the query parser treats
  specially), ``NUMBER`` 16 hex digits of the float's bits flipped so that text order
  is numeric order. A range is then a range of terms. (tantivy's numeric JSON
  fields would do this natively, but a path holding both integers and fractions
  makes its range query panic in 0.27, and DS values are like that.)
- ``t``: the free text, split as tantivy's default tokenizer splits it.
"""

from __future__ import annotations

import functools
import hashlib
import re
import struct

_DOUBLE = struct.Struct(">d")
_UNSIGNED = struct.Struct(">Q")
_SIGN = 1 << 63
_ALL_BITS = (1 << 64) - 1
#: tantivy's default tokenizer keeps runs of alphanumerics and drops longer tokens
_WORD = re.compile(r"[^\W_]+")
MAX_WORD_CHARS = 40


#: The terms of a document cross into tantivy as one string split by its whitespace
#: tokenizer (a list of strings, or a regex tokenizer, is several times slower), so
#: white space inside a value is written as this character, which Rust's
#: ``char::is_whitespace`` does not split on; the query side writes it the same way.
SPACE = "\x1f"
_WHITE_SPACE = re.compile(r"\s")


def term_text(text: str) -> str:
    return _WHITE_SPACE.sub(SPACE, text)


def value_term(key: str, text: str) -> str:
    return term_text(f"{key}={text}")


@functools.lru_cache(maxsize=65536)  # a few thousand keys recur in every document
def key_hash(key: str) -> str:
    return hashlib.blake2b(key.encode("utf-8"), digest_size=8).hexdigest()


def encode_number(number: float) -> str:
    """16 hex digits whose text order is the numbers' order (-0.0 sorts as 0.0)."""
    bits = _UNSIGNED.unpack(_DOUBLE.pack(number + 0.0))[0]
    ordered = bits ^ _ALL_BITS if bits & _SIGN else bits | _SIGN
    return f"{ordered:016x}"


@functools.lru_cache(maxsize=65536)  # most numbers of an instance recur in its series
def range_term(key: str, number: float) -> str:
    return key_hash(key) + encode_number(number)


def words(text: str) -> list[str]:
    """The free-text tokens of ``text``, as the index holds them."""
    return [w for w in (m.lower() for m in _WORD.findall(text)) if len(w) <= MAX_WORD_CHARS]


def regex_literal(text: str) -> str:
    """``text`` matched literally in tantivy's regular expressions (Rust regex syntax):
    every character that is not alphanumeric is written as a hex escape."""
    return "".join(c if c.isalnum() else f"\\x{{{ord(c):X}}}" for c in text)
