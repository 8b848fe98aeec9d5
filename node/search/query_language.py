"""The search query language: a string in, a small typed AST out (pure).

    CHEST                                   free text: a word in any text attribute
    "CT CHEST"                              free text: these words in a row
    Modality:CT AND BodyPartExamined:CHEST  a field holds the value (whole value, any case)
    SeriesDescription:*axial*               wildcards on the whole value: * any run, ? one
    0008,0060:CT  00080060:CT               a field by its tag
    "GEMS_ACQU_01",0019,xx10:foo            a private attribute: creator, group, element
    ReferencedImageSequence.ReferencedSOPInstanceUID:1.2.3   inside a sequence (any item)
    StudyDate:[20200101 TO 20201231]        a range, bounds included; { } excludes a bound
    SliceThickness:[1 TO 2.5]  StudyDate:[20200101 TO *]     numbers; * leaves an end open
    Modality:(CT OR MR)                     several values of one field
    NOT, AND, OR and ( )                    AND is implied between terms; NOT binds tightest,
                                            then AND, then OR

Operators are upper case (``and`` is a word). A backslash makes the next character
literal (``\\*``, ``\\:``, ``\\(``, ``\\"``). Field names are DICOM keywords (any case)
or tags; private elements are written ``xxEE``, the block byte left to the creator.
Bad input raises :class:`QuerySyntaxError`, carrying the position and what was expected.
An empty query is :class:`All`.
"""

from __future__ import annotations

import functools

from pydicom.datadict import keyword_dict

from pacsnode.node.search.fields import PathPart, PrivateTag, StandardTag
from pacsnode.node.search.query_ast import (
    All,
    And,
    FieldRef,
    Joker,
    Match,
    Node,
    Not,
    Or,
    Phrase,
    QuerySyntaxError,
    Range,
    Text,
    Value,
    Wildcard,
    Word,
)

__all__ = [
    "All",
    "And",
    "FieldRef",
    "Joker",
    "Match",
    "Node",
    "Not",
    "Or",
    "Phrase",
    "QuerySyntaxError",
    "Range",
    "Text",
    "Value",
    "Wildcard",
    "Word",
    "parse",
]

# --- the parser ---------------------------------------------------------------------

#: characters that end a bare word (besides white space)
_WORD_ENDS = frozenset('()"')
_OPERATORS = frozenset({"AND", "OR", "NOT"})
_MAX_DEPTH = 100  # parentheses and NOTs nested deeper are refused, not a RecursionError


def parse(text: str) -> Node:
    """The AST of a query string; raises :class:`QuerySyntaxError` for bad input."""
    parser = _Parser(text)
    parser.skip_space()
    if parser.at_end():
        return All()
    node = parser.or_expression(None, 0)
    parser.skip_space()
    if not parser.at_end():
        parser.fail("an operator or the end of the query")
    return node


@functools.cache
def _keywords() -> dict[str, int]:
    """DICOM keywords in lower case -> tag, so that ``modality`` works too."""
    return {keyword.lower(): tag for keyword, tag in keyword_dict.items()}


class _Parser:
    """Recursive descent over the characters (field names need look-ahead, not tokens)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    # -- characters

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def describe(self, position: int) -> str:
        if position >= len(self.text):
            return "the end of the query"
        return repr(self.text[position : position + 12])

    def fail(self, expected: str, position: int | None = None) -> QuerySyntaxError:
        where = self.pos if position is None else position
        raise QuerySyntaxError(where, expected, self.describe(where))

    def operator_at(self, position: int) -> str | None:
        """AND/OR/NOT when one starts at ``position`` and ends there as a word."""
        for name in _OPERATORS:
            end = position + len(name)
            if self.text.startswith(name, position) and (
                end >= len(self.text) or self.text[end].isspace() or self.text[end] in '()"'
            ):
                return name
        return None

    def take_operator(self, name: str) -> bool:
        self.skip_space()
        if self.operator_at(self.pos) == name:
            self.pos += len(name)
            return True
        return False

    # -- expressions (``field`` is set inside ``Field:( ... )``)

    def or_expression(self, field: FieldRef | None, depth: int) -> Node:
        items = [self.and_expression(field, depth)]
        while self.take_operator("OR"):
            items.append(self.and_expression(field, depth))
        return items[0] if len(items) == 1 else Or(tuple(items))

    def and_expression(self, field: FieldRef | None, depth: int) -> Node:
        items = [self.unary(field, depth)]
        while True:
            self.skip_space()
            if self.at_end() or self.peek() == ")" or self.operator_at(self.pos) == "OR":
                break
            self.take_operator("AND")
            items.append(self.unary(field, depth))
        return items[0] if len(items) == 1 else And(tuple(items))

    def unary(self, field: FieldRef | None, depth: int) -> Node:
        if depth > _MAX_DEPTH:
            self.fail(f"at most {_MAX_DEPTH} nested groups")
        if self.take_operator("NOT"):
            return Not(self.unary(field, depth + 1))
        return self.primary(field, depth)

    def primary(self, field: FieldRef | None, depth: int) -> Node:
        self.skip_space()
        start = self.pos
        char = self.peek()
        if not char or char == ")" or self.operator_at(start):
            self.fail("a term, a field:value or '('")
        if char == "(":
            return self.group(field, depth)
        if field is not None:
            if self.field_reference() is not None:
                self.fail("a value (no field inside Field:( ... ))", start)
            return Match(field, self.value(field_name=None))
        named = self.field_reference()
        if named is None:
            return Text(self.text_value())
        self.pos += 1  # the colon
        self.skip_space()
        if self.peek() == "(":
            return self.group(named, depth)
        return Match(named, self.value(field_name=self.text[start : self.pos].strip()))

    def group(self, field: FieldRef | None, depth: int) -> Node:
        opening = self.pos
        self.pos += 1
        self.skip_space()
        node = self.or_expression(field, depth + 1)
        self.skip_space()
        if self.peek() != ")":
            self.fail(f"')' to close the '(' at position {opening}")
        self.pos += 1
        return node

    # -- values

    def text_value(self) -> Word | Wildcard | Phrase:
        if self.peek() and self.peek() in "[{":
            self.fail("a field before a range (Field:[low TO high])")
        if self.peek() == '"':
            return Phrase(self.quoted())
        return self.word()

    def value(self, field_name: str | None) -> Value:
        char = self.peek()
        if char and char in "[{":
            return self.range()
        if char == '"':
            return Phrase(self.quoted())
        if not char or char.isspace() or char in _WORD_ENDS:
            after = f" after {field_name!r}" if field_name else ""
            self.fail(f"a value{after}")
        return self.word()

    def quoted(self) -> str:
        opening = self.pos
        self.pos += 1
        chars: list[str] = []
        while not self.at_end():
            char = self.text[self.pos]
            if char == '"':
                self.pos += 1
                return "".join(chars)
            if char == "\\" and self.pos + 1 < len(self.text):
                self.pos += 1
                char = self.text[self.pos]
            chars.append(char)
            self.pos += 1
        self.fail(f"'\"' to close the quote at position {opening}")
        raise AssertionError  # fail raised

    def word(self, stop: str = "") -> Word | Wildcard:
        """A bare word up to white space, a parenthesis, a quote or a ``stop`` character."""
        parts: list[str | Joker] = []
        literal: list[str] = []
        start = self.pos
        while not self.at_end():
            char = self.text[self.pos]
            if char.isspace() or char in _WORD_ENDS or char in stop:
                break
            if char == "\\":
                if self.pos + 1 >= len(self.text):
                    self.fail("a character after '\\'", self.pos + 1)
                literal.append(self.text[self.pos + 1])
                self.pos += 2
                continue
            if char in "*?":
                if literal:
                    parts.append("".join(literal))
                    literal = []
                parts.append(Joker(char))
            else:
                literal.append(char)
            self.pos += 1
        if self.pos == start:
            self.fail("a value")
        if literal:
            parts.append("".join(literal))
        if any(isinstance(part, Joker) for part in parts):
            return Wildcard(tuple(parts))
        return Word("".join(str(part) for part in parts))

    def range(self) -> Range:
        include_low = self.peek() == "["
        self.pos += 1
        self.skip_space()
        low = self.bound()
        self.skip_space()
        if not self.text.startswith("TO", self.pos):
            self.fail("TO between the bounds of a range")
        self.pos += 2
        self.skip_space()
        high = self.bound()
        self.skip_space()
        closing = self.peek()
        if not closing or closing not in "]}":
            self.fail("']' or '}' to close the range")
        self.pos += 1
        if low is None and high is None:
            self.fail("at least one bound in a range", self.pos - 1)
        return Range(low, high, include_low or low is None, closing == "]" or high is None)

    def bound(self) -> str | None:
        """One bound: a word or a quoted value; a lone ``*`` is an open end."""
        start = self.pos
        if self.peek() == '"':
            return self.quoted()
        if not self.peek() or self.peek() in "]}" or self.peek().isspace():
            self.fail("a bound (a value, or * for an open end)")
        value = self.word(stop="]}")
        if isinstance(value, Wildcard):
            if value.parts == (Joker.ANY,):
                return None
            self.fail("a bound without wildcards (* alone leaves the end open)", start)
        assert isinstance(value, Word)
        if value.text == "TO":
            self.fail("a bound before TO", start)
        return value.text

    # -- field names

    def field_reference(self) -> FieldRef | None:
        """A field name followed by ``:`` at the current position, or None (free text).

        What looks like a name is scanned first; only when a colon follows is it
        parsed strictly, so that a misspelt keyword is an error, not free text."""
        end = self._scan_field_name(self.pos)
        if end is None or end >= len(self.text) or self.text[end] != ":":
            return None
        parts = _FieldNameParser(self, self.pos, end).parse()
        self.pos = end
        return FieldRef(parts)

    def _scan_field_name(self, position: int) -> int | None:
        """Where a candidate field name starting at ``position`` would end."""
        text = self.text
        while True:
            if position < len(text) and text[position] == '"':
                closing = _closing_quote(text, position)
                if closing is None or closing + 1 >= len(text) or text[closing + 1] != ",":
                    return None  # a phrase, not a private creator
                position = closing + 1
            start = position
            while position < len(text) and (text[position].isalnum() or text[position] == ","):
                position += 1
            if position == start:
                return None
            if position < len(text) and text[position] == ".":
                position += 1
                continue
            return position


def _closing_quote(text: str, opening: int) -> int | None:
    position = opening + 1
    while position < len(text):
        if text[position] == "\\":
            position += 2
            continue
        if text[position] == '"':
            return position
        position += 1
    return None


class _FieldNameParser:
    """The strict parse of a field name found by ``_Parser._scan_field_name``."""

    def __init__(self, parser: _Parser, start: int, end: int) -> None:
        self.parser = parser
        self.pos = start
        self.end = end

    def parse(self) -> tuple[PathPart, ...]:
        parts = [self.component()]
        while self.pos < self.end:
            self.pos += 1  # the dot
            parts.append(self.component())
        return tuple(parts)

    def component(self) -> PathPart:
        text = self.parser.text
        if text[self.pos] == '"':
            return self.private()
        stop = text.find(".", self.pos, self.end)
        stop = self.end if stop < 0 else stop
        name = text[self.pos : stop]
        part = _standard(name)
        if part is None:
            self.parser.fail("a DICOM keyword or a tag (0008,0060 or 00080060)", self.pos)
        self.pos = stop
        assert part is not None
        return part

    def private(self) -> PrivateTag:
        text = self.parser.text
        opening = self.parser.pos = self.pos
        creator = self.parser.quoted()
        self.pos = self.parser.pos + 1  # the comma after the creator
        stop = text.find(".", self.pos, self.end)
        stop = self.end if stop < 0 else stop
        spelled = text[self.pos : stop].replace(",", "").lower()
        expected = "a private group and element after the creator (0019,xx10)"
        if len(spelled) != 8 or spelled[4:6] != "xx" or not _is_hex(spelled[:4] + spelled[6:]):
            self.parser.fail(expected, self.pos)
        group = int(spelled[:4], 16)
        if group % 2 == 0:
            self.parser.fail("an odd (private) group after the creator", self.pos)
        if not creator.strip():
            self.parser.fail("a private creator in the quotes", opening)
        self.pos = stop
        return PrivateTag(creator.strip(), group, int(spelled[6:], 16))


def _is_hex(text: str) -> bool:
    return bool(text) and all(c in "0123456789abcdefABCDEF" for c in text)


def _standard(name: str) -> StandardTag | None:
    """A keyword, ``GGGG,EEEE`` or ``GGGGEEEE``; None if it is none of them."""
    if "," in name:
        group, _, element = name.partition(",")
        if len(group) == 4 and len(element) == 4 and _is_hex(group + element):
            return StandardTag(int(group + element, 16))
        return None
    if len(name) == 8 and _is_hex(name):
        return StandardTag(int(name, 16))
    tag = _keywords().get(name.lower())
    return StandardTag(tag) if tag is not None else None
