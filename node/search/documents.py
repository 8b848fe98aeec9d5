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

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from pacsnode.node.ids import resource_ids
from pacsnode.node.search.fields import (
    NUMBER_VRS,
    TEMPORAL_VRS,
    PrivateTag,
    StandardTag,
    canonical_number,
    fold,
    format_number,
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
#: integers below this are written as they are (format_number's own bound)
_EXACT = 10**15


@dataclass(frozen=True)
class LevelIds:
    """The resource ids of an instance and of its ancestors (Orthanc's, see node/ids.py)."""

    patient: str
    study: str
    series: str
    instance: str


class FieldValue(NamedTuple):  # a tuple: made a few hundred times an instance
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
    _walk(dataset, "", 0, values, text)
    return Document(ids, tuple(values.values()), "\n".join(text))


@functools.lru_cache(maxsize=16384)  # the same few thousand tags recur in every instance
def _tag(tag: str) -> tuple[str | None, int, int] | None:
    """(standard key, or None for a private data element; group; element), None if
    the tag is not one, or a group length (which says nothing)."""
    if len(tag) != 8:
        return None
    try:
        group, element = int(tag[:4], 16), int(tag[4:], 16)
    except ValueError:
        return None
    if element == 0:
        return None
    if group % 2 == 1 and element >= 0x1000:
        return None, group, element
    return StandardTag(group << 16 | element).key, group, element


@functools.lru_cache(maxsize=16384)
def _private_key(creator: str, group: int, element: int) -> str:
    return PrivateTag(creator, group, element & 0xFF).key


def _creators(dataset: Mapping[str, Any]) -> dict[tuple[int, int], str]:
    """(group, block) -> private creator, from the creator elements (gggg,0010-00FF)."""
    creators = {}
    for tag, element in dataset.items():
        parsed = _tag(tag)
        if parsed is None or parsed[1] % 2 == 0 or not 0x10 <= parsed[2] <= 0xFF:
            continue
        value = (element.get("Value") or [None])[0] if isinstance(element, dict) else None
        if isinstance(value, str):
            creators[(parsed[1], parsed[2])] = value.strip()
    return creators


def _walk(
    dataset: Mapping[str, Any],
    prefix: str,
    depth: int,
    values: dict[tuple[str, str], FieldValue],
    text: list[str],
) -> None:
    creators: dict[tuple[int, int], str] | None = None  # read when a private element needs it
    for tag, element in dataset.items():
        parsed = _tag(tag) if isinstance(tag, str) else None
        if parsed is None or not isinstance(element, dict):
            continue
        key, group, number = parsed
        if key is None:
            if creators is None:
                creators = _creators(dataset)
            key = _private_key(creators.get((group, number >> 8), ""), group, number)
        path = f"{prefix}.{key}" if prefix else key
        vr = str(element.get("vr", "UN"))
        items = element.get("Value")
        if not isinstance(items, list):
            continue
        if vr == "SQ":
            if depth < MAX_DEPTH:
                for item in items:
                    if isinstance(item, dict):
                        _walk(item, path, depth + 1, values, text)
        elif vr not in BINARY_VRS:
            for raw in items:
                _add(path, vr, raw, values, text)


def _add(
    key: str, vr: str, raw: Any, values: dict[tuple[str, str], FieldValue], text: list[str]
) -> None:
    """The field values (and free text) of one value of an attribute."""
    if raw is None:
        return
    if vr == "PN":
        if isinstance(raw, dict):
            for group in _PERSON_NAME_GROUPS:
                name = raw.get(group)
                if isinstance(name, str) and name.strip():
                    value = _text_value(key, vr, name)
                    values.setdefault((key, value.text), value)
                    text.append(name.strip()[:MAX_TEXT_CHARS])
        return
    if vr in NUMBER_VRS:
        value = _number_value(key, vr, raw)
    elif isinstance(raw, str | int | float) and not isinstance(raw, bool):
        as_text = str(raw)
        if not as_text.strip():
            return
        value = _text_value(key, vr, as_text)
        if vr in FREE_TEXT_VRS:
            text.append(as_text.strip()[:MAX_TEXT_CHARS])
    else:
        return
    values.setdefault((key, value.text), value)


def _text_value(key: str, vr: str, text: str) -> FieldValue:
    number = sort_number(vr, text) if vr in TEMPORAL_VRS else None
    return FieldValue(key, vr, fold(text)[:MAX_VALUE_CHARS], number)


def _number_value(key: str, vr: str, raw: Any) -> FieldValue:
    """Numbers are written one way (``2.50`` as ``2.5``) so that ``Field:2.5`` finds them."""
    if type(raw) is int and -_EXACT < raw < _EXACT:  # most of them: no float round trip
        return FieldValue(key, vr, str(raw), float(raw))
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        number = float(raw)
        if number != number or abs(number) == float("inf"):
            return FieldValue(key, vr, fold(str(raw)), None)
        return FieldValue(key, vr, format_number(number), number)
    canonical = canonical_number(str(raw))
    if canonical is None:  # a DS or IS that is not a number: kept as text
        return FieldValue(key, vr, fold(str(raw))[:MAX_VALUE_CHARS], None)
    return FieldValue(key, vr, canonical, float(canonical))
