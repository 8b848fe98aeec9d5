"""The P10 check of received metadata refuses exactly what a whole trial P10 refuses.

The check tries each element once per transfer syntax and character set; these
tests hold it to the plain rule it replaces (build and write every instance in
full, payloads stubbed), with the damage placed in a later instance, after the
elements it shares with earlier ones have passed.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Callable
from typing import Any

import pytest

from pacsnode.storage.archive import InstanceSource
from pacsnode.storage.convert import build_dataset, read_p10, split_dataset, write_p10
from pacsnode.storage.errors import InvalidArchive
from pacsnode.storage.p10_check import P10Check
from tests.storage.helpers import ct_instance, to_bytes

Metadata = dict[str, Any]


def series_metadata(count: int = 4, edit: Callable[[Any], None] | None = None) -> list[Metadata]:
    objects = []
    for index in range(count):
        dataset = ct_instance(index)
        if edit is not None:
            edit(dataset)
        objects.append(split_dataset(read_p10(to_bytes(dataset))).metadata)
    return objects


def source_of(metadata: Metadata) -> InstanceSource:
    sop_uid = metadata["00080018"]["Value"][0]
    series_uid = metadata["0020000E"]["Value"][0]
    study_uid = metadata["0020000D"]["Value"][0]
    return InstanceSource(study_uid, series_uid, sop_uid, metadata, None)  # type: ignore[arg-type]


def whole_trial_refuses(metadata: Metadata) -> bool:
    """The rule the check must keep: the whole instance, built and written as P10."""
    try:
        write_p10(build_dataset(metadata, lambda: [b"\0\0"], lambda key: b""), io.BytesIO())
    except Exception:
        return True
    return False


def first_refused(objects: list[Metadata]) -> int | None:
    check = P10Check()
    for index, metadata in enumerate(objects):
        try:
            check.check(source_of(metadata))
        except InvalidArchive:
            return index
    return None


def set_value(key: str, element: dict[str, Any]) -> Callable[[Metadata], None]:
    def change(metadata: Metadata) -> None:
        metadata[key] = copy.deepcopy(element)

    return change


def drop(key: str) -> Callable[[Metadata], None]:
    def change(metadata: Metadata) -> None:
        metadata.pop(key, None)

    return change


def set_syntax(uid: str) -> Callable[[Metadata], None]:
    return set_value("00083002", {"vr": "UI", "Value": [uid]})


NO_PIXEL_REPRESENTATION = drop("00280103")

CHANGES: dict[str, Callable[[Metadata], None]] = {
    "unchanged": lambda metadata: None,
    "number as text": set_value("00280010", {"vr": "US", "Value": ["abc"]}),
    "number too large": set_value("00280010", {"vr": "US", "Value": [70000]}),
    "unknown VR": set_value("00100010", {"vr": "XX", "Value": ["x"]}),
    "null sequence": set_value("00081140", {"vr": "SQ", "Value": None}),
    "bad item in sequence": set_value(
        "00081140", {"vr": "SQ", "Value": [{"00081150": {"vr": "US", "Value": ["x"]}}]}
    ),
    "two value keys": set_value("00081030", {"vr": "LO", "Value": ["a"], "InlineBinary": "AAAA"}),
    "inline binary not text": set_value("00091010", {"vr": "OB", "InlineBinary": 5}),
    "no SOP Class UID": drop("00080016"),
    "empty SOP Class UID": set_value("00080016", {"vr": "UI"}),
    "SOP Class UID not a UID": set_value("00080016", {"vr": "UI", "Value": ["not-a-uid"]}),
    "SOP Instance UID as LO": lambda metadata: metadata["00080018"].update(vr="LO"),
    "SOP Instance UID twice": lambda metadata: metadata["00080018"]["Value"].append("1.2.3"),
    "command element": set_value("00000000", {"vr": "UL", "Value": [4]}),
    "group length": set_value("00080000", {"vr": "UL", "Value": ["x"]}),
    "lower-case duplicate": set_value("0008103e", {"vr": "US", "Value": ["abc"]}),
    "lower-case good": set_value("0008103e", {"vr": "LO", "Value": ["fine"]}),
    "lower-case good over a bad one": lambda metadata: metadata.update(
        {"0008103E": {"vr": "US", "Value": [70000]}, "0008103e": {"vr": "LO", "Value": ["ok"]}}
    ),
    "ambiguous VR resolved": set_value("00280106", {"vr": "US or SS", "Value": [0]}),
    "ambiguous VR unresolved": set_value("00283006", {"vr": "US or OW", "Value": [1, 2]}),
    "ambiguous VR resolved by another element": lambda metadata: metadata.update(
        {
            "00283002": {"vr": "US", "Value": [1, 0, 16]},
            "00283006": {"vr": "US or OW", "Value": [5]},
        }
    ),
    "ambiguous VR in a sequence": set_value(
        "00081140", {"vr": "SQ", "Value": [{"00283006": {"vr": "US or OW", "Value": [1]}}]}
    ),
    "implicit VR syntax": set_syntax("1.2.840.10008.1.2"),
    "big endian syntax": set_syntax("1.2.840.10008.1.2.2"),
    "deflated syntax": set_syntax("1.2.840.10008.1.2.1.99"),
    "JPEG syntax": set_syntax("1.2.840.10008.1.2.4.50"),
    "long value under explicit VR": set_value(
        "00091010", {"vr": "OB", "InlineBinary": "A" * 90000}
    ),
    "pixel data as bulk data": lambda metadata: metadata["7FE00010"].update(
        BulkDataURI=metadata["7FE00010"]["BulkDataURI"].replace("/frames", "/bulkdata/7FE00010")
    ),
    "pixel data inline": set_value("7FE00010", {"vr": "OW", "InlineBinary": "AAAA"}),
    "pixel data without value": set_value("7FE00010", {"vr": "OW"}),
    "character set unknown": set_value("00080005", {"vr": "CS", "Value": ["NOT A CHARSET"]}),
    "unencodable name": set_value("00100010", {"vr": "PN", "Value": [{"Alphabetic": "山田^太郎"}]}),
    "name not a mapping": set_value("00100010", {"vr": "PN", "Value": ["plain"]}),
}


@pytest.mark.parametrize("name", sorted(CHANGES))
@pytest.mark.parametrize("position", [0, 2])
def test_refuses_what_a_whole_trial_refuses(name: str, position: int) -> None:
    objects = series_metadata()
    CHANGES[name](objects[position])
    expected = next((i for i, obj in enumerate(objects) if whole_trial_refuses(obj)), None)
    assert first_refused(objects) == expected


@pytest.mark.parametrize("name", sorted(CHANGES))
def test_a_change_everywhere_but_one_instance(name: str) -> None:
    # The changed form passes (or not) first; the unchanged one must still be judged.
    objects = series_metadata()
    for metadata in objects[:3]:
        CHANGES[name](metadata)
    expected = next((i for i, obj in enumerate(objects) if whole_trial_refuses(obj)), None)
    assert first_refused(objects) == expected


def test_elements_passed_under_one_character_set_are_tried_under_another() -> None:
    def japanese(dataset: Any) -> None:
        dataset.SpecificCharacterSet = "ISO_IR 192"
        dataset.PatientName = "山田^太郎"

    objects = series_metadata(edit=japanese)
    objects[2]["00080005"] = {"vr": "CS", "Value": ["ISO_IR 100"]}
    expected = next((i for i, obj in enumerate(objects) if whole_trial_refuses(obj)), None)
    assert first_refused(objects) == expected


def good_description() -> dict[str, Any]:
    return {"vr": "LO", "Value": ["ok"]}


def test_a_key_overriding_another_is_judged_with_it() -> None:
    # Two keys for one tag: the later one wins, so the earlier, unwritable one
    # must not be tried alone, although the later one passed before.
    objects = series_metadata()
    for metadata in objects:
        metadata["0008103e"] = good_description()
    later = objects[2]
    del later["0008103E"], later["0008103e"]
    objects[2] = {
        "0008103E": {"vr": "US", "Value": [70000]},
        **later,
        "0008103e": good_description(),
    }
    assert not whole_trial_refuses(objects[2])
    assert first_refused(objects) is None


def test_an_ambiguous_vr_is_judged_with_what_resolves_it() -> None:
    objects = series_metadata()
    for metadata in objects:
        metadata["00283002"] = {"vr": "US", "Value": [1, 0, 16]}  # LUT Descriptor
    objects[2]["00283006"] = {"vr": "US or OW", "Value": [5]}  # LUT Data: US, from the above
    assert not whole_trial_refuses(objects[2])
    assert first_refused(objects) is None
    del objects[2]["00283002"]
    assert whole_trial_refuses(objects[2])
    assert first_refused(objects) == 2


def test_a_later_instance_without_sop_class_is_refused() -> None:
    objects = series_metadata()
    del objects[3]["00080016"]
    assert whole_trial_refuses(objects[3])
    assert first_refused(objects) == 3


def test_a_later_instance_with_a_bad_shared_value_is_refused() -> None:
    objects = series_metadata()
    objects[2]["00280011"] = {"vr": "US", "Value": ["wide"]}  # Columns, the same in all
    assert first_refused(objects) == 2


def test_a_clean_series_passes() -> None:
    assert first_refused(series_metadata(8)) is None
