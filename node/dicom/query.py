"""C-FIND identifiers: what to match, and the answer for each matching resource."""

from __future__ import annotations

from typing import Any

from pydicom.dataset import Dataset

from pacsnode.node.ids import Level
from pacsnode.node.index.hierarchy import LOOKUP_KEYWORDS
from pacsnode.node.index.maintags import MAIN_TAGS

_LEVELS = {
    "PATIENT": Level.PATIENT,
    "STUDY": Level.STUDY,
    "SERIES": Level.SERIES,
    "IMAGE": Level.INSTANCE,
}
#: attributes the index can match on, at any level of the query
MATCHABLE = {keyword for keywords in MAIN_TAGS.values() for keyword in keywords} | {
    keyword for keywords in LOOKUP_KEYWORDS.values() for keyword in keywords
}
_COMPUTED = {
    "NumberOfStudyRelatedInstances",
    "NumberOfSeriesRelatedInstances",
    "NumberOfPatientRelatedStudies",
    "NumberOfStudyRelatedSeries",
}


def query_level(identifier: Dataset) -> Level | None:
    return _LEVELS.get(str(identifier.get("QueryRetrieveLevel", "")).upper())


def _text(value: Any) -> str:
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return "\\".join(str(item) for item in value)
    return "" if value is None else str(value)


def query_of(identifier: Dataset) -> tuple[dict[str, str], list[str]]:
    """(constraints for the index, every keyword the caller asked to have returned)."""
    constraints: dict[str, str] = {}
    requested: list[str] = []
    for element in identifier:
        keyword = element.keyword
        if not keyword or keyword in ("QueryRetrieveLevel", "SpecificCharacterSet"):
            continue
        requested.append(keyword)
        value = _text(element.value).strip()
        if value and value != "*" and keyword in MATCHABLE and element.VR != "SQ":
            constraints[keyword] = value
    return constraints, requested


def answer(
    level: Level, tags: dict[str, str], requested: list[str], counts: dict[str, int]
) -> Dataset:
    """The response identifier: each requested key with our value, or empty."""
    response = Dataset()
    response.QueryRetrieveLevel = {v: k for k, v in _LEVELS.items()}[level]
    response.SpecificCharacterSet = "ISO_IR 192"
    for keyword in requested:
        if keyword in _COMPUTED:
            setattr(response, keyword, counts.get(keyword, 0))
            continue
        value = tags.get(keyword, "")
        try:
            setattr(response, keyword, value.split("\\") if "\\" in value else value)
        except (TypeError, ValueError):
            setattr(response, keyword, "")
    return response
