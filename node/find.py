"""Finding resources by DICOM attributes, as Orthanc's ``/tools/find`` and C-FIND do.

Matching (PS3.4 C.2.2.2): universal (empty or ``*``), single value, wildcards
``*`` and ``?``, ranges ``A-B`` (open at either end) for dates and times, and
lists ``A\\B``. Person names match case-insensitively unless asked otherwise.

:func:`parse_query` and :class:`Constraint` are pure; :func:`find` picks the
most selective secondary lookup for candidates and filters them, so no query
with an indexed attribute scans the whole database.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Any

from pydicom.datadict import dictionary_VR, tag_for_keyword

from pacsnode.node.errors import BadRequest
from pacsnode.node.hierarchy import LOOKUP_KEYWORDS, PERSON_NAME_KEYWORDS, normalize
from pacsnode.node.ids import Level
from pacsnode.node.index import Txn

_RANGE_VRS = {"DA", "TM", "DT"}
_MULTI_VALUED = {"ModalitiesInStudy"}


class Kind(Enum):
    UNIVERSAL = "universal"
    EXACT = "exact"
    WILDCARD = "wildcard"
    RANGE = "range"
    LIST = "list"


@dataclass(frozen=True)
class Constraint:
    keyword: str
    kind: Kind
    values: tuple[str, ...]
    case_sensitive: bool

    def _fold(self, text: str) -> str:
        return text if self.case_sensitive else text.upper()

    def matches(self, value: str | None) -> bool:
        if self.kind is Kind.UNIVERSAL:
            return True
        if value is None:
            return False
        if self.keyword in _MULTI_VALUED:  # a study matches if any of its values does
            return any(self._matches_one(part) for part in value.split("\\"))
        return self._matches_one(value)

    def _matches_one(self, value: str) -> bool:
        value = self._fold(value.strip())
        if self.kind is Kind.EXACT:
            return value == self._fold(self.values[0])
        if self.kind is Kind.LIST:
            return value in {self._fold(v) for v in self.values}
        if self.kind is Kind.WILDCARD:
            return _wildcard_regex(self._fold(self.values[0])).fullmatch(value) is not None
        low, high = self.values
        return (not low or value >= low) and (not high or value <= high)

    @property
    def literal_prefix(self) -> str:
        """For a wildcard, the text before its first ``*`` or ``?``."""
        return re.split(r"[*?]", self.values[0], maxsplit=1)[0] if self.values else ""


@functools.lru_cache(maxsize=256)
def _wildcard_regex(pattern: str) -> re.Pattern[str]:
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile("".join(parts), re.DOTALL)


def parse_constraint(keyword: str, value: str, case_sensitive: bool = False) -> Constraint:
    tag = tag_for_keyword(keyword)
    if tag is None and keyword != "ModalitiesInStudy":
        raise BadRequest(f"unknown DICOM keyword {keyword!r} in query")
    vr = dictionary_VR(tag) if tag is not None else "CS"
    sensitive = case_sensitive or keyword not in PERSON_NAME_KEYWORDS
    text = value.strip()
    if text in ("", "*"):
        return Constraint(keyword, Kind.UNIVERSAL, (), sensitive)
    if "\\" in text:
        return Constraint(keyword, Kind.LIST, tuple(text.split("\\")), sensitive)
    if vr in _RANGE_VRS and "-" in text:
        low, _, high = text.partition("-")
        return Constraint(keyword, Kind.RANGE, (low.strip(), high.strip()), True)
    if "*" in text or "?" in text:
        return Constraint(keyword, Kind.WILDCARD, (text,), sensitive)
    return Constraint(keyword, Kind.EXACT, (text,), sensitive)


def parse_query(query: dict[str, Any], case_sensitive: bool = False) -> list[Constraint]:
    if not isinstance(query, dict):
        raise BadRequest("Query must be a JSON object of DICOM keywords to values")
    constraints = []
    for keyword, value in query.items():
        if not isinstance(value, str):
            raise BadRequest(f"the value of {keyword} must be a string")
        constraints.append(parse_constraint(keyword, value, case_sensitive))
    return constraints


# --- candidates and filtering ------------------------------------------------------------

_SELECTIVITY = {Kind.EXACT: 0, Kind.LIST: 1, Kind.WILDCARD: 2, Kind.RANGE: 3}


def _candidates(txn: Txn, level: Level, constraints: list[Constraint]) -> Iterator[str]:
    indexed = [
        c
        for c in constraints
        if c.keyword in LOOKUP_KEYWORDS[level] and c.kind is not Kind.UNIVERSAL
    ]
    usable = [c for c in indexed if not (c.kind is Kind.WILDCARD and not c.literal_prefix)]
    if not usable:
        wildcard = next((c for c in indexed if c.kind is Kind.WILDCARD), None)
        if wildcard is not None:
            yield from _matching_lookup_values(txn, level, wildcard)
        else:
            yield from txn.level_ids(level)
        return
    best = min(usable, key=lambda c: _SELECTIVITY[c.kind])
    if best.kind is Kind.EXACT:
        yield from txn.lookup_exact(level, best.keyword, normalize(best.keyword, best.values[0]))
    elif best.kind is Kind.LIST:
        seen: set[str] = set()
        for value in best.values:
            for resource_id in txn.lookup_exact(
                level, best.keyword, normalize(best.keyword, value)
            ):
                if resource_id not in seen:
                    seen.add(resource_id)
                    yield resource_id
    elif best.kind is Kind.WILDCARD:
        prefix = normalize(best.keyword, best.literal_prefix)
        pattern = _wildcard_bytes_regex(normalize(best.keyword, best.values[0]))
        for value, resource_id in txn.lookup_scan(level, best.keyword, prefix, prefix=True):
            if pattern.fullmatch(value.encode("utf-8")) is not None:
                yield resource_id
    else:
        low, high = best.values
        for _, resource_id in txn.lookup_scan(level, best.keyword, low, high or None):
            yield resource_id


def _matching_lookup_values(txn: Txn, level: Level, constraint: Constraint) -> Iterator[str]:
    """A wildcard with no literal prefix: match it on the distinct indexed values
    (far fewer than the records, already normalized) instead of reading every record.

    Person names are indexed upper-case, so the match is case-insensitive here and
    the records decide a case-sensitive query."""
    pattern = _wildcard_bytes_regex(normalize(constraint.keyword, constraint.values[0]))
    for raw in txn.lookup_values(level, constraint.keyword):
        if pattern.fullmatch(raw) is not None:
            yield from txn.lookup_exact(level, constraint.keyword, raw.decode("utf-8"))


_ONE_UTF8_CHARACTER = rb"(?:[\x00-\x7f]|[\xc0-\xff][\x80-\xbf]+)"


@functools.lru_cache(maxsize=256)
def _wildcard_bytes_regex(pattern: str) -> re.Pattern[bytes]:
    parts = (
        b".*" if c == "*" else _ONE_UTF8_CHARACTER if c == "?" else re.escape(c.encode())
        for c in pattern
    )
    return re.compile(b"".join(parts), re.DOTALL)


def tags_with_ancestors(txn: Txn, record: dict[str, Any]) -> dict[str, str]:
    tags: dict[str, str] = {}
    current: dict[str, Any] | None = record
    while current is not None:
        for key, value in current["tags"].items():
            tags.setdefault(key, value)
        for key, value in current.get("patient_tags", {}).items():
            tags.setdefault(key, value)
        current = txn.resource(current["parent"]) if current["parent"] else None
    return tags


def _lookup_decides(level: Level, constraints: list[Constraint]) -> bool:
    """Whether the lookup alone decides the answer, so records need not be read: one
    constraint, on a keyword indexed at this level, matched the way the index stores it
    (person names upper-cased, so only when the match is case-insensitive)."""
    if len(constraints) != 1:
        return False
    constraint = constraints[0]
    if constraint.keyword not in LOOKUP_KEYWORDS[level] or constraint.kind is Kind.UNIVERSAL:
        return False
    return not (constraint.keyword in PERSON_NAME_KEYWORDS and constraint.case_sensitive)


def find(
    txn: Txn,
    level: Level,
    constraints: list[Constraint],
    *,
    since: int = 0,
    limit: int | None = None,
) -> list[str]:
    """Ids of the resources of ``level`` that satisfy every constraint."""

    exact_candidates = _lookup_decides(level, constraints)

    def matching() -> Iterator[str]:
        seen: set[str] = set()
        for resource_id in _candidates(txn, level, constraints):
            if resource_id in seen:
                continue
            seen.add(resource_id)
            if exact_candidates:
                yield resource_id
                continue
            record = txn.resource(resource_id)
            if record is None:
                continue
            tags = tags_with_ancestors(txn, record)
            if all(c.matches(tags.get(c.keyword)) for c in constraints):
                yield resource_id

    stop = None if limit is None or limit <= 0 else since + limit
    return list(itertools.islice(matching(), since, stop))
