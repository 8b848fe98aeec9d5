"""One instance's DICOM JSON flattened into the fields the search index keeps (pure).

Every attribute is indexed, at any depth: each value of a multi-valued attribute
and of every item of a sequence becomes one :class:`FieldValue`, named by its path
(:mod:`.fields`: ``00080060``, ``00081140.00081155``, ``0019[GEMS_ACQU_01]10``).
Binary values (InlineBinary, BulkDataURI, the OB/OW/UN family) are left out; a person
name gives one value per component group present (alphabetic, ideographic,
phonetic). Text is folded to lower case and cut to :data:`MAX_VALUE_CHARS`;
numbers, dates and times also carry a sort number for ranges.

The free text of a document holds the values of the textual VRs (names,
descriptions, codes, dates), not UIDs, numbers or times, whose pieces would only
add noise to word search; those are reached by field.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pacsnode.node.ids import resource_ids
from pacsnode.node.search.fields import (
    NUMBER_VRS,
    TEMPORAL_VRS,
    PathPart,
    PrivateTag,
    StandardTag,
    canonical_number,
    fold,
    format_number,
    path_key,
    sort_number,
)

#: longer values are cut for field matching (free text keeps MAX_TEXT_CHARS of them)
MAX_VALUE_CHARS = 256
MAX_TEXT_CHARS = 4096
#: deeper sequences are not followed (real data nests a handful of levels)
MAX_DEPTH = 16
BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
FREE_TEXT_VRS = frozenset({"AE", "AS", "CS", "DA", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"})
_PERSON_NAME_GROUPS = ("Alphabetic", "Ideographic", "Phonetic")


@dataclass(frozen=True)
class LevelIds:
    """The resource ids of an instance and of its ancestors (Orthanc's, see node/ids.py)."""

    patient: str
    study: str
    series: str
    instance: str


@dataclass(frozen=True)
class FieldValue:
    key: str  #: the field's path key
    vr: str
    text: str  #: folded, at most MAX_VALUE_CHARS
    number: float | None  #: for ranges: numbers, DA, TM, DT


@dataclass(frozen=True)
class Document:
    ids: LevelIds
    values: tuple[FieldValue, ...]
    text: str  #: free text, one value a line


def level_ids(dataset: Mapping[str, Any]) -> LevelIds:
    """The ids the node gives this instance, from its PatientID and UIDs."""
    ids = resource_ids(
        _first_text(dataset, "00100020"),
        _first_text(dataset, "0020000D"),
        _first_text(dataset, "0020000E"),
        _first_text(dataset, "00080018"),
    )
    return LevelIds(*ids.values())


def _first_text(dataset: Mapping[str, Any], tag: str) -> str:
    values = (dataset.get(tag) or {}).get("Value") or [""]
    return str(values[0]).strip()


def flatten(dataset: Mapping[str, Any], ids: LevelIds) -> Document:
    """The document to index for one instance's DICOM JSON (PS3.18 F.2)."""
    values: dict[tuple[str, str], FieldValue] = {}  # duplicates (same key, same text) once
    text: list[str] = []
    for value, free_text in _walk(dataset, (), 0):
        values.setdefault((value.key, value.text), value)
        if free_text:
            text.append(free_text)
    return Document(ids, tuple(values.values()), "\n".join(text))


def _creators(dataset: Mapping[str, Any]) -> dict[tuple[int, int], str]:
    """(group, block) -> private creator, from the creator elements (gggg,0010-00FF)."""
    creators = {}
    for tag, element in dataset.items():
        group, number = _split_tag(tag)
        if group is not None and group % 2 == 1 and 0x10 <= number <= 0xFF:
            value = (element.get("Value") or [None])[0] if isinstance(element, dict) else None
            if isinstance(value, str):
                creators[(group, number)] = value.strip()
    return creators


def _split_tag(tag: str) -> tuple[int | None, int]:
    try:
        return int(tag[:4], 16), int(tag[4:8], 16)
    except ValueError:
        return None, 0


def _part(tag: str, creators: dict[tuple[int, int], str]) -> PathPart | None:
    group, element = _split_tag(tag)
    if group is None or len(tag) != 8 or element == 0:  # group lengths say nothing
        return None
    if group % 2 == 1 and element >= 0x1000:
        creator = creators.get((group, element >> 8), "")
        return PrivateTag(creator, group, element & 0xFF)
    return StandardTag(group << 16 | element)


def _walk(
    dataset: Mapping[str, Any], prefix: tuple[PathPart, ...], depth: int
) -> Iterator[tuple[FieldValue, str]]:
    creators = _creators(dataset)
    for tag, element in dataset.items():
        part = _part(tag, creators)
        if part is None or not isinstance(element, dict):
            continue
        path = (*prefix, part)
        vr = str(element.get("vr", "UN"))
        if vr == "SQ":
            if depth < MAX_DEPTH:
                for item in element.get("Value") or []:
                    if isinstance(item, dict):
                        yield from _walk(item, path, depth + 1)
            continue
        if vr in BINARY_VRS or "Value" not in element:
            continue
        key = path_key(path)
        for raw in element["Value"] or []:
            yield from _values(key, vr, raw)


def _values(key: str, vr: str, raw: Any) -> Iterator[tuple[FieldValue, str]]:
    """The field values (and their free text) of one value of an attribute."""
    if raw is None:
        return
    if vr == "PN":
        if isinstance(raw, dict):
            for group in _PERSON_NAME_GROUPS:
                name = raw.get(group)
                if isinstance(name, str) and name.strip():
                    yield _text_value(key, vr, name), name.strip()[:MAX_TEXT_CHARS]
        return
    if vr in NUMBER_VRS:
        yield _number_value(key, vr, raw), ""
        return
    if isinstance(raw, str | int | float):
        text = str(raw)
        if text.strip():
            free = text.strip()[:MAX_TEXT_CHARS] if vr in FREE_TEXT_VRS else ""
            yield _text_value(key, vr, text), free


def _text_value(key: str, vr: str, text: str) -> FieldValue:
    number = sort_number(vr, text) if vr in TEMPORAL_VRS else None
    return FieldValue(key, vr, fold(text)[:MAX_VALUE_CHARS], number)


def _number_value(key: str, vr: str, raw: Any) -> FieldValue:
    """Numbers are written one way (``2.50`` as ``2.5``) so that ``Field:2.5`` finds them."""
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raw = str(raw)
    if isinstance(raw, int | float):
        number = float(raw)
        if number != number or abs(number) == float("inf"):
            return FieldValue(key, vr, fold(str(raw)), None)
        return FieldValue(key, vr, format_number(number), number)
    canonical = canonical_number(raw)
    if canonical is None:  # a DS or IS that is not a number: kept as text
        return FieldValue(key, vr, fold(raw)[:MAX_VALUE_CHARS], None)
    return FieldValue(key, vr, canonical, float(canonical))
