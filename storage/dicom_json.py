"""DICOM JSON (PS3.18 F.2) of a parsed instance, most of it straight from the raw elements.

pydicom turns each RawDataElement into a DataElement (value conversion, validation,
MultiValue) and then walks the DataElements again to make DICOM JSON: about a third of
ingest's CPU for a small instance. Here the elements of common VRs go from their raw
bytes to their JSON entry directly, following pydicom 3.0's conversion rules to the
letter: the metadata feeds the content digest, which other nodes and older versions
compute with pydicom, so one differing character would make the same instance look
like a different one.

Whatever this module is not sure of goes through pydicom exactly as before: sequences
(pydicom parses them; their items' raw elements come back here), UN and ambiguous VRs,
private tags in implicit VR, binary values large enough to become bulk data, LUT
descriptors, text under a character set other than one single-byte Latin-1 or UTF-8
encoding (or with an escape sequence, or that does not decode), numbers pydicom reads
in its own way (IS "1.5", DS " ", a wrong length...), and every element when pydicom's
configuration is not the default these rules were read from.

Two steps, because a damaged value must be refused when the file is read, before
anything is decided about it (:func:`decode_all`), while the JSON is made after
``split_dataset`` changed the dataset (UIDs rewritten, ambiguous VRs corrected, Pixel
Data taken out; :func:`to_json_dict`). The entries made while reading are kept on the
dataset with the raw element they came from, and used only if that very raw element is
still in place: anything that touched it made pydicom convert it, and pydicom then makes
its JSON too.

``tests/storage/test_dicom_json*.py`` compare both paths on pydicom's test files and on
generated values of every handled VR.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pydicom
import pydicom.valuerep
from pydicom import config
from pydicom import hooks as pydicom_hooks
from pydicom.datadict import DicomDictionary
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import _LUT_DESCRIPTOR_TAGS as _LUT_DESCRIPTORS

Entry = dict[str, Any]
#: ``bulk_uri(element, key)``: store a binary value too large to be inline, answer its
#: URI; ``key`` is the element's path, ``TAG`` or ``SEQ.ITEM.TAG`` (hex tags).
BulkUri = Callable[[DataElement, str], str]
#: The values of one element, ``[]`` when it has none, ``None`` when unsure (pydicom's turn).
Values = list[Any] | None

# The rules below were read from pydicom 3.0's source; another version may convert
# differently, so it gets pydicom's path until the tests here have been run against it.
_RULES_FROM = "3.0."
_ATTRIBUTE = "_pacsnode_json"  # lower case: pydicom's Dataset keeps it as a plain attribute
_UNDEFINED_LENGTH = 0xFFFFFFFF
_ESC = b"\x1b"
# The encodings pydicom's decode_bytes applies as a plain bytes.decode when there is a
# single one and no escape sequence ('iso8859' is its default, Latin-1 like ISO_IR 100).
_PLAIN_ENCODINGS = frozenset({"iso8859", "latin_1", "UTF8"})
# pydicom's own default repertoire decoding (values.py decodes these VRs with it).
_DEFAULT_ENCODING = "iso8859"
_NUMBER_FORMATS = {"US": "H", "SS": "h", "UL": "L", "SL": "l", "SV": "q", "UV": "Q"}
_FLOAT_FORMATS = {"FL": "f", "FD": "d"}
_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW"})
# pydicom adjusts their first value; a set, not pydicom's tuple, for a hashed lookup
_LUT_DESCRIPTOR_TAGS = frozenset(int(tag) for tag in _LUT_DESCRIPTORS)


@dataclass
class _Entries:
    """Entries made while reading one dataset, each with the raw element it came from."""

    inline_limit: int
    by_tag: dict[int, tuple[RawDataElement, Entry]] = field(default_factory=dict)


# --- the two steps --------------------------------------------------------------------


def decode_all(dataset: Dataset, bulk_data_threshold: int) -> None:
    """Decode every value now, so that a damaged file fails here.

    Raw elements the fast path handles get their JSON entry (kept for
    :func:`to_json_dict`); the others are converted by pydicom, in the same order as
    iterating the dataset did, and the items of sequences are walked the same way.
    ``bulk_data_threshold`` is the one :func:`to_json_dict` will be given.
    """
    _decode_dataset(dataset, _inline_limit(bulk_data_threshold), _pydicom_is_default())


def _decode_dataset(dataset: Dataset, inline_limit: int, fast: bool) -> None:
    entries = _Entries(inline_limit)
    encoding = _plain_encoding(dataset) if fast else None
    current = dataset.get_item
    for tag in sorted(dataset.keys()):
        element = current(tag)  # what pydicom has now: converting one may convert others
        if fast and isinstance(element, RawDataElement):
            entry = _raw_entry(element, encoding, inline_limit)
            if entry is not None:
                entries.by_tag[tag] = (element, entry)
                continue
        element = dataset[tag]  # pydicom's conversion: raises on a damaged value
        if element.VR == "SQ":
            for item in element.value:
                _decode_dataset(item, inline_limit, fast)
    object.__setattr__(dataset, _ATTRIBUTE, entries)


def to_json_dict(dataset: Dataset, bulk_data_threshold: int, bulk_uri: BulkUri) -> dict[str, Any]:
    """``dataset.to_json_dict(bulk_data_threshold, handler)``, the same dict, faster.

    Keys in the dataset's own order, as pydicom gives them; binary values whose base64
    would be longer than ``bulk_data_threshold`` go to ``bulk_uri``.
    """
    return _dataset_json(dataset, bulk_data_threshold, bulk_uri, "", _pydicom_is_default())


def kept_single_value(dataset: Dataset, tag: int) -> Any | None:
    """The value :func:`decode_all` found for ``tag`` if it is a single one, else ``None``.

    For a caller that only reads a value: asking pydicom for it would convert the raw
    element, and then pydicom makes its JSON entry too. ``None`` when the element is
    absent, was converted since, is empty or multi-valued, or went through pydicom.
    """
    entries = dataset.__dict__.get(_ATTRIBUTE)
    if not isinstance(entries, _Entries):
        return None
    kept = entries.by_tag.get(tag)
    if kept is None or dataset.get_item(tag) is not kept[0]:
        return None
    values = kept[1].get("Value")
    return values[0] if values is not None and len(values) == 1 else None


def top_level_entries(
    dataset: Dataset, tags: frozenset[int], bulk_data_threshold: int
) -> dict[str, Any]:
    """The entries :func:`to_json_dict` would give the top-level elements of ``tags``,
    without converting the rest (and leaving the entries :func:`decode_all` kept for it).
    An element whose value would be bulk data is left out."""
    fast = _pydicom_is_default()
    kept = dataset.__dict__.get(_ATTRIBUTE)
    by_tag = kept.by_tag if fast and isinstance(kept, _Entries) else {}
    encoding = _plain_encoding(dataset) if fast else None
    inline_limit = _inline_limit(bulk_data_threshold)
    result: dict[str, Any] = {}
    for tag in sorted(tags & set(dataset.keys())):
        element = dataset.get_item(tag)
        entry = None
        if fast:
            entry = _entry_from_bytes(element, by_tag.get(tag), encoding, inline_limit)
        if entry is None:
            try:
                entry = _pydicom_entry(
                    dataset[tag], bulk_data_threshold, _no_bulk, f"{tag:08X}", fast
                )
            except _IsBulk:
                continue
        result[f"{tag:08X}"] = entry
    return result


class _IsBulk(Exception):
    pass


def _no_bulk(element: DataElement, key: str) -> str:
    raise _IsBulk(key)


# --- walking datasets -----------------------------------------------------------------


def _dataset_json(
    dataset: Dataset, threshold: int, bulk_uri: BulkUri, prefix: str, fast: bool
) -> dict[str, Any]:
    entries = _kept_entries(dataset, threshold) if fast else {}
    encoding = _plain_encoding(dataset) if fast else None
    inline_limit = _inline_limit(threshold)
    result: dict[str, Any] = {}
    for tag, element in list(dataset.items()):
        key = f"{tag:08X}"
        entry = (
            _entry_from_bytes(element, entries.get(tag), encoding, inline_limit) if fast else None
        )
        if entry is None:
            entry = _pydicom_entry(dataset[tag], threshold, bulk_uri, prefix + key, fast)
        result[key] = entry
    return result


def _entry_from_bytes(
    element: DataElement | RawDataElement,
    kept: tuple[RawDataElement, Entry] | None,
    encoding: str | None,
    inline_limit: int,
) -> Entry | None:
    """A raw element's entry: the one :func:`decode_all` made if that very raw element is
    still in place, else one made from its bytes now; ``None`` for pydicom's turn."""
    if not isinstance(element, RawDataElement):
        return None
    if kept is not None and kept[0] is element:
        return kept[1]
    return _raw_entry(element, encoding, inline_limit)


def _pydicom_entry(
    element: DataElement, threshold: int, bulk_uri: BulkUri, key: str, fast: bool
) -> Entry:
    """pydicom's entry for an element; a sequence's items come back to the fast path."""
    if element.VR == "SQ":
        # As DataElement.to_json_dict makes it: "Value" always, [] for no items.
        items = [
            _dataset_json(item, threshold, bulk_uri, f"{key}.{index}.", fast)
            for index, item in enumerate(element.value)
        ]
        return {"vr": element.VR, "Value": items}
    return element.to_json_dict(lambda bulk: bulk_uri(bulk, key), threshold)


def _kept_entries(dataset: Dataset, threshold: int) -> dict[int, tuple[RawDataElement, Entry]]:
    """The entries :func:`decode_all` made, once: a second call makes its own."""
    entries = dataset.__dict__.pop(_ATTRIBUTE, None)
    if not isinstance(entries, _Entries) or entries.inline_limit != _inline_limit(threshold):
        return {}
    return entries.by_tag


def _inline_limit(bulk_data_threshold: int) -> int:
    """Longest binary value kept inline: pydicom compares the raw length with this."""
    return (bulk_data_threshold // 4) * 3


def _pydicom_is_default() -> bool:
    """Whether pydicom converts values with the defaults the rules here were read from."""
    return (
        pydicom.__version__.startswith(_RULES_FROM)
        and config.settings.reading_validation_mode != config.RAISE
        and not config.datetime_conversion
        and not config.use_DS_numpy
        and not config.use_IS_numpy
        and not config.use_none_as_empty_text_VR_value
        and config.data_element_callback is None
        and pydicom.valuerep.DSclass is pydicom.valuerep.DSfloat
        and pydicom_hooks.hooks.raw_element_vr is pydicom_hooks.raw_element_vr
        and pydicom_hooks.hooks.raw_element_value is pydicom_hooks.raw_element_value
        and not pydicom_hooks.hooks.raw_element_kwargs
    )


def _plain_encoding(dataset: Dataset) -> str | None:
    """The text encoding of ``dataset`` when decoding is a plain ``bytes.decode``.

    pydicom decodes a dataset's text with its original character set (or, for a
    dataset not read from a file, the one its Specific Character Set gives).
    """
    encodings = dataset.original_character_set or dataset._character_set
    if isinstance(encodings, str):
        encodings = [encodings]
    if len(encodings) != 1 or encodings[0] not in _PLAIN_ENCODINGS:
        return None
    return str(encodings[0])


# --- one raw element ------------------------------------------------------------------


def _raw_entry(raw: RawDataElement, encoding: str | None, inline_limit: int) -> Entry | None:
    """The JSON entry of ``raw`` as pydicom would make it, or ``None`` if unsure."""
    tag, vr, length, value, _, _, little_endian = raw[:7]
    if vr is None:  # implicit VR: pydicom looks the tag up in its dictionary first
        known = DicomDictionary.get(tag)
        if known is None:
            return None
        vr = known[0]
    if length == _UNDEFINED_LENGTH or tag in _LUT_DESCRIPTOR_TAGS:
        return None
    if length == 0:
        # pydicom gives each VR its empty value (VM 0): no "Value" key
        return {"vr": vr} if vr in _CONVERTERS or vr in _BINARY_VRS else None
    if value is None:  # deferred read
        return None
    if vr in _BINARY_VRS:
        if len(value) > inline_limit:
            return None  # bulk data: pydicom hands the element to the bulk handler
        if not value:
            return {"vr": vr}
        return {"vr": vr, "InlineBinary": base64.b64encode(value).decode("utf-8")}
    converter = _CONVERTERS.get(vr)
    if converter is None:
        return None
    values = converter(value, little_endian, encoding)
    if values is None:
        return None
    return {"vr": vr, "Value": values} if values else {"vr": vr}


# --- values by VR ---------------------------------------------------------------------
#
# Each follows pydicom.values.convert_* (decoding, splitting, stripping) and then what
# DataElement.to_json_dict does with the result: a single value is [value] unless it is
# empty (VM 0, no "Value"); a multi-value keeps all its items, empty ones included;
# numbers go through int() or float().


def _single_or_all(items: list[Any]) -> list[Any]:
    if len(items) == 1:
        return items if items[0] else []
    return items


def _strings(value: bytes, little_endian: bool, encoding: str | None) -> Values:
    """AS, CS, DA, DT, TM: trailing spaces and NULs of the whole value go."""
    text = value.decode(_DEFAULT_ENCODING)
    return _single_or_all(text.rstrip(" \x00").split("\\"))


def _application_entity(value: bytes, little_endian: bool, encoding: str | None) -> Values:
    """AE: each value loses its leading and trailing whitespace."""
    text = value.decode(_DEFAULT_ENCODING)
    return _single_or_all([item.strip() for item in text.split("\\")])


def _uid(value: bytes, little_endian: bool, encoding: str | None) -> Values:
    """UI: trailing NULs and spaces go, then UID() strips each value."""
    text = value.decode(_DEFAULT_ENCODING).rstrip("\x00 ")
    return _single_or_all([item.strip() for item in text.split("\\")])


def _uri(value: bytes, little_endian: bool, encoding: str | None) -> Values:
    """UR: one value, trailing whitespace stripped, backslashes kept."""
    return _single_or_all([value.decode(_DEFAULT_ENCODING).rstrip()])


def _decimal_strings(value: bytes, little_endian: bool, encoding: str | None) -> Values:
    """DS: the whole value stripped; each part is a float() of its text (as DSfloat is)."""
    items = value.decode(_DEFAULT_ENCODING).strip().rstrip(" \x00").split("\\")
    if len(items) == 1 and items[0] == "":
        return []  # DSfloat("") stays "", a value of VM 0
    numbers = []
    for item in items:
        if not item.strip():
            return None  # kept as a string, which to_json_dict's float() refuses
        try:
            numbers.append(float(item))
        except ValueError:
            return None  # pydicom retries other VRs
    return numbers


def _integer_strings(value: bytes, little_endian: bool, encoding: str | None) -> Values:
    """IS: each part is int() of its text, when that is also what float() reads."""
    items = value.decode(_DEFAULT_ENCODING).rstrip(" \x00").split("\\")
    if len(items) == 1 and items[0] == "":
        return []
    numbers = []
    for item in items:
        if not item.strip():
            return None
        try:
            number = int(item)
        except ValueError:
            return None  # "1.0", "1e3": IS goes through float
        if number != float(item):
            return None  # too large for a float: pydicom keeps an ISfloat
        numbers.append(number)
    return numbers


def _numbers(value: bytes, little_endian: bool, form: str, cast: type) -> Values:
    size = struct.calcsize(f"={form}")  # standard sizes: native "L" is 8 bytes
    if len(value) % size:
        return None  # pydicom raises BytesLengthException
    count = len(value) // size
    if count == 0:
        return None
    unpacked = struct.unpack(f"{'<' if little_endian else '>'}{count}{form}", value)
    return [cast(number) for number in unpacked]


def _integer_converter(form: str) -> Callable[[bytes, bool, str | None], Values]:
    def convert(value: bytes, little_endian: bool, encoding: str | None) -> Values:
        return _numbers(value, little_endian, form, int)

    return convert


def _float_converter(form: str) -> Callable[[bytes, bool, str | None], Values]:
    def convert(value: bytes, little_endian: bool, encoding: str | None) -> Values:
        return _numbers(value, little_endian, form, float)

    return convert


def _attribute_tags(value: bytes, little_endian: bool, encoding: str | None) -> Values:
    """AT: each tag as eight upper-case hex digits."""
    if len(value) % 4:
        return None  # pydicom drops the tail, and a lone tag then breaks to_json_dict
    count = len(value) // 2
    halves = struct.unpack(f"{'<' if little_endian else '>'}{count}H", value)
    return [f"{halves[i] << 16 | halves[i + 1]:08X}" for i in range(0, count, 2)]


def _decoded(value: bytes, encoding: str | None) -> str | None:
    """Text as pydicom's decode_bytes gives it, when that is a plain strict decode."""
    if encoding is None or _ESC in value:
        return None
    try:
        return value.decode(encoding)
    except UnicodeDecodeError:
        return None  # pydicom decodes with replacement characters (and warns)


def _texts(value: bytes, little_endian: bool, encoding: str | None) -> Values:
    """SH, LO, UC: split on backslashes, each value loses trailing NULs and spaces."""
    text = _decoded(value, encoding)
    if text is None:
        return None
    return _single_or_all([item.rstrip("\x00 ") for item in text.split("\\")])


def _long_text(value: bytes, little_endian: bool, encoding: str | None) -> Values:
    """ST, LT, UT: one value, backslashes kept, trailing NULs and spaces stripped."""
    text = _decoded(value, encoding)
    if text is None:
        return None
    return _single_or_all([text.rstrip("\x00 ")])


def _person_names(value: bytes, little_endian: bool, encoding: str | None) -> Values:
    """PN: {"Alphabetic", "Ideographic", "Phonetic"} from the '='-separated groups."""
    text = _decoded(value.rstrip(b"\x00 "), encoding)
    if text is None:
        return None
    names = []
    for item in text.split("\\"):
        groups = item.split("=")
        while groups and not groups[-1]:
            groups.pop()  # PersonName drops empty trailing groups
        names.append(groups)
    if len(names) == 1:
        if not names[0]:
            return []  # an empty PersonName is a value of VM 0
    elif not all(names):
        return None  # an empty name among several: to_json_dict fails on it
    return [_person_name(groups) for groups in names]


def _person_name(groups: list[str]) -> dict[str, str]:
    name = {"Alphabetic": groups[0]}
    if len(groups) > 1:
        name["Ideographic"] = groups[1]
    if len(groups) > 2:
        name["Phonetic"] = groups[2]
    return name


_CONVERTERS: dict[str, Callable[[bytes, bool, str | None], Values]] = {
    "AE": _application_entity,
    "AS": _strings,
    "CS": _strings,
    "DA": _strings,
    "DT": _strings,
    "TM": _strings,
    "UI": _uid,
    "UR": _uri,
    "DS": _decimal_strings,
    "IS": _integer_strings,
    "AT": _attribute_tags,
    "SH": _texts,
    "LO": _texts,
    "UC": _texts,
    "ST": _long_text,
    "LT": _long_text,
    "UT": _long_text,
    "PN": _person_names,
    **{vr: _integer_converter(form) for vr, form in _NUMBER_FORMATS.items()},
    **{vr: _float_converter(form) for vr, form in _FLOAT_FORMATS.items()},
}
