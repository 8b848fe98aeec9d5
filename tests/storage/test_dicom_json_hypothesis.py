"""Generated instances through both paths: the fast DICOM JSON path and pydicom's.

Hypothesis builds data sets of raw values of every VR the fast path handles (and a few it
leaves to pydicom: UN, ambiguous and private tags, LUT descriptors), with odd strings
(backslashes, padding with spaces and NULs, whitespace, escape sequences, bytes that are
not in the character set, numbers pydicom reads in its own way), empty and multiple
values, wrong lengths, under several Specific Character Sets, nested in sequences of
defined and undefined length, in the three uncompressed transfer syntaxes. pydicom writes
each one (raw values as they are); both paths must store the same thing or refuse it at
the same step with the same error. The run is derandomized like the fuzz tests; set
``PACSNODE_DICOM_JSON_EXAMPLES`` (and ``PACSNODE_FUZZ_RANDOM=1``) for a longer search.
"""

from __future__ import annotations

import os
import struct

import pydicom
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydicom.datadict import DicomDictionary
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from benchmarks import synthetic
from tests.storage.test_dicom_json import Tally, assert_same, tally_of

_EXAMPLES = int(os.environ.get("PACSNODE_DICOM_JSON_EXAMPLES", "400"))
_SETTINGS = settings(
    max_examples=_EXAMPLES,
    deadline=None,
    derandomize=os.environ.get("PACSNODE_FUZZ_RANDOM") != "1",
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)

STRING_VRS = ("AE", "AS", "CS", "DA", "DT", "TM", "UI", "UR")
TEXT_VRS = ("SH", "LO", "UC", "ST", "LT", "UT", "PN")
NUMBER_FORMATS = {"US": "H", "SS": "h", "UL": "L", "SL": "l", "SV": "q", "UV": "Q"}
FLOAT_FORMATS = {"FL": "f", "FD": "d"}
BINARY_VRS = ("OB", "OD", "OF", "OL", "OV", "OW")
HANDLED_VRS = (
    *STRING_VRS,
    *TEXT_VRS,
    "DS",
    "IS",
    "AT",
    *NUMBER_FORMATS,
    *FLOAT_FORMATS,
    *BINARY_VRS,
)
# Tags the instance needs as they are, or that split_dataset takes out
_RESERVED = {0x00080005, 0x00080016, 0x00080018, 0x0020000D, 0x0020000E, 0x00083002}
# (tag, VR) pairs pydicom does not convert plainly: private, ambiguous, LUT descriptors
_LEFT_TO_PYDICOM = [
    (0x00090010, "LO"),  # a private creator
    (0x00091010, "OB"),  # a private element of that block
    (0x00091011, "DS"),
    (0x00280106, "US"),  # 'US or SS' in the dictionary: implicit VR leaves it ambiguous
    (0x00280107, "SS"),
    (0x00281101, "US"),  # LUT descriptors: pydicom fixes their first value
    (0x00281102, "SS"),
    (0x00100020, "UN"),  # UN on a known tag: pydicom uses the dictionary's VR
    (0x00091012, "UN"),
    (0x00280103, "US"),  # Pixel Representation, which 'US or SS' depends on
]
# character set: (value of (0008,0005), the Python codec text is written with)
CHARACTER_SETS = [
    (None, "latin-1"),
    (b"", "latin-1"),
    (b"ISO_IR 100", "latin-1"),
    (b"ISO_IR 100 ", "latin-1"),
    (b"ISO_IR 192", "utf-8"),
    (b"ISO_IR 6", "ascii"),
    (b"ISO 2022 IR 100", "latin-1"),
    (b"ISO_IR 144", "iso8859_5"),
    (b"GB18030", "gb18030"),
    (b"\\ISO 2022 IR 100", "latin-1"),
    (b"ISO_IR100", "latin-1"),  # a misspelling pydicom corrects
]
SYNTAXES = [
    (ImplicitVRLittleEndian, True, True),
    (ExplicitVRLittleEndian, False, True),
    (ExplicitVRBigEndian, False, False),
]


def _tags_by_vr() -> dict[str, list[int]]:
    tags: dict[str, list[int]] = {}
    for tag, entry in DicomDictionary.items():
        if tag >> 16 in (0x0000, 0x0002, 0x7FE0) or tag in _RESERVED:
            continue
        tags.setdefault(entry[0], []).append(tag)
    return {vr: sorted(found)[:: max(len(found) // 40, 1)] for vr, found in tags.items()}


TAGS_BY_VR = _tags_by_vr()
SEQUENCE_TAGS = TAGS_BY_VR["SQ"]
_SPECIALS = " \\=^\t\r\n\x0c\x00\x1b.-+eE_éÿ€山"
characters = st.one_of(
    st.sampled_from(_SPECIALS),
    st.characters(min_codepoint=0x20, max_codepoint=0x7E),
    st.characters(max_codepoint=0x4FFF, exclude_categories=["Cs"]),
)
padding = st.sampled_from([b"", b"", b" ", b"\0", b"  ", b" \0", b"\0\0", b"\t"])


@st.composite
def texts(draw: st.DrawFn, codec: str) -> bytes:
    """One or more values joined by backslashes, encoded (or not quite) in ``codec``."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=24))  # any bytes: invalid UTF-8, escapes, NULs
    parts = draw(st.lists(st.text(characters, max_size=10), min_size=1, max_size=4))
    lead = draw(st.sampled_from(["", "", " ", "\0"]))
    text = lead + "\\".join(parts)
    return text.encode(codec, errors="replace") + draw(padding)


number_texts = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.floats(-1e6, 1e6).map(lambda number: f"{number:.6g}"),
    st.integers(-(2**70), 2**70).map(str),
    st.integers(-99999, 99999).map(str),
    st.text(st.sampled_from("0123456789.+-eE _nainf\0\t"), max_size=8),
)


@st.composite
def number_strings(draw: st.DrawFn) -> bytes:
    """DS and IS: numbers written many ways, some not numbers at all."""
    parts = draw(st.lists(number_texts, min_size=1, max_size=4))
    lead = draw(st.sampled_from(["", "", " ", "  "]))
    return (lead + "\\".join(parts)).encode("latin-1", errors="replace") + draw(padding)


@st.composite
def packed(draw: st.DrawFn, form: str, little_endian: bool) -> bytes:
    """Binary numbers: whole values (NaN and infinities too), or any length of bytes."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=20))
    count = draw(st.integers(0, 4))
    if form in "fd":
        numbers = st.floats(width=32 if form == "f" else 64)
    else:
        bits = struct.calcsize(f"={form}") * 8
        signed = form.islower()
        numbers = st.integers(-(2 ** (bits - 1)) if signed else 0, 2 ** (bits - signed) - 1)
    values = draw(st.lists(numbers, min_size=count, max_size=count))
    return struct.pack(f"{'<' if little_endian else '>'}{len(values)}{form}", *values)


@st.composite
def binary_values(draw: st.DrawFn) -> bytes:
    """Around the inline limit (1026 bytes) too, where values turn into bulk data."""
    size = draw(st.one_of(st.integers(0, 40), st.sampled_from([1024, 1025, 1026, 1027, 1100])))
    return bytes([draw(st.integers(0, 255))]) * size


@st.composite
def raw_value(draw: st.DrawFn, vr: str, codec: str, little_endian: bool) -> bytes:
    if draw(st.integers(0, 14)) == 0:
        return b""
    if vr in STRING_VRS:
        return draw(texts("latin-1"))
    if vr in TEXT_VRS:
        return draw(texts(codec))
    if vr in ("DS", "IS"):
        return draw(number_strings())
    if vr in NUMBER_FORMATS:
        return draw(packed(NUMBER_FORMATS[vr], little_endian))
    if vr in FLOAT_FORMATS:
        return draw(packed(FLOAT_FORMATS[vr], little_endian))
    if vr == "AT":
        return draw(packed("H", little_endian))
    if vr in BINARY_VRS:
        return draw(binary_values())
    return draw(st.binary(max_size=16))  # UN


@st.composite
def raw_element(draw: st.DrawFn, codec: str, implicit: bool, little_endian: bool) -> RawDataElement:
    if draw(st.integers(0, 5)) == 0:
        tag, vr = draw(st.sampled_from(_LEFT_TO_PYDICOM))
    else:
        vr = draw(st.sampled_from(HANDLED_VRS))
        if implicit or draw(st.booleans()):
            tag = draw(st.sampled_from(TAGS_BY_VR[vr]))  # implicit VR: the dictionary's VR
        else:
            tag = draw(st.sampled_from(TAGS_BY_VR[draw(st.sampled_from(HANDLED_VRS))]))
    value = draw(raw_value(vr, codec, little_endian))
    return RawDataElement(Tag(tag), vr, len(value), value, 0, implicit, little_endian)


@st.composite
def character_set(draw: st.DrawFn) -> tuple[bytes | None, str]:
    return draw(st.sampled_from(CHARACTER_SETS))


@st.composite
def data_set(
    draw: st.DrawFn, implicit: bool, little_endian: bool, depth: int, codec: str
) -> Dataset:
    dataset = Dataset()
    charset, own_codec = draw(character_set()) if draw(st.integers(0, 2)) == 0 else (None, codec)
    if charset is not None:
        dataset[0x00080005] = RawDataElement(
            Tag(0x00080005), "CS", len(charset), charset, 0, implicit, little_endian
        )
    codec = own_codec if charset is not None else codec
    if depth > 0:  # sequences first: adding one makes pydicom read Pixel Representation
        for tag in draw(st.lists(st.sampled_from(SEQUENCE_TAGS), max_size=2, unique=True)):
            items = draw(st.lists(data_set(implicit, little_endian, depth - 1, codec), max_size=2))
            for item in items:
                item.is_undefined_length_sequence_item = draw(st.booleans())
            sequence = DataElement(tag, "SQ", Sequence(items))
            sequence.is_undefined_length = draw(st.booleans())
            dataset[tag] = sequence
    for element in draw(st.lists(raw_element(codec, implicit, little_endian), max_size=10)):
        dataset[element.tag] = element
    # as if read in this encoding, so that pydicom writes the raw values as they are
    dataset.set_original_encoding(implicit, little_endian, dataset._character_set)
    return dataset


@st.composite
def instances(draw: st.DrawFn) -> bytes:
    syntax, implicit, little_endian = draw(st.sampled_from(SYNTAXES))
    charset, codec = draw(character_set())
    dataset = draw(data_set(implicit, little_endian, 2, codec))
    if charset is not None and 0x00080005 not in dataset:
        dataset[0x00080005] = RawDataElement(
            Tag(0x00080005), "CS", len(charset), charset, 0, implicit, little_endian
        )
        dataset.set_original_encoding(implicit, little_endian, dataset._character_set)
    dataset.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    dataset.SOPInstanceUID = "1.2.3.4.5"
    dataset.StudyInstanceUID = "1.2.3"
    dataset.SeriesInstanceUID = "1.2.3.4"
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = syntax
    return synthetic.p10(dataset)


@given(blob=instances())
@_SETTINGS
def test_generated_instances_come_out_as_pydicom_makes_them(blob: bytes) -> None:
    event(assert_same(blob)[0])
    tally = Tally()
    tally_of(blob, tally)
    if tally.files:  # how much of the instance the fast path took, by tenths
        event(f"fast path took {10 * (10 * tally.fast // max(tally.elements, 1))}% of elements")


def test_the_generator_writes_raw_values_as_they_are() -> None:
    """pydicom must write the generated bytes unchanged, or the test proves little."""
    value = b" 1.5\\abc\0"
    dataset = Dataset()
    dataset.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    dataset.SOPInstanceUID = "1.2.3.4.5"
    dataset[0x00181050] = RawDataElement(Tag(0x00181050), "DS", len(value), value, 0, True, True)
    dataset.set_original_encoding(True, True, dataset._character_set)
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    blob = synthetic.p10(dataset)
    assert value in blob
    assert pydicom.dcmread(pydicom.filebase.DicomBytesIO(blob)).get_item(0x00181050).value == value
