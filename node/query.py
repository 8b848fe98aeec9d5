"""Parsing a query into constraints, and matching one value: pure functions.

Matching follows PS3.4 C.2.2.2: universal (empty), single value, wildcards
``*`` and ``?``, ranges ``A-B`` (open at either end) for dates and times, and
lists ``A\\B``. A lone ``*`` is a wildcard like any other: it matches only
resources that have the attribute (as Orthanc, over REST and DICOM alike), while
an empty value matches everything. Person names match case-insensitively unless asked
otherwise. :mod:`pacsnode.node.index.lookups` runs parsed queries against the
index; the REST API, C-FIND and peer filters parse with this module.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from enum import Enum
from typing import Any

from pydicom.datadict import dictionary_VR, tag_for_keyword

from pacsnode.node.errors import BadRequest

#: person names: indexed upper-case, matched case-insensitively by default (as in Orthanc)
PERSON_NAME_KEYWORDS = {
    "PatientName",
    "ReferringPhysicianName",
    "RequestingPhysician",
    "OperatorsName",
}


#: identifiers Orthanc's ``/tools/find`` matches case-insensitively too unless asked
#: otherwise (UIDs need not be: they hold no letters)
CASE_FOLDED_IDENTIFIERS = {"PatientID", "AccessionNumber"}


def normalize(keyword: str, value: str) -> str:
    """A value as the index stores it: trimmed, person names upper-cased."""
    return value.strip().upper() if keyword in PERSON_NAME_KEYWORDS else value.strip()


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


def identifier_text(value: Any) -> str:
    """A DICOM identifier element's value (pydicom's) as a query value: values joined by
    ``\\``, as the index keeps them."""
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return "\\".join(str(item) for item in value)
    return "" if value is None else str(value)


#: joins a sequence's keyword and the keyword of an attribute in its items
#: (``ReferencedStudySequence.ReferencedSOPInstanceUID``), as PS3.18 names one in QIDO-RS
SEQUENCE_SEPARATOR = "."


@functools.lru_cache(maxsize=1024)
def keyword_tags(keyword: str) -> tuple[int, ...] | None:
    """The tags on an attribute's path: one for a top-level keyword, one a level for an
    attribute inside sequence items (``Sequence.Keyword``, any depth); None when a part
    is not a DICOM keyword, or one before the last is not a sequence."""
    parts = keyword.split(SEQUENCE_SEPARATOR)
    # pydicom's dictionary has an entry without a keyword: "" is none
    tags = tuple(tag_for_keyword(part) if part else None for part in parts)
    if any(tag is None for tag in tags):
        return None
    if any(dictionary_VR(tag) != "SQ" for tag in tags[:-1]):
        return None
    return tags  # type: ignore[return-value]


def leaf_keyword(keyword: str) -> str:
    """The attribute a path ends at (the keyword itself at the top level)."""
    return keyword.rpartition(SEQUENCE_SEPARATOR)[2]


def _matched_vr(keyword: str, asked: bool) -> str:
    if keyword == "ModalitiesInStudy":
        return "CS"
    tags = keyword_tags(keyword)
    if tags is None:
        raise BadRequest(f"unknown DICOM keyword {keyword!r} in query")
    vr = dictionary_VR(tags[-1])
    if vr == "SQ" and asked:  # an empty value (universal) asks nothing of it
        raise BadRequest(
            f"{keyword} is a sequence: match an attribute of its items "
            f"({keyword}{SEQUENCE_SEPARATOR}Keyword)"
        )
    return vr


def parse_constraint(
    keyword: str, value: str, case_sensitive: bool = False, *, fold_identifiers: bool = False
) -> Constraint:
    """One attribute's constraint (``keyword`` may be a path into sequence items, see
    :func:`keyword_tags`). Person names match case-insensitively unless
    ``case_sensitive``; with ``fold_identifiers``, so do PatientID and AccessionNumber
    (Orthanc's ``/tools/find``; DICOM's C-FIND matches them as written)."""
    text = value.strip()
    vr = _matched_vr(keyword, bool(text))
    folded = PERSON_NAME_KEYWORDS | (CASE_FOLDED_IDENTIFIERS if fold_identifiers else set())
    sensitive = case_sensitive or leaf_keyword(keyword) not in folded
    if not text:
        return Constraint(keyword, Kind.UNIVERSAL, (), sensitive)
    if "\\" in text:
        return Constraint(keyword, Kind.LIST, tuple(text.split("\\")), sensitive)
    if vr in _RANGE_VRS and "-" in text:
        low, _, high = text.partition("-")
        return Constraint(keyword, Kind.RANGE, (low.strip(), high.strip()), True)
    if "*" in text or "?" in text:
        return Constraint(keyword, Kind.WILDCARD, (text,), sensitive)
    return Constraint(keyword, Kind.EXACT, (text,), sensitive)


def parse_query(
    query: dict[str, Any], case_sensitive: bool = False, *, fold_identifiers: bool = False
) -> list[Constraint]:
    if not isinstance(query, dict):
        raise BadRequest("Query must be a JSON object of DICOM keywords to values")
    constraints = []
    for keyword, value in query.items():
        if not isinstance(value, str):
            raise BadRequest(f"the value of {keyword} must be a string")
        constraints.append(
            parse_constraint(keyword, value, case_sensitive, fold_identifiers=fold_identifiers)
        )
    return constraints
