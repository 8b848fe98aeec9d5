"""An AST back to a query string that parses to the same AST (pure).

For logs and answers that echo a query, and the round-trip property the tests hold
the parser to. Fields are written by tag (``00080060``), private ones as
``"CREATOR",GGGG,xxEE``; compound operands are parenthesized, so the parse rebuilds
the same tree.
"""

from __future__ import annotations

from pacsnode.node.search.fields import PrivateTag
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
    Range,
    Text,
    Value,
    Wildcard,
    Word,
)

#: escaped in a bare word wherever they stand
_SPECIAL = frozenset('()"\\*?:[]{}')
_OPERATORS = ("AND", "OR", "NOT")


def to_text(node: Node) -> str:
    if isinstance(node, All):
        return ""
    if isinstance(node, Text):
        return _value(node.value)
    if isinstance(node, Match):
        return f"{_field(node.field)}:{_value(node.value)}"
    if isinstance(node, Not):
        return f"NOT {_operand(node.item)}"
    joiner = " AND " if isinstance(node, And) else " OR "
    return joiner.join(_operand(item) for item in node.items)


def _operand(node: Node) -> str:
    compound = isinstance(node, And | Or | Not)
    return f"({to_text(node)})" if compound else to_text(node)


def _literal(text: str) -> str:
    escaped = "".join(f"\\{c}" if c in _SPECIAL or c.isspace() else c for c in text)
    # a word spelled like an operator would be read as one
    return f"\\{escaped}" if escaped in _OPERATORS else escaped


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _value(value: Value) -> str:
    if isinstance(value, Word):
        return _literal(value.text) if value.text else _quoted("")
    if isinstance(value, Phrase):
        return _quoted(value.text)
    if isinstance(value, Wildcard):
        return "".join(p.value if isinstance(p, Joker) else _literal(p) for p in value.parts)
    return _range(value)


def _range(value: Range) -> str:
    low = "*" if value.low is None else _quoted(value.low)
    high = "*" if value.high is None else _quoted(value.high)
    opening = "[" if value.include_low else "{"
    closing = "]" if value.include_high else "}"
    return f"{opening}{low} TO {high}{closing}"


def _field(field: FieldRef) -> str:
    parts = []
    for part in field.path:
        if isinstance(part, PrivateTag):
            parts.append(f"{_quoted(part.creator)},{part.group:04X},xx{part.element:02X}")
        else:
            parts.append(f"{part.tag:08X}")
    return ".".join(parts)
