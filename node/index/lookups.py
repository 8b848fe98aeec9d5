"""Finding resources in the index by DICOM attributes, as ``/tools/find`` and C-FIND do.

:func:`find` picks the most selective secondary lookup for candidates and
filters them with the parsed constraints (:mod:`pacsnode.node.query`), so no
query with an indexed attribute scans the whole database.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Iterator
from typing import Any

from pacsnode.node.ids import Level
from pacsnode.node.index.environment import Txn
from pacsnode.node.index.hierarchy import LOOKUP_KEYWORDS
from pacsnode.node.query import PERSON_NAME_KEYWORDS, Constraint, Kind, normalize

# --- candidates and filtering ------------------------------------------------------------

_SELECTIVITY = {Kind.EXACT: 0, Kind.LIST: 1, Kind.WILDCARD: 2, Kind.RANGE: 3}


def _folded(constraint: Constraint) -> bool:
    """Matched case-insensitively on an attribute the index keeps as written (person
    names are indexed upper-case, so they are not)."""
    return not constraint.case_sensitive and constraint.keyword not in PERSON_NAME_KEYWORDS


def _candidates(txn: Txn, level: Level, constraints: list[Constraint]) -> Iterator[str]:
    indexed = [
        c
        for c in constraints
        if c.keyword in LOOKUP_KEYWORDS[level] and c.kind is not Kind.UNIVERSAL
    ]
    usable = [
        c
        for c in indexed
        if not _folded(c) and not (c.kind is Kind.WILDCARD and not c.literal_prefix)
    ]
    folded = [c for c in indexed if _folded(c)]
    if not usable and folded:
        yield from _folded_candidates(txn, level, folded[0])
        return
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


#: the letters of a case-insensitive value spelled in both cases (at most 2**6 spellings)
_FOLDED_LETTERS = 6


def _case_variants(text: str) -> list[str]:
    """Each spelling of the text up to its first few letters with those letters in either
    case: the whole value in every case when it has few letters, else the prefixes a
    case-insensitive match can start with."""
    variants = [""]
    letters = 0
    for character in text:
        if letters == _FOLDED_LETTERS:
            break
        cases = {character.lower(), character.upper()}
        letters += len(cases) > 1
        variants = [v + c for v in variants for c in sorted(cases)]
    return variants


def _folded_candidates(txn: Txn, level: Level, constraint: Constraint) -> Iterator[str]:
    """Ids whose indexed value matches a case-insensitive constraint, without reading every
    value: each spelling of a whole value is looked up exactly (PAT00012 is 8 lookups), and
    a longer one or a wildcard's literal start is scanned as a prefix in each spelling. The
    constraint decides each value found."""
    exact = constraint.kind in (Kind.EXACT, Kind.LIST)
    starts = constraint.values if exact else (constraint.literal_prefix,)
    seen: set[str] = set()
    for start in starts:
        start = start.strip()
        for variant in _case_variants(start):
            if exact and len(variant) == len(start):
                found = ((variant, i) for i in txn.lookup_exact(level, constraint.keyword, variant))
            else:
                found = txn.lookup_scan(level, constraint.keyword, variant, prefix=True)
            for value, resource_id in found:
                if resource_id not in seen and constraint.matches(value):
                    seen.add(resource_id)
                    yield resource_id


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


def narrowed_by_lookup(level: Level, constraints: list[Constraint]) -> bool:
    """Whether the candidates come from looking up given values (an exact value or a list
    of them, on a keyword indexed at this level): a few keys read, however large the index,
    not a scan of a range, of every value or of every record."""
    return any(
        c.keyword in LOOKUP_KEYWORDS[level] and c.kind in (Kind.EXACT, Kind.LIST)
        for c in constraints
    )


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
