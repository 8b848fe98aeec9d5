"""C-FIND identifiers: what to match, and the answer for each matching resource.

The index keeps the main tags of each level; a query may match on, or ask for, any
other attribute too. Matching on one is the index plugins' (the search index, see
:mod:`pacsnode.node.index_plugins`); an attribute asked for that the index does not keep
is read from one instance of each match (as Orthanc does), and only when asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydicom.charset import python_encoding
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag, Tag

from pacsnode.node.dicom.sequence_keys import ItemKeys, parse_item_keys
from pacsnode.node.dicom.sequence_keys import constraints as sequence_constraints
from pacsnode.node.ids import Level
from pacsnode.node.index_plugins.maintags import main_tag_keywords
from pacsnode.node.query import Constraint, identifier_text, parse_constraint

#: QueryRetrieveLevel values, with the plurals some devices send (Orthanc takes them too)
_LEVELS = {
    "PATIENT": Level.PATIENT,
    "PATIENTS": Level.PATIENT,
    "STUDY": Level.STUDY,
    "STUDIES": Level.STUDY,
    "SERIES": Level.SERIES,
    "IMAGE": Level.INSTANCE,
    "IMAGES": Level.INSTANCE,
    "INSTANCE": Level.INSTANCE,
    "INSTANCES": Level.INSTANCE,
}
DICOM_LEVEL_NAMES = {
    Level.PATIENT: "PATIENT",
    Level.STUDY: "STUDY",
    Level.SERIES: "SERIES",
    Level.INSTANCE: "IMAGE",
}
#: computed per match from the index, and only meaningful at one level each
COUNTERS = {
    "NumberOfPatientRelatedStudies": Level.PATIENT,
    "NumberOfPatientRelatedSeries": Level.PATIENT,
    "NumberOfPatientRelatedInstances": Level.PATIENT,
    "NumberOfStudyRelatedSeries": Level.STUDY,
    "NumberOfStudyRelatedInstances": Level.STUDY,
    "NumberOfSeriesRelatedInstances": Level.SERIES,
}
SOP_CLASSES_IN_STUDY = "SOPClassesInStudy"
#: answered by the node itself, never matched
_ANSWERED = {"QueryRetrieveLevel", "SpecificCharacterSet", "RetrieveAETitle"}
_BINARY_NUMBERS = {"US": int, "UL": int, "SS": int, "SL": int, "FL": float, "FD": float}


def indexed_keywords(level: Level) -> frozenset[str]:
    """The attributes the index holds for a resource of ``level``: its level's and its
    ancestors' main tags (and a study's modalities)."""
    return main_tag_keywords(level)


def query_level(identifier: Dataset) -> Level | None:
    return _LEVELS.get(str(identifier.get("QueryRetrieveLevel", "")).strip().upper())


@dataclass
class FindRequest:
    """A parsed C-FIND identifier."""

    level: Level
    #: what to match, on any attribute (``core.find_constraints`` takes them)
    constraints: list[Constraint] = field(default_factory=list)
    #: every attribute the caller asked to have returned, in its order
    requested: list[BaseTag] = field(default_factory=list)
    #: what the index (or the node) answers at this level without reading a file
    in_index: set[str] = field(default_factory=set)
    #: sequence keys: their item keys, or None for a sequence returned whole
    sequences: dict[BaseTag, ItemKeys | None] = field(default_factory=dict)

    @property
    def asks_items(self) -> bool:
        """Whether a sequence key asks something of its items (then one stored item must
        match all its item keys: :meth:`items_match`)."""
        return any(keys is not None and not keys.universal for keys in self.sequences.values())

    def items_match(self, metadata: dict[str, Any]) -> bool:
        """Whether an instance's DICOM JSON has, in each sequence asked of, one item that
        matches all its item keys."""
        return all(
            keys.universal or keys.matching_items(metadata.get(f"{int(tag):08X}"))
            for tag, keys in self.sequences.items()
            if keys is not None
        )

    def needs_file(self, tags: dict[str, str]) -> bool:
        """Whether answering needs an instance's metadata beyond the index."""
        for tag in self.requested:
            keyword = keyword_for_tag(tag)
            # The index is authoritative for its own attributes, present or not.
            if keyword not in self.in_index and keyword not in tags:
                return True
        return False


def parse_request(identifier: Dataset, level: Level) -> FindRequest:
    """The identifier as what to match and what to return. Group lengths and groups
    below 0008 are left out: some devices send them, they mean nothing in an identifier."""
    indexed = indexed_keywords(level)
    request = FindRequest(level, in_index={*indexed, *COUNTERS, SOP_CLASSES_IN_STUDY})
    for element in identifier:
        if element.tag.element == 0x0000 or element.tag.group < 0x0008:
            continue  # group lengths, and file meta or command elements
        keyword = element.keyword
        if keyword in _ANSWERED:
            continue
        request.requested.append(element.tag)
        if keyword and element.VR == "SQ":
            item_keys = parse_item_keys(keyword, element)
            request.sequences[element.tag] = item_keys
            request.constraints.extend(sequence_constraints(item_keys))
            continue
        if not keyword or keyword in COUNTERS:
            continue
        value = identifier_text(element.value).strip()
        if not value:
            continue
        if keyword != SOP_CLASSES_IN_STUDY:
            request.constraints.append(parse_constraint(keyword, value))
    return request


#: Python's codecs where pydicom's would write something else: plain ASCII for ISO_IR 6
#: (pydicom's lets Latin-1 through), and Shift-JIS whole for ISO_IR 13 (as Orthanc writes)
_CODECS = {"ISO_IR 6": "ascii", "ISO_IR 13": "shift_jis", "ISO_IR 166": "tis_620"}
#: the VRs whose values are text in the answer's character set
_TEXT_VRS = {"PN", "LO", "SH", "ST", "LT", "UT", "UC"}


@dataclass(frozen=True)
class Charset:
    """The character set answers are written in (the node's default encoding)."""

    term: str  # the Specific Character Set defined term

    @property
    def codec(self) -> str:
        return _CODECS.get(self.term) or python_encoding.get(self.term, "utf-8")

    def encode(self, text: str) -> bytes:
        """The text in this character set, without the characters it cannot write
        (Orthanc drops them too, rather than failing the answer)."""
        return text.encode(self.codec, "ignore")


@dataclass
class Match:
    """What the node knows of one matching resource."""

    tags: dict[str, str]
    counts: dict[str, int]
    metadata: dict[str, Any] | None = None  # one instance's DICOM JSON, when needed
    sop_classes: list[str] | None = None


def answer(request: FindRequest, match: Match, charset: Charset, aet: str) -> Dataset:
    """The response identifier: each requested attribute with our value, or empty."""
    response = Dataset()
    response.SpecificCharacterSet = charset.term
    response.QueryRetrieveLevel = DICOM_LEVEL_NAMES[request.level]
    response.RetrieveAETitle = aet
    for tag in request.requested:
        item_keys = request.sequences.get(tag)
        if item_keys is not None:
            element = _answered_items(tag, item_keys, match.metadata, charset)
        else:
            element = _answered(tag, request.level, match, charset)
        if element is not None:
            response.add(element)
    return response


def _answered_items(
    tag: BaseTag, item_keys: ItemKeys, metadata: dict[str, Any] | None, charset: Charset
) -> DataElement:
    """A sequence key's answer: the stored items that match, cut to the item keys."""
    key = f"{int(tag):08X}"
    items = item_keys.answered((metadata or {}).get(key))
    return _from_metadata(tag, {key: {"vr": "SQ", "Value": items}}, charset) or DataElement(
        tag, "SQ", []
    )


def _answered(tag: BaseTag, level: Level, match: Match, charset: Charset) -> DataElement | None:
    keyword = keyword_for_tag(tag)
    if keyword in COUNTERS:
        shown = match.counts.get(keyword) if COUNTERS[keyword] is level else None
        return DataElement(tag, "IS", "" if shown is None else str(shown))
    if keyword == SOP_CLASSES_IN_STUDY:
        return DataElement(tag, "UI", list(match.sop_classes or []))
    if keyword and keyword in match.tags:
        return _from_text(tag, match.tags[keyword], charset)
    from_file = _from_metadata(tag, match.metadata, charset)
    if from_file is not None:
        return from_file
    try:
        return DataElement(tag, dictionary_VR(tag), None)
    except KeyError:  # a private attribute we know nothing of: left out
        return None


def _from_text(tag: BaseTag, text: str, charset: Charset) -> DataElement:
    vr = dictionary_VR(tag)
    if vr in _TEXT_VRS:
        # Encoded here, so pydicom writes the bytes as they are.
        return DataElement(tag, vr, charset.encode(text))
    parts = text.split("\\")
    kind = _BINARY_NUMBERS.get(vr)
    try:
        values: list[Any] = [kind(p) for p in parts if p] if kind is not None else parts
        return DataElement(tag, vr, values[0] if len(values) == 1 else values)
    except ValueError:  # a value the VR cannot hold: answered empty
        return DataElement(tag, vr, None)


def _from_metadata(
    tag: BaseTag, metadata: dict[str, Any] | None, charset: Charset
) -> DataElement | None:
    if metadata is None:
        return None
    key = f"{int(tag):08X}"
    element = metadata.get(key)
    if element is None or "BulkDataURI" in element or "InlineBinary" in element:
        return None
    loaded = Dataset.from_json({key: element})[Tag(tag)]
    if loaded.VR in _TEXT_VRS and loaded.value is not None:
        values = loaded.value if loaded.VM > 1 else [loaded.value]
        loaded = DataElement(tag, loaded.VR, charset.encode("\\".join(map(str, values))))
    return loaded


#: what a C-MOVE or C-GET identifies resources by at each level, in order of preference
#: (a study by its UID, else by its accession number, as Orthanc does)
_RETRIEVE_KEYS = {
    Level.PATIENT: ("PatientID",),
    Level.STUDY: ("StudyInstanceUID", "AccessionNumber"),
    Level.SERIES: ("SeriesInstanceUID",),
    Level.INSTANCE: ("SOPInstanceUID",),
}


def _implied_level(identifier: Dataset) -> Level | None:
    """The level of a retrieve that names none: that of the most specific key it has."""
    for keyword, level in (
        ("SOPInstanceUID", Level.INSTANCE),
        ("SeriesInstanceUID", Level.SERIES),
        ("StudyInstanceUID", Level.STUDY),
        ("AccessionNumber", Level.STUDY),
        ("PatientID", Level.PATIENT),
    ):
        if keyword in identifier:
            return level
    return None


def retrieve_query(identifier: Dataset) -> tuple[Level, dict[str, str]] | None:
    """(level, the one key to match) of a C-MOVE or C-GET identifier; None when it names
    nothing to retrieve. Only the level's own key counts: a study shared by two patients
    is retrieved whole, whatever PatientID came with its UID. Wildcards are refused, so an
    empty or ``*`` key never retrieves everything."""
    level = query_level(identifier) or _implied_level(identifier)
    if level is None:
        return None
    for keyword in _RETRIEVE_KEYS[level]:
        value = identifier_text(identifier.get(keyword, "")).strip()
        if value and not any(c in value for c in "*?"):
            return level, {keyword: value}
    return None
