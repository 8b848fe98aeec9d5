"""The AST of a search query (:mod:`.query_language` parses one, :mod:`.query_format`
writes one back, :mod:`.translate` runs one), and the error bad input raises."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from pacsnode.node.errors import BadRequest
from pacsnode.node.search.fields import PathPart, path_key


class Joker(Enum):
    """A wildcard character in a pattern."""

    ANY = "*"  # any run of characters, none included
    ONE = "?"  # exactly one character


@dataclass(frozen=True)
class Word:
    """A value without wildcards (escapes resolved)."""

    text: str


@dataclass(frozen=True)
class Wildcard:
    """A pattern: literal pieces and jokers, in order."""

    parts: tuple[str | Joker, ...]


@dataclass(frozen=True)
class Phrase:
    """A quoted value: words in a row in free text, the whole value in a field."""

    text: str


@dataclass(frozen=True)
class Range:
    """A range of numbers, dates or times; an open end is None."""

    low: str | None
    high: str | None
    include_low: bool = True
    include_high: bool = True


@dataclass(frozen=True)
class FieldRef:
    """An attribute, by its path from the top-level data set."""

    path: tuple[PathPart, ...]

    @property
    def key(self) -> str:
        """The name of the field in the index (see :mod:`.fields`)."""
        return path_key(self.path)


@dataclass(frozen=True)
class Text:
    """Free text: matches any text attribute."""

    value: Word | Wildcard | Phrase


@dataclass(frozen=True)
class Match:
    """A field holds a value (any of its values, in any item of the sequences above it)."""

    field: FieldRef
    value: Word | Wildcard | Phrase | Range


@dataclass(frozen=True)
class And:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    item: Node


@dataclass(frozen=True)
class All:
    """Every document (the empty query)."""


Node = Text | Match | And | Or | Not | All
Value = Word | Wildcard | Phrase | Range


class QuerySyntaxError(BadRequest):
    """The query string does not parse; ``position`` is the 0-based character offset."""

    code = "bad-search-query"

    def __init__(self, position: int, expected: str, found: str) -> None:
        super().__init__(f"at position {position}: expected {expected}, found {found}")
        self.position = position
        self.expected = expected
        self.found = found
