"""The fast DICOM JSON path (storage/dicom_json.py) gives pydicom's output, byte for byte.

The metadata feeds the content digest that other nodes compute with pydicom, so every
file must come out exactly as ``Dataset.to_json_dict`` makes it, and a file pydicom's
conversion refuses must still be refused, at the same step, with the same error. The
reference is the path as it was before the fast path: every element converted by pydicom
when the file is read, then ``to_json_dict`` with bulk keys assigned by walking the
dataset. Here on every file of pydicom's test corpus and its character set files, and on
synthetic instances; ``test_dicom_json_hypothesis.py`` on generated values.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import pydicom
import pytest
from pydicom.data import get_charset_files, get_testdata_files
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.filewriter import correct_ambiguous_vr

from benchmarks import synthetic
from pacsnode.storage import convert, dicom_json
from pacsnode.storage.convert import read_p10_located, split_dataset
from pacsnode.storage.errors import StorageError
from pacsnode.storage.layout import check_uid

THRESHOLD = convert.BULK_THRESHOLD_BASE64

# --- the path before the fast path ----------------------------------------------------


def _touch_all(dataset: Dataset, bulk_data_threshold: int) -> None:
    for element in dataset:
        if element.VR == "SQ":
            for item in element.value:
                _touch_all(item, bulk_data_threshold)


def _bulk_keys(dataset: Dataset, prefix: str = "") -> dict[int, str]:
    keys: dict[int, str] = {}
    for element in dataset:
        key = f"{prefix}{element.tag:08X}"
        if element.VR == "SQ":
            for index, item in enumerate(element.value):
                keys.update(_bulk_keys(item, f"{key}.{index}."))
        else:
            keys[id(element)] = key
    return keys


def _pydicom_json(
    dataset: Dataset, threshold: int, bulk_uri: Callable[[DataElement, str], str]
) -> dict[str, Any]:
    keys = _bulk_keys(dataset)
    return dataset.to_json_dict(threshold, lambda element: bulk_uri(element, keys[id(element)]))


def _required_uid(dataset: Dataset, keyword: str) -> str:
    value = dataset.get(keyword)
    if value is None or str(value).strip("\0 ") == "":
        raise convert.MissingUid(f"the instance has no {keyword}")
    uid = check_uid(str(value).rstrip("\0 "), keyword)
    setattr(dataset, keyword, uid)
    return uid


@contextmanager
def pydicom_only() -> Iterator[None]:
    """convert.py as it was: pydicom converts every element, then makes the JSON."""
    with (
        mock.patch.object(dicom_json, "decode_all", _touch_all),
        mock.patch.object(dicom_json, "to_json_dict", _pydicom_json),
        mock.patch.object(convert, "_required_uid", _required_uid),
    ):
        yield


# --- comparing --------------------------------------------------------------------------


def outcome(blob: bytes) -> tuple[Any, ...]:
    """What ingest makes of a file: where and why it is refused, or all it stores."""
    try:
        dataset, offset = read_p10_located(blob)
    except StorageError as exc:
        return ("refused when read", type(exc).__name__, str(exc))
    try:
        split = split_dataset(dataset)
    except StorageError as exc:
        return ("refused when split", type(exc).__name__, str(exc))
    # json.dumps keeps key order and tells 1 from 1.0 and "1": what the digest sees
    metadata = json.dumps(split.metadata, allow_nan=True)
    return ("split", offset, split.ids, split.transfer_syntax, metadata, split.frames, split.bulk)


def whole_json(blob: bytes) -> tuple[Any, ...]:
    """The JSON of the whole data set, Pixel Data and UIDs as they are, as split makes it
    (ambiguous VRs corrected): for the files split refuses before making any JSON."""
    try:
        dataset, _ = read_p10_located(blob)
        correct_ambiguous_vr(dataset, dataset.original_encoding[1] is not False)
        bulk: dict[str, bytes] = {}

        def bulk_uri(element: DataElement, key: str) -> str:
            bulk[key] = bytes(element.value)
            return f"bulkdata/{key}"

        metadata = dicom_json.to_json_dict(dataset, THRESHOLD, bulk_uri)
    except Exception as exc:
        return ("refused", type(exc).__name__, str(exc))
    return ("json", json.dumps(metadata, allow_nan=True), bulk)


@dataclass
class Tally:
    files: int = 0
    elements: int = 0
    fast: int = 0


def tally_of(blob: bytes, tally: Tally) -> None:
    """Count the elements of a file and how many the fast path converted when read."""
    try:
        dataset, _ = read_p10_located(blob)
    except StorageError:
        return
    tally.files += 1
    _count(dataset, tally)


def _count(dataset: Dataset, tally: Tally) -> None:
    kept = dataset.__dict__.get("_pacsnode_json")
    fast = kept.by_tag if kept is not None else {}
    for tag, element in dataset.items():
        tally.elements += 1
        if tag in fast:
            tally.fast += 1
        elif element.VR == "SQ":
            for item in element.value:
                _count(item, tally)


def assert_same(blob: bytes) -> tuple[Any, ...]:
    """Both paths make the same of ``blob``; what they made."""
    with pydicom_only():
        expected = outcome(blob)
        expected_json = whole_json(blob)
    assert outcome(blob) == expected
    assert whole_json(blob) == expected_json
    return expected


# --- the corpus ---------------------------------------------------------------------------


def _corpus() -> list[Path]:
    files = {Path(path) for path in [*get_testdata_files(), *get_charset_files()]}
    return sorted(path for path in files if path.is_file() and path.suffix not in {".txt"})


CORPUS = _corpus()


@pytest.mark.parametrize("path", CORPUS, ids=[path.name for path in CORPUS])
def test_every_corpus_file_comes_out_as_pydicom_makes_it(path: Path) -> None:
    assert_same(path.read_bytes())


def test_the_corpus_is_the_whole_corpus() -> None:
    """The comparison covers pydicom's files in number, and the fast path did the work."""
    tally = Tally()
    for path in CORPUS:
        tally_of(path.read_bytes(), tally)
    assert len(CORPUS) >= 150
    assert tally.files >= 120
    assert tally.fast > 0.8 * tally.elements, tally


def test_synthetic_instances_come_out_as_pydicom_makes_them() -> None:
    blobs = [*synthetic.small_instances(1, per_series=3), *synthetic.ct_study(3, size=64)]
    tally = Tally()
    for blob in blobs:
        assert_same(blob)
        tally_of(blob, tally)
    # all but Pixel Data, which is bulk data and taken out as frames
    assert tally.fast == tally.elements - len(blobs), tally


# --- values chosen by hand ---------------------------------------------------------------------


def _raw(tag: int, vr: str | None, value: bytes, *, implicit: bool = False) -> RawDataElement:
    return RawDataElement(pydicom.tag.Tag(tag), vr, len(value), value, 0, implicit, True)


def _instance(*elements: RawDataElement | DataElement, implicit: bool = False) -> bytes:
    dataset = Dataset()
    dataset.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    dataset.SOPInstanceUID = "1.2.3.4.5"
    dataset.StudyInstanceUID = "1.2.3"
    dataset.SeriesInstanceUID = "1.2.3.4"
    for element in elements:
        dataset[element.tag] = element
    dataset.file_meta = pydicom.dataset.FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = (
        pydicom.uid.ImplicitVRLittleEndian if implicit else pydicom.uid.ExplicitVRLittleEndian
    )
    # as if read in this encoding, so that pydicom writes the raw values as they are
    dataset.set_original_encoding(implicit, True, dataset._character_set)
    return synthetic.p10(dataset)


EDGE_VALUES: list[tuple[str, int, str, bytes]] = [
    ("DS blank", 0x00181050, "DS", b"  "),
    ("DS blank part", 0x00280030, "DS", b"1\\ "),
    ("DS not a number", 0x00181050, "DS", b"abc"),
    ("DS NaN", 0x00181050, "DS", b"nan "),
    ("DS underscore", 0x00181050, "DS", b"1_0"),
    ("DS padded with NUL", 0x00181050, "DS", b"1.5\0"),
    ("DS NUL inside", 0x00181050, "DS", b"\x001.5"),
    ("IS float", 0x00200013, "IS", b"1.5 "),
    ("IS float integer", 0x00200013, "IS", b"2.0 "),
    ("IS huge", 0x00200013, "IS", b"123456789012345678901234"),
    ("IS infinity", 0x00200013, "IS", b"1e999"),
    ("IS tab", 0x00200013, "IS", b"\t"),
    ("IS leading space", 0x00200013, "IS", b" 42"),
    ("US odd length", 0x00280010, "US", b"\x01\x00\x02"),
    ("US several", 0x00280010, "US", b"\x01\x00\x02\x00"),
    ("AT single", 0x00209165, "AT", b"\x10\x00\x10\x00"),
    ("AT six bytes", 0x00209165, "AT", b"\x10\x00\x10\x00\x20\x00"),
    ("AT two", 0x00209165, "AT", b"\x10\x00\x10\x00\x20\x00\x0d\x00"),
    ("PN empty among several", 0x00100010, "PN", b"DOE^JOHN\\"),
    ("PN groups", 0x00100010, "PN", b"A^B==C=D"),
    ("PN only separators", 0x00100010, "PN", b"=="),
    ("PN escape", 0x00100010, "PN", b"\x1b$B"),
    ("LO Latin-1 byte", 0x00081030, "LO", b"caf\xe9 \\ x\0"),
    ("SH backslash only", 0x00200010, "SH", b"\\"),
    ("UT backslash kept", 0x00204000, "LT", b"a\\b  \0"),
    ("UI padded", 0x00081150, "UI", b" 1.2.3\0"),
    ("UI several", 0x00081150, "UI", b"1.2\\ 3.4 \\"),
    ("AE spaces", 0x00080054, "AE", b" AE1 \\ AE2\0"),
    ("CS inner spaces", 0x00080008, "CS", b"ORIGINAL \\ PRIMARY \\"),
    ("UR trailing whitespace", 0x00081190, "UR", b"http://x/a\\b \t"),
    ("OB inline", 0x00091010, "OB", bytes(range(256)) * 4),
    ("OB just past inline", 0x00091010, "OB", bytes(1027)),
    ("LUT descriptor", 0x00281101, "SS", b"\x00\x80\x00\x00\x10\x00"),
    ("UN known tag", 0x00100020, "UN", b"ID42"),
    ("unknown VR", 0x00100020, "XX", b"ID42"),
]


@pytest.mark.parametrize(
    ("tag", "vr", "value"),
    [case[1:] for case in EDGE_VALUES],
    ids=[case[0] for case in EDGE_VALUES],
)
@pytest.mark.parametrize("implicit", [False, True], ids=["explicit", "implicit"])
def test_odd_values_come_out_as_pydicom_makes_them(
    tag: int, vr: str, value: bytes, implicit: bool
) -> None:
    if implicit and vr in {"UN", "XX"}:
        pytest.skip("implicit VR has no VR to be wrong")
    assert_same(_instance(_raw(tag, vr, value, implicit=implicit), implicit=implicit))


@pytest.mark.parametrize(
    ("charset", "text"),
    [
        (b"ISO_IR 100", b"M\xfcller^J\xfcrgen"),
        (b"ISO_IR 192", "Müller^Jürgen=山田^太郎".encode()),
        (b"ISO_IR 192", b"M\xfcller"),  # not UTF-8: pydicom replaces, the fast path steps back
        (b"ISO_IR 144", b"\xbb\xee\xdace\xd2\xd5"),  # Cyrillic: pydicom's own decoding
        (b"ISO 2022 IR 6\\ISO 2022 IR 87", b"Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B"),
        (b"", b"caf\xe9"),
    ],
)
def test_character_sets_come_out_as_pydicom_makes_them(charset: bytes, text: bytes) -> None:
    elements = [
        _raw(0x00080005, "CS", charset),
        _raw(0x00100010, "PN", text),
        _raw(0x00081030, "LO", text),
        _raw(0x00324000, "LT", text),
    ]
    assert_same(_instance(*elements))


def test_a_damaged_value_is_still_refused_when_read() -> None:
    blob = _instance(_raw(0x00200013, "IS", b"1e999"))  # int(float("inf")): OverflowError
    with pydicom_only():
        assert outcome(blob)[0] == "refused when read"
    assert outcome(blob)[0] == "refused when read"


def test_the_fast_path_steps_aside_when_pydicom_is_configured_otherwise() -> None:
    blob = _instance(_raw(0x00181050, "DS", b"1.50"))
    with mock.patch.object(pydicom.config, "datetime_conversion", True):
        dataset, _ = read_p10_located(blob)
        assert dataset.__dict__["_pacsnode_json"].by_tag == {}
        assert isinstance(dataset.get_item(0x00181050), DataElement)


@pytest.mark.skipif(not os.environ.get("PACSNODE_SHOW_TALLY"), reason="by hand")
def test_show_the_tally() -> None:
    tally = Tally()
    for path in CORPUS:
        tally_of(path.read_bytes(), tally)
    print(tally)
