"""A query AST as a tantivy query over the fields of :mod:`.terms` (pure but for tantivy).

Field values match whole and case-insensitively; a word that is a number also
matches its one canonical spelling (``2.50`` finds ``2.5``). Ranges need numbers,
dates or times: the bounds are read with the attribute's VR (``StudyTime:[0800
TO 1200]`` is 08:00 to 12:00), or as plain numbers for private attributes. Free text
matches words; a phrase, or a word that the tokenizer splits (``DOE^JOHN``), matches
those words in a row.
"""

from __future__ import annotations

from collections.abc import Callable

import tantivy
from pydicom.datadict import dictionary_VR

from pacsnode.node.errors import BadRequest
from pacsnode.node.search.fields import StandardTag, canonical_number, fold, sort_number
from pacsnode.node.search.query_ast import (
    All,
    And,
    FieldRef,
    Joker,
    Match,
    Node,
    Not,
    Phrase,
    Range,
    Text,
    Wildcard,
    Word,
)
from pacsnode.node.search.terms import (
    key_hash,
    range_term,
    regex_literal,
    term_text,
    value_term,
    words,
)

VALUES = "v"
RANGES = "r"
TEXT = "t"
#: past the last encoded number in text order (they are lower-case hex digits)
_AFTER_NUMBERS = "g"


class UnsupportedQuery(BadRequest):
    """The query parses but asks what the index cannot answer (a range over text)."""

    code = "unsupported-search-query"


def to_query(node: Node, index: tantivy.Index) -> tantivy.Query:
    schema = index.schema
    if isinstance(node, All):
        return tantivy.Query.all_query()
    if isinstance(node, Text):
        return _free_text(node.value, schema)
    if isinstance(node, Match):
        return _match(node, index)
    if isinstance(node, Not):
        return tantivy.Query.boolean_query(
            [
                (tantivy.Occur.Must, tantivy.Query.all_query()),
                (tantivy.Occur.MustNot, to_query(node.item, index)),
            ]
        )
    occur = tantivy.Occur.Must if isinstance(node, And) else tantivy.Occur.Should
    return tantivy.Query.boolean_query([(occur, to_query(item, index)) for item in node.items])


def _pattern(value: Wildcard, literal: Callable[[str], str]) -> str:
    jokers = {Joker.ANY: ".*", Joker.ONE: "."}
    return "(?s)" + "".join(
        jokers[part] if isinstance(part, Joker) else regex_literal(literal(part))
        for part in value.parts
    )


def _regex(schema: tantivy.Schema, field: str, pattern: str) -> tantivy.Query:
    try:
        return tantivy.Query.regex_query(schema, field, pattern)
    except ValueError as error:  # tantivy bounds the automaton a pattern compiles to
        raise UnsupportedQuery(f"a wildcard pattern too complex to run: {error}") from None


def _free_text(value: Word | Wildcard | Phrase, schema: tantivy.Schema) -> tantivy.Query:
    if isinstance(value, Wildcard):
        return _regex(schema, TEXT, _pattern(value, str.lower))
    tokens = words(value.text)
    if not tokens:
        return tantivy.Query.empty_query()
    if len(tokens) == 1:
        return tantivy.Query.term_query(schema, TEXT, tokens[0])
    return tantivy.Query.phrase_query(schema, TEXT, tokens)


def _match(node: Match, index: tantivy.Index) -> tantivy.Query:
    schema = index.schema
    key = node.field.key
    value = node.value
    if isinstance(value, Range):
        return _range(node.field, value, index)
    if isinstance(value, Wildcard):
        return _regex(
            schema,
            VALUES,
            regex_literal(value_term(key, "")) + _pattern(value, lambda p: term_text(fold(p))),
        )
    texts = {fold(value.text)}
    number = canonical_number(value.text)
    if number is not None:
        texts.add(number)
    return tantivy.Query.term_set_query(schema, VALUES, [value_term(key, t) for t in texts])


def _vr(field: FieldRef) -> str | None:
    leaf = field.path[-1]
    if not isinstance(leaf, StandardTag):
        return None
    try:
        return dictionary_VR(leaf.tag)
    except KeyError:
        return None


def _bound(field: FieldRef, text: str | None, vr: str | None) -> float | None:
    if text is None:
        return None
    number = sort_number(vr, text)
    if number is None:
        raise UnsupportedQuery(
            f"a range on {field.key} needs numbers, dates or times; {text!r} is none"
        )
    return number


def _range(field: FieldRef, value: Range, index: tantivy.Index) -> tantivy.Query:
    vr = _vr(field)
    low = _bound(field, value.low, vr)
    high = _bound(field, value.high, vr)
    prefix = key_hash(field.key)
    low_term = prefix if low is None else range_term(field.key, low)
    high_term = prefix + _AFTER_NUMBERS if high is None else range_term(field.key, high)
    opening = "[" if value.include_low else "{"
    closing = "]" if value.include_high else "}"
    # only hex digits and "g" in the bounds: nothing the query parser would read as syntax
    return index.parse_query(f"{RANGES}:{opening}{low_term} TO {high_term}{closing}", [RANGES])
