"""Instances stored as received and converted later (storage/received.py)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pydicom.data import get_charset_files, get_testdata_files
from pydicom.datadict import tag_for_keyword

from pacsnode.storage.errors import InvalidDicom, MissingUid, NotDicom, StorageError
from pacsnode.storage.layout import received_instance_path, staged_instance_path
from pacsnode.storage.limits import ArchiveLimits
from pacsnode.storage.received import (
    ReceivedInstance,
    is_received_digest,
    receive_instance,
)
from pacsnode.storage.results import PutStatus
from pacsnode.storage.store import StudyStore, prepare_instance
from tests.storage.helpers import ct_bytes, ct_instance, to_bytes

KEYWORDS = (
    "PatientID", "PatientName", "PatientBirthDate", "StudyDate", "StudyDescription",
    "Modality", "SeriesNumber", "InstanceNumber", "ImagePositionPatient", "SOPClassUID",
    "SOPInstanceUID", "NumberOfFrames", "OtherPatientIDs", "ReferringPhysicianName",
)  # fmt: skip
TAGS = frozenset(tag_for_keyword(k) or 0 for k in KEYWORDS)
LIMITS = ArchiveLimits()


def received(data: bytes) -> ReceivedInstance:
    return receive_instance(data, LIMITS, TAGS)


def corpus() -> list[Path]:
    files = {Path(path) for path in [*get_testdata_files(), *get_charset_files()]}
    return sorted(path for path in files if path.is_file() and path.suffix != ".txt")


def test_the_tags_asked_for_are_what_the_conversion_gives_on_pydicom_s_corpus() -> None:
    compared = 0
    for path in corpus():
        data = path.read_bytes()
        try:
            full = prepare_instance(data, LIMITS, 3).instance
        except StorageError:
            with pytest.raises(StorageError):  # refused the same, or at conversion
                receive_instance(data, LIMITS, TAGS)
                prepare_instance(data, LIMITS, 3)
            continue
        instance = received(data).instance
        assert (instance.study_uid, instance.series_uid, instance.sop_uid) == (
            full.study_uid,
            full.series_uid,
            full.sop_uid,
        )
        for key, entry in instance.metadata.items():
            if key == "7FE00010":  # only says Pixel Data is there
                assert key in full.metadata
                continue
            assert full.metadata[key] == entry, (path.name, key)
        asked = {f"{tag:08X}" for tag in TAGS}
        assert {k for k in full.metadata if k in asked} == {
            k for k in instance.metadata if k in asked
        }
        compared += 1
    assert compared >= 100


def test_received_instances_are_refused_as_the_conversion_refuses_them() -> None:
    with pytest.raises(NotDicom):
        received(b"not dicom at all" * 20)
    dataset = ct_instance(0)
    del dataset.SOPInstanceUID
    with pytest.raises(MissingUid):
        received(to_bytes(dataset))
    with pytest.raises(InvalidDicom):
        received(ct_bytes(0)[:-100])  # truncated


def test_a_received_instance_reads_as_a_converted_one(store: StudyStore) -> None:
    data = ct_bytes(0)
    put = store.put_received(received(data))
    assert put is not None and put.status is PutStatus.STORED
    instance = put.instance
    assert is_received_digest(instance.digest)
    study, series, sop = instance.study_uid, instance.series_uid, instance.sop_uid
    assert received_instance_path(store.root, study, sop).is_file()
    assert store.received_instances() == [(study, sop)]
    # any read converts it first
    expected = prepare_instance(data, LIMITS, store.level).instance
    assert store.instance_metadata(study, series, sop) == expected.metadata
    assert staged_instance_path(store.root, study, sop).is_file()
    # kept until the seal: the conversion is not fsynced
    assert received_instance_path(store.root, study, sop).read_bytes() == data
    assert store.inventory(study) == {sop: expected.digest}
    assert store.instance_p10(study, series, sop) == data
    assert store.received_instances() == []
    assert store.seal(study)
    assert list(store.root.rglob("*.dcm")) == []
    assert store.instance_p10(study, series, sop) == data


def test_a_second_copy_is_not_taken_as_received(store: StudyStore) -> None:
    first = received(ct_bytes(0))
    assert store.put_received(first) is not None
    assert store.put_received(first) is None  # received, not converted
    instance = first.instance
    store.convert_received(instance.study_uid, instance.series_uid, instance.sop_uid)
    assert store.put_received(first) is None  # staged
    store.seal(instance.study_uid)
    assert store.put_received(first) is None  # sealed
    # the converting way tells identical from different
    assert store.put_instance(ct_bytes(0)).status is PutStatus.ALREADY_STORED


def test_the_converter_answers_the_instance_as_stored(store: StudyStore) -> None:
    data = ct_bytes(3)
    instance = received(data).instance
    assert store.put_received(received(data)) is not None
    expected = prepare_instance(data, LIMITS, store.level).instance
    converted = store.convert_received(instance.study_uid, instance.series_uid, instance.sop_uid)
    assert converted == expected
    again = store.convert_received(instance.study_uid, instance.series_uid, instance.sop_uid)
    assert again == expected  # converted already: answered as stored
    assert store.convert_received(instance.study_uid, instance.series_uid, "1.2.3") is None


def test_conversion_in_another_process_is_passed_a_path(store: StudyStore) -> None:
    seen: list[object] = []

    def prepare(path: Path):  # type: ignore[no-untyped-def]
        seen.append(path)
        return prepare_instance(path, LIMITS, store.level)

    instance = received(ct_bytes(1)).instance
    store.put_received(received(ct_bytes(1)))
    store.convert_received(instance.study_uid, instance.series_uid, instance.sop_uid, prepare)
    assert seen == [received_instance_path(store.root, instance.study_uid, instance.sop_uid)]


def test_sealing_and_deleting_convert_received_instances_first(store: StudyStore) -> None:
    kept, doomed = received(ct_bytes(0)), received(ct_bytes(1))
    for one in (kept, doomed):
        store.put_received(one)
    study = kept.instance.study_uid
    deleted = store.delete_instances(study, {doomed.instance.sop_uid})
    assert deleted == [doomed.instance.sop_uid]
    assert store.seal(study)
    assert store.pending_studies() == []
    assert list(store.inventory(study)) == [kept.instance.sop_uid]


def test_a_received_file_that_cannot_be_converted_goes_to_quarantine(
    store: StudyStore, caplog: pytest.LogCaptureFixture
) -> None:
    # A value DICOM JSON cannot carry: parsed fine, refused only by the conversion.
    dataset = ct_instance(0)
    dataset.add_new(0x00189087, "FD", float("nan"))  # Diffusion b-value
    data = to_bytes(dataset)
    with pytest.raises(InvalidDicom):
        prepare_instance(data, LIMITS, 3)
    instance = received(data).instance
    store.put_received(received(data))
    with caplog.at_level(logging.ERROR):
        assert (
            store.convert_received(instance.study_uid, instance.series_uid, instance.sop_uid)
            is None
        )
    assert "cannot be converted" in caplog.text
    quarantined = list((store.root / "quarantine").iterdir())
    assert [p.read_bytes() for p in quarantined] == [data]
    assert store.received_instances() == []
    # a read of the study goes on without it
    store.put_received(received(ct_bytes(5)))
    assert store.inventory(instance.study_uid).keys() == {received(ct_bytes(5)).instance.sop_uid}


def test_recovery_converts_again_and_drops_what_a_seal_folded_in(tmp_path: Path) -> None:
    root = tmp_path / "data"
    with StudyStore(root) as store:
        waiting, converted, sealed = (received(ct_bytes(n)) for n in range(3))
        store.put_received(sealed)
        study = sealed.instance.study_uid
        assert store.seal(study)
        assert store.put_received(waiting) and store.put_received(converted)
        i = converted.instance
        store.convert_received(i.study_uid, i.series_uid, i.sop_uid)
    # what a crash leaves: a received file whose instance a seal had folded in (the seal
    # was cut off while removing its staging), one not converted, one converted (its ZIP
    # never fsynced, so it may hold anything after a crash)
    cut_seal = received_instance_path(root, study, sealed.instance.sop_uid)
    cut_seal.write_bytes(sealed.data)
    conversion = staged_instance_path(root, study, i.sop_uid)
    conversion.write_bytes(b"garbage the crash left")
    store = StudyStore(root)
    report = store.open()
    try:
        assert (report.received, report.removed_converted) == (2, 1)
        assert report.removed_sealed_staging == 1
        assert not cut_seal.exists() and not conversion.exists()
        assert sorted(store.received_instances()) == sorted(
            (study, one.instance.sop_uid) for one in (waiting, converted)
        )
        expected = {
            one.instance.sop_uid: prepare_instance(one.data, LIMITS, store.level).instance.digest
            for one in (waiting, converted, sealed)
        }
        assert store.inventory(study) == expected
        assert report.quarantined == []
    finally:
        store.close()
