"""QIDO-RS queries and answers (PS3.18 10.6): pure functions.

A query string becomes a :class:`Search`: the level searched, the matching attributes
(any attribute, as the node's query syntax: main tags are the index's, the others the
index plugins', see :mod:`pacsnode.node.index_plugins`), what to include in each answer,
and paging. Answers are built from the index's tags of a match (strings, as Orthanc
keeps them) turned back into DICOM JSON with the dictionary's VRs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

from pacsnode.node.errors import BadRequest
from pacsnode.node.ids import Level
from pacsnode.node.index.maintags import MAIN_TAGS
from pacsnode.node.query import SEQUENCE_SEPARATOR, Constraint, leaf_keyword, parse_constraint
from pacsnode.node.rest.params import non_negative_int

_LEVEL_ORDER = (Level.PATIENT, Level.STUDY, Level.SERIES, Level.INSTANCE)

#: PS3.18 Table 10.6.3-3..5: what every answer at a level carries
DEFAULT_ATTRIBUTES: dict[Level, tuple[str, ...]] = {
    Level.STUDY: (
        "StudyDate", "StudyTime", "AccessionNumber", "InstanceAvailability",
        "ModalitiesInStudy", "ReferringPhysicianName", "PatientName", "PatientID",
        "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyID", "StudyDescription",
        "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances",
    ),
    Level.SERIES: (
        "Modality", "SeriesDescription", "SeriesNumber", "SeriesInstanceUID",
        "SeriesDate", "SeriesTime", "NumberOfSeriesRelatedInstances",
        "PerformedProcedureStepStartDate", "PerformedProcedureStepStartTime",
    ),
    Level.INSTANCE: (
        "SOPClassUID", "SOPInstanceUID", "InstanceAvailability", "InstanceNumber",
        "Rows", "Columns", "BitsAllocated", "NumberOfFrames",
    ),
}  # fmt: skip
COUNTS = {
    "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
    "NumberOfSeriesRelatedInstances",
    "NumberOfPatientRelatedStudies",
}
_NUMBER_VRS = {"IS", "SL", "SS", "UL", "US", "SV", "UV"}
_DECIMAL_VRS = {"DS", "FL", "FD"}
_CONTROL = {"limit", "offset", "includefield", "fuzzymatching", "orderby"}
_HEX_TAG = re.compile(r"[0-9A-Fa-f]{8}")


def keyword_of(attribute: str) -> str:
    """An attribute as QIDO names it (keyword or eight hex digits) as a keyword."""
    name = attribute.strip()
    if _HEX_TAG.fullmatch(name):
        keyword = keyword_for_tag(int(name, 16))
        if keyword:
            return keyword
        raise BadRequest(f"attribute {name} is not in the DICOM dictionary")
    if name == "ModalitiesInStudy" or tag_for_keyword(name) is not None:
        return name
    raise BadRequest(f"unknown attribute {name!r} in the query")


@dataclass
class Search:
    level: Level
    #: keyword -> value in the node's query syntax (wildcards, ranges, ``\\`` lists)
    matches: dict[str, str] = field(default_factory=dict)
    #: keywords to add to each answer beyond the level's defaults
    include: list[str] = field(default_factory=list)
    include_all: bool = False
    limit: int | None = None
    offset: int = 0
    fuzzy: bool = False

    def constraints(self) -> list[Constraint]:
        return [parse_constraint(keyword, value) for keyword, value in self.matches.items()]


def _match_value(keyword: str, raw: str) -> str:
    vr = "UI" if keyword.endswith("UID") else vr_of(keyword)
    if vr == "UI":  # QIDO separates UID lists with commas, the index with backslashes
        return "\\".join(part.strip() for part in raw.replace("\\", ",").split(","))
    return raw


def parse_search(
    level: Level, query: Iterable[tuple[str, str]], scope: Mapping[str, str]
) -> Search:
    """A QIDO query string (already percent-decoded) at ``level``; ``scope`` holds the
    UIDs the path fixes (``/studies/{S}/series``: StudyInstanceUID)."""
    search = Search(level, matches=dict(scope))
    for name, raw in query:
        lowered = name.lower()
        if lowered == "limit":
            search.limit = non_negative_int(name, raw)
        elif lowered == "offset":
            search.offset = non_negative_int(name, raw)
        elif lowered == "fuzzymatching":
            search.fuzzy = raw.lower() == "true"
        elif lowered == "includefield":
            for item in raw.split(","):
                if item.strip().lower() == "all":
                    search.include_all = True
                elif item.strip():
                    search.include.append(keyword_of(item))
        elif lowered == "orderby":
            continue  # optional in PS3.18; answers come in the index's stable order
        elif SEQUENCE_SEPARATOR in name:  # an attribute inside a sequence's items
            path = SEQUENCE_SEPARATOR.join(map(keyword_of, name.split(SEQUENCE_SEPARATOR)))
            search.matches[path] = _match_value(leaf_keyword(path), raw)
            search.include.append(path.split(SEQUENCE_SEPARATOR)[0])  # answered whole
        else:
            keyword = keyword_of(name)
            if keyword in scope:
                if raw.strip() and raw.strip() != scope[keyword]:
                    search.matches[keyword] = "\\"  # contradicts the path: nothing matches
                continue
            search.matches[keyword] = _match_value(keyword, raw)
            search.include.append(keyword)
    for keyword, value in search.matches.items():
        parse_constraint(keyword, value)  # refuse a bad value now, with its name
    return search


def vr_of(keyword: str) -> str:
    if keyword == "ModalitiesInStudy":
        return "CS"
    tag = tag_for_keyword(keyword)
    if tag is None:
        return "UN"
    vr = dictionary_VR(tag)
    return vr.split(" or ")[0] if vr else "UN"


def _number(text: str, decimal: bool) -> int | float | str:
    try:
        value = float(text) if decimal else int(text)
    except ValueError:
        return text  # keep what was stored rather than drop it
    if isinstance(value, float) and value.is_integer() and abs(value) < 1 << 53:
        return int(value)
    return value


def json_element(keyword: str, text: str | None) -> dict[str, Any]:
    """One DICOM JSON element from an index string (``\\`` separates values)."""
    vr = vr_of(keyword)
    element: dict[str, Any] = {"vr": vr}
    if not text:
        return element
    parts = text.split("\\")
    if vr == "PN":
        element["Value"] = [{"Alphabetic": part} if part else {} for part in parts]
    elif vr in _NUMBER_VRS or vr in _DECIMAL_VRS:
        element["Value"] = [_number(part.strip(), vr in _DECIMAL_VRS) for part in parts]
    else:
        element["Value"] = parts
    return element


def tag_key(keyword: str) -> str:
    if keyword == "ModalitiesInStudy":
        return "00080061"
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise BadRequest(f"unknown attribute {keyword!r}")
    return f"{tag:08X}"


def answer(
    search: Search,
    tags: Mapping[str, str],
    counts: Mapping[str, int],
    stored: Mapping[str, Any] | None,
    retrieve_url: str,
) -> dict[str, Any]:
    """The DICOM JSON object of one match.

    ``tags``: the index's tags of the match and its ancestors; ``counts``: its related
    counts; ``stored``: the stored metadata of one of its instances (for attributes the
    index does not keep; ``None`` when none is needed)."""
    keywords = list(DEFAULT_ATTRIBUTES[search.level])
    if search.level is not Level.STUDY:
        keywords.append("StudyInstanceUID")
    if search.level is Level.INSTANCE:
        keywords.append("SeriesInstanceUID")
    keywords.extend(k for k in _includable(search) if k not in keywords)
    if search.include_all:
        for upper in _LEVEL_ORDER[1 : _LEVEL_ORDER.index(search.level) + 1]:
            keywords.extend(k for k in MAIN_TAGS[upper] if k not in keywords)
        keywords.extend(k for k in MAIN_TAGS[Level.PATIENT] if k not in keywords)
    result: dict[str, Any] = {}
    for keyword in keywords:
        key = tag_key(keyword)
        if keyword in COUNTS:
            if keyword in counts:
                result[key] = {"vr": "IS", "Value": [counts[keyword]]}
        elif keyword == "InstanceAvailability":
            result[key] = {"vr": "CS", "Value": ["ONLINE"]}
        elif keyword in tags:
            result[key] = json_element(keyword, tags[keyword])
        elif stored is not None and key in stored:
            element = stored[key]
            if "BulkDataURI" not in element and "InlineBinary" not in element:
                result[key] = element
        elif keyword in DEFAULT_ATTRIBUTES[search.level]:
            result[key] = {"vr": vr_of(keyword)}  # always answered; empty when absent
    if search.include_all and search.level is Level.INSTANCE and stored is not None:
        for key, element in stored.items():
            if key not in result and "BulkDataURI" not in element and element.get("vr") != "SQ":
                result[key] = element
    result["00081190"] = {"vr": "UR", "Value": [retrieve_url]}
    return dict(sorted(result.items()))


#: the highest level whose main tags hold each keyword (StudyDate: Study)
_KEYWORD_LEVELS: dict[str, Level] = {}
for _level in reversed(_LEVEL_ORDER):
    _KEYWORD_LEVELS.update(dict.fromkeys(MAIN_TAGS[_level], _level))


def _includable(search: Search) -> list[str]:
    """The asked attributes an answer at the search's level can carry: not those of a lower
    level (a study has no one Modality: OHIF's study list asks for it all the same, and
    answering it would read an instance of every study listed)."""
    depth = _LEVEL_ORDER.index(search.level)
    return [
        k
        for k in search.include
        if k not in _KEYWORD_LEVELS or _LEVEL_ORDER.index(_KEYWORD_LEVELS[k]) <= depth
    ]


def needs_stored(search: Search, tags: Mapping[str, str]) -> bool:
    """Whether an answer needs attributes the index does not keep."""
    if search.level is Level.INSTANCE:
        return True  # Rows, Columns, BitsAllocated, NumberOfFrames
    # The index is the whole truth about main tags: one it lacks is absent from the data.
    return any(
        k not in tags
        and k not in _KEYWORD_LEVELS
        and k not in COUNTS
        and k not in ("InstanceAvailability", "ModalitiesInStudy")
        for k in _includable(search)
    )
