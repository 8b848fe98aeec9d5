"""DICOM attribute matching (:mod:`pacsnode.node.query`'s constraints) as a search AST (pure).

For QIDO-RS and C-FIND keys that are not main tags: the search index finds the
candidates, and since it matches without regard to case where DICOM matching
(but for person names) does not, the caller checks each candidate's value again
with :meth:`Constraint.matches`; the index never misses a resource that matches.
Universal matching asks nothing; a list is any of its values; a range is a range
(open at either end); ``ModalitiesInStudy`` is any instance's Modality.
"""

from __future__ import annotations

from collections.abc import Iterable

from pacsnode.node.errors import BadRequest
from pacsnode.node.query import Constraint, Kind, keyword_tags
from pacsnode.node.search.fields import StandardTag
from pacsnode.node.search.query_ast import (
    All,
    And,
    FieldRef,
    Joker,
    Match,
    Node,
    Or,
    Range,
    Wildcard,
    Word,
)

_ALIASES = {"ModalitiesInStudy": "Modality"}


def _field(keyword: str) -> FieldRef:
    """The indexed field of an attribute, inside sequence items for a path (any item)."""
    tags = keyword_tags(_ALIASES.get(keyword, keyword))
    if tags is None:
        raise BadRequest(f"unknown DICOM keyword {keyword!r} in query")
    return FieldRef(tuple(StandardTag(tag) for tag in tags))


def _value(text: str) -> Word | Wildcard:
    if "*" not in text and "?" not in text:
        return Word(text)
    parts: list[str | Joker] = []
    for char in text:
        if char in "*?":
            parts.append(Joker(char))
        elif parts and isinstance(parts[-1], str):
            parts[-1] += char
        else:
            parts.append(char)
    return Wildcard(tuple(parts))


def constraint_query(constraint: Constraint) -> Node:
    """The search query a constraint's matches are found among."""
    if constraint.kind is Kind.UNIVERSAL:
        return All()
    field = _field(constraint.keyword)
    if constraint.kind is Kind.RANGE:
        low, high = constraint.values
        return Match(field, Range(low or None, high or None))
    if constraint.kind is Kind.LIST:
        return Or(tuple(Match(field, _value(value.strip())) for value in constraint.values))
    return Match(field, _value(constraint.values[0].strip()))


def constraints_query(constraints: Iterable[Constraint]) -> Node:
    """All constraints at once (universal ones ask nothing; none at all is :class:`All`)."""
    nodes = [n for n in map(constraint_query, constraints) if not isinstance(n, All)]
    if not nodes:
        return All()
    return nodes[0] if len(nodes) == 1 else And(tuple(nodes))
