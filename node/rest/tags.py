"""DICOM JSON shown in Orthanc's three tag formats.

- ``simplify`` (HUMAN): keyword -> value, sequences as lists of such objects;
- ``short``: ``"gggg,eeee"`` -> value;
- ``full``: ``"gggg,eeee"`` -> ``{"Name", "Type", "Value"}`` (and ``PrivateCreator`` for
  private values), Type being ``String``, ``Sequence``, ``Null`` (binary values, empty
  numbers) or ``TooLong`` (a text over 256 bytes, shown whole for the tags
  ``?ignore-length=`` names).

Pixel Data is the exception: ``TooLong`` in the full format and left out of the other two
(pacsnode's REST tests fix that; Orthanc shows it as ``Null`` like other binary values).

Values are Orthanc's text: several values joined by ``\\``, numbers written out, person
names as stored. Names are the DICOM keywords (``RETIRED_`` before retired ones, as
DCMTK writes them), ``PrivateCreator`` for private creators, the configured private
dictionary for private tags, and ``Unknown Tag & Data`` for anything else.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from pydicom.datadict import dictionary_is_retired, keyword_for_tag, tag_for_keyword

from pacsnode.node.errors import BadRequest
from pacsnode.node.settings import PrivateTag

MAX_TEXT_LENGTH = 256  # Orthanc's longest text shown in /tags
UNKNOWN = "Unknown Tag & Data"
PIXEL_DATA_KEY = "7FE00010"
IMPLICIT_VR = "1.2.840.10008.1.2"
PACSNODE_KEYS = frozenset({"00083002"})  # the transfer syntax pacsnode keeps in its metadata
_NOT_RETIRED = {0x00101000}  # Orthanc names OtherPatientIDs without the prefix
_NUMBER_VRS = frozenset({"US", "SS", "UL", "SL", "UV", "SV", "FL", "FD", "AT"})
_TAG = re.compile(r"^([0-9A-Fa-f]{4})[-,]?([0-9A-Fa-f]{4})$")


class TagFormat(Enum):
    HUMAN = "simplify"
    SHORT = "short"
    FULL = "full"


def tag_format(query: Mapping[str, str], default: TagFormat) -> TagFormat:
    """Orthanc's order: ``simplify``, then ``short``, then ``full``, else the route's default."""
    for fmt in (TagFormat.HUMAN, TagFormat.SHORT, TagFormat.FULL):
        if fmt.value in query and query[fmt.value].lower() not in ("false", "0", "no"):
            return fmt
    return default


def body_format(body: Mapping[str, Any], default: TagFormat = TagFormat.HUMAN) -> TagFormat:
    """The format a JSON body asks with ``"Short": true`` or ``"Full": true``."""
    if body.get("Short") is True:
        return TagFormat.SHORT
    if body.get("Full") is True:
        return TagFormat.FULL
    return default


def parse_tag(text: str) -> int:
    """``0010,0010``, ``0010-0010``, ``00100010`` or a keyword; BadRequest otherwise."""
    text = text.strip()
    match = _TAG.match(text)
    if match:
        return int(match.group(1) + match.group(2), 16)
    tag = tag_for_keyword(text)
    if tag is None:
        raise BadRequest(f"{text!r} is neither a DICOM tag nor a keyword")
    return int(tag)


def parse_tags(text: str) -> list[int]:
    """A list of tags separated by ``;`` (or ``,`` between keywords and ``gggg-eeee``)."""
    tokens = re.findall(r"[0-9A-Fa-f]{4}[-,][0-9A-Fa-f]{4}|[^;,\s]+", text)
    return [parse_tag(token) for token in tokens]


def tag_key(tag: int) -> str:
    """Orthanc's spelling of a tag: ``"0010,0010"``, lower-case hex."""
    return f"{tag >> 16:04x},{tag & 0xFFFF:04x}"


@dataclass(frozen=True)
class TagNames:
    """Names of tags; private ones from the configured private dictionary."""

    private: Mapping[tuple[int, int, str], str] = field(default_factory=dict)

    @classmethod
    def of(cls, tags: Iterable[PrivateTag]) -> TagNames:
        return cls({(tag.tag >> 16, tag.tag & 0xFF, tag.creator): tag.name for tag in tags})

    def name(self, tag: int, creator: str | None = None) -> str:
        group, element = tag >> 16, tag & 0xFFFF
        if group % 2:
            if element == 0:
                return "PrivateGroupLength"
            if 0x10 <= element <= 0xFF:
                return "PrivateCreator"
            return self.private.get((group, element & 0xFF, creator or ""), UNKNOWN)
        keyword = keyword_for_tag(tag)
        if not keyword:
            return "GenericGroupLength" if element == 0 else UNKNOWN
        if tag not in _NOT_RETIRED and dictionary_is_retired(tag):
            return f"RETIRED_{keyword}"
        return keyword


def _number(value: float | int, vr: str) -> str:
    if isinstance(value, int) or vr in ("IS", "US", "SS", "UL", "SL", "UV", "SV"):
        return str(int(value))
    if vr in ("FL", "FD"):
        return f"{value:.17g}"
    # a DS: DICOM JSON keeps its number, not its text; written as the index writes it
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _person_name(value: Mapping[str, str]) -> str:
    groups = [value.get(k, "") for k in ("Alphabetic", "Ideographic", "Phonetic")]
    return "=".join(groups).rstrip("=")


def value_text(value: Any, vr: str) -> str:
    """One value of a DICOM JSON element as Orthanc writes it."""
    if value is None:
        return ""
    if isinstance(value, dict):
        return _person_name(value)
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, (int, float)):
        return _number(value, vr)
    if vr == "AT" and len(str(value)) == 8:
        return tag_key(int(str(value), 16))
    return str(value)


def is_binary(element: Mapping[str, Any]) -> bool:
    """A binary value (shown as Null), group lengths read without a VR excepted."""
    if "BulkDataURI" in element:
        return True
    return "InlineBinary" in element and _group_length(element) is None


def element_text(element: Mapping[str, Any]) -> str | None:
    """A leaf element's text, or ``None`` when there is none (binary, empty number)."""
    vr = str(element.get("vr", "UN"))
    if "InlineBinary" in element:
        return _group_length(element)
    if "BulkDataURI" in element:
        return None
    values = element.get("Value")
    if not values:
        return None if vr in _NUMBER_VRS else ""
    return "\\".join(value_text(value, vr) for value in values)


def _group_length(element: Mapping[str, Any]) -> str | None:
    """Group lengths of private groups read without a VR (UN): four bytes, little endian."""
    if element.get("vr") != "UN":
        return None
    data = base64.b64decode(str(element["InlineBinary"]))
    return str(int.from_bytes(data, "little")) if len(data) == 4 else None


@dataclass(frozen=True)
class TagWriter:
    """Turns DICOM JSON (pacsnode's stored metadata) into one of Orthanc's formats."""

    fmt: TagFormat = TagFormat.FULL
    names: TagNames = field(default_factory=TagNames)
    ignore_length: frozenset[int] = frozenset()
    whole: bool = False  # keep top-level elements stored after Pixel Data

    def dataset(self, metadata: Mapping[str, Any]) -> dict[str, Any]:
        syntax = (metadata.get("00083002") or {}).get("Value") or [""]
        return self._items(metadata, top=True, implicit=syntax[0] == IMPLICIT_VR)

    def _items(self, metadata: Mapping[str, Any], top: bool, implicit: bool) -> dict[str, Any]:
        shown: dict[str, Any] = {}
        after_pixels = top and not self.whole and PIXEL_DATA_KEY in metadata
        for key in sorted(metadata):
            if top and key in PACSNODE_KEYS:
                continue
            if after_pixels and key > PIXEL_DATA_KEY:
                break
            tag, element = int(key, 16), metadata[key]
            creator = _creator(metadata, tag)
            name = self.names.name(tag, creator)
            label = name if self.fmt is TagFormat.HUMAN else tag_key(tag)
            if implicit and name == UNKNOWN:  # read without a VR: bytes, as DCMTK reads them
                element = {"vr": "UN", "BulkDataURI": ""}
            shown[label] = self._element(tag, name, creator, element, implicit)
        if self.fmt is TagFormat.HUMAN:
            # by name, as Orthanc's JSON writer orders keys: clients (Orthanc's own tests,
            # under Python 2) compare key lists in the order they are read
            return dict(sorted(shown.items()))
        return shown

    def _element(
        self, tag: int, name: str, creator: str | None, element: Any, implicit: bool
    ) -> Any:
        if element.get("vr") == "SQ":
            values = element.get("Value") or []
            items = [self._items(item, top=False, implicit=implicit) for item in values]
            if self.fmt is TagFormat.FULL:
                return {"Name": name, "Type": "Sequence", "Value": items}
            return items
        text = element_text(element)
        kind = "Null" if text is None else "String"
        if text is not None and tag not in self.ignore_length:
            if len(text.encode("utf-8")) > MAX_TEXT_LENGTH:
                kind, text = "TooLong", None
        if self.fmt is not TagFormat.FULL:
            return text
        if creator:
            return {"Name": name, "PrivateCreator": creator, "Type": kind, "Value": text}
        return {"Name": name, "Type": kind, "Value": text}


def _creator(metadata: Mapping[str, Any], tag: int) -> str | None:
    group, element = tag >> 16, tag & 0xFFFF
    if not group % 2 or element < 0x1000:
        return None
    values = metadata.get(f"{group:04X}00{element >> 8:02X}", {}).get("Value") or [""]
    return str(values[0]).strip()


def main_tags(tags: Mapping[str, str], fmt: TagFormat) -> dict[str, Any]:
    """Main DICOM tags kept by keyword (the index's), in the requested format."""
    if fmt is TagFormat.HUMAN:
        return dict(tags)
    shown: dict[str, Any] = {}
    for keyword in sorted(tags, key=lambda k: tag_for_keyword(k) or 0):
        tag = tag_for_keyword(keyword)
        if tag is None:
            continue
        key = tag_key(int(tag))
        value = tags[keyword]
        shown[key] = value if fmt is TagFormat.SHORT else _full(keyword, value)
    return shown


def _full(name: str, value: Any) -> dict[str, Any]:
    return {"Name": name, "Type": "String" if value is not None else "Null", "Value": value}


def orthanc_tags(metadata: dict[str, Any]) -> dict[str, Any]:
    """``/tags`` in Orthanc's default (full) format."""
    return TagWriter(TagFormat.FULL).dataset(metadata)


def simplified_tags(metadata: dict[str, Any]) -> dict[str, Any]:
    """``/simplified-tags``: keyword -> value."""
    return TagWriter(TagFormat.HUMAN).dataset(metadata)
