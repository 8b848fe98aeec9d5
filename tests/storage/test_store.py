"""The study store's ingest, reads, sealing and deletion."""

from __future__ import annotations

import gzip
import json
import zipfile
from pathlib import Path

import pydicom
import pytest

from pacsnode.storage.errors import InvalidDicom, InvalidUid, MissingUid, NotFound, StorageError
from pacsnode.storage.layout import staged_instance_path, study_zip_path
from pacsnode.storage.results import PutResult, PutStatus
from pacsnode.storage.store import StudyStore
from tests.storage.helpers import ct_bytes, ct_instance, to_bytes


def ids_of(result: PutResult) -> tuple[str, str, str]:
    instance = result.instance
    return instance.study_uid, instance.series_uid, instance.sop_uid


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


def test_put_stages_durably_and_reads_back(store: StudyStore) -> None:
    result = store.put_instance(ct_bytes(0))
    assert result.status is PutStatus.STORED
    study, series, sop = ids_of(result)
    assert staged_instance_path(store.root, study, sop).is_file()
    assert store.pending_studies() == [study]
    assert store.instance_metadata(study, series, sop)["00100020"]["Value"] == ["PAT00001"]
    frame = store.frame(study, series, sop, 1)
    assert frame.media_type == "application/octet-stream"
    assert frame.transfer_syntax == "1.2.840.10008.1.2.1"
    assert len(frame.payload) == 64 * 64 * 2
    assert frame.wrapped.startswith(f"--{frame.boundary}\r\n".encode())
    assert (
        pydicom.dcmread(
            pydicom.filebase.DicomBytesIO(store.instance_p10(study, series, sop))
        ).PatientID
        == "PAT00001"
    )


def test_metadata_and_frame_uris_follow_wado_rs(store: StudyStore) -> None:
    study, series, sop = ids_of(store.put_instance(ct_bytes(0)))
    metadata = store.instance_metadata(study, series, sop)
    assert metadata["7FE00010"] == {
        "vr": "OW",
        "BulkDataURI": f"series/{series}/instances/{sop}/frames",
    }
    assert metadata["00083002"]["Value"] == ["1.2.840.10008.1.2.1"]
    assert metadata["00280030"]["Value"] == [0.7, 0.7]  # DS as JSON numbers
    assert "00020010" not in metadata


def test_same_instance_twice_is_already_stored(store: StudyStore) -> None:
    data = ct_bytes(0)
    first = store.put_instance(data)
    before = snapshot(store.root)
    second = store.put_instance(data)
    assert second.status is PutStatus.ALREADY_STORED
    assert second.instance.digest == first.instance.digest
    assert snapshot(store.root) == before
    store.seal(first.instance.study_uid)
    assert store.put_instance(data).status is PutStatus.ALREADY_STORED


def test_different_content_same_uid_is_a_conflict(store: StudyStore) -> None:
    study, series, sop = ids_of(store.put_instance(ct_bytes(0)))
    store.seal(study)
    changed = ct_instance(0)
    changed.PatientName = "Other^Name"
    before = snapshot(store.root)
    result = store.put_instance(to_bytes(changed))
    assert result.status is PutStatus.CONFLICT
    assert result.existing_digest is not None
    assert snapshot(store.root) == before
    replaced = store.put_instance(to_bytes(changed), overwrite=True)
    assert replaced.status is PutStatus.STORED
    assert store.instance_metadata(study, series, sop)["00100010"]["Value"] == [
        {"Alphabetic": "Other^Name"}
    ]
    store.seal(study)
    assert len(store.instances(study)) == 1
    assert store.instance_metadata(study, series, sop)["00100010"]["Value"] == [
        {"Alphabetic": "Other^Name"}
    ]


def test_seal_builds_one_valid_zip_in_wado_layout(store: StudyStore) -> None:
    results = [store.put_instance(ct_bytes(i)) for i in range(3)]
    study = results[0].instance.study_uid
    assert store.seal(study)
    assert store.pending_studies() == []
    assert not staged_instance_path(store.root, study, results[0].instance.sop_uid).exists()
    with zipfile.ZipFile(study_zip_path(store.root, study)) as archive:
        assert archive.testzip() is None
        names = archive.namelist()
        assert names[0] == f"studies/{study}/metadata"
        assert archive.getinfo(names[0]).compress_type == zipfile.ZIP_STORED
        objects = json.loads(gzip.decompress(archive.read(names[0])))
        assert [o["00200013"]["Value"][0] for o in objects] == [1, 2, 3]
        for result in results:
            _, series, sop = ids_of(result)
            name = f"studies/{study}/series/{series}/instances/{sop}/frames/1"
            assert archive.getinfo(name).compress_type == zipfile.ZIP_DEFLATED
    assert store.study_metadata_gzip(study) == archive_metadata(store, study)
    assert not store.seal(study)


def archive_metadata(store: StudyStore, study: str) -> bytes:
    with zipfile.ZipFile(study_zip_path(store.root, study)) as archive:
        return archive.read(f"studies/{study}/metadata")


def test_append_to_sealed_study_copies_entries_without_recompressing(store: StudyStore) -> None:
    first = store.put_instance(ct_bytes(0))
    study, series, sop = ids_of(first)
    store.seal(study)
    name = f"studies/{study}/series/{series}/instances/{sop}/frames/1"
    before = raw_entry(study_zip_path(store.root, study), name)
    store.put_instance(ct_bytes(1))
    # reads see staged and sealed instances alike
    assert [i.sop_uid for i in store.instances(study)] == [
        sop,
        ids_of(store.put_instance(ct_bytes(1)))[2],
    ]
    assert len(store.study_metadata(study)) == 2
    assert len(json.loads(gzip.decompress(store.study_metadata_gzip(study)))) == 2
    store.seal(study)
    assert raw_entry(study_zip_path(store.root, study), name) == before
    assert len(store.study_metadata(study)) == 2


def raw_entry(path: Path, name: str) -> tuple[int, int, bytes]:
    from pacsnode.storage.zipwriter import iter_raw_bytes

    with zipfile.ZipFile(path) as archive, open(path, "rb") as handle:
        info = archive.getinfo(name)
        return info.CRC, info.compress_size, b"".join(iter_raw_bytes(handle, info))


def test_sizes_and_inventory(store: StudyStore) -> None:
    results = [store.put_instance(ct_bytes(i)) for i in range(2)]
    study = results[0].instance.study_uid
    staged_size = store.study_size(study)
    assert staged_size.instance_count == 2 and staged_size.staged_count == 2
    store.seal(study)
    size = store.study_size(study)
    assert size.staged_count == 0
    assert size.disk_bytes == study_zip_path(store.root, study).stat().st_size
    assert size.uncompressed_bytes > size.disk_bytes
    assert store.inventory(study) == {r.instance.sop_uid: r.instance.digest for r in results}


def test_iter_p10_streams_series(store: StudyStore) -> None:
    for series in (1, 2):
        for index in range(2):
            store.put_instance(ct_bytes(index, series=series))
    study = ct_instance(0).StudyInstanceUID
    series_uid = ct_instance(0, series=2).SeriesInstanceUID
    got = [
        (i.series_uid, pydicom.dcmread(pydicom.filebase.DicomBytesIO(data)).InstanceNumber)
        for i, data in store.iter_p10(study, series_uid)
    ]
    assert got == [(series_uid, 1), (series_uid, 2)]
    assert len(list(store.iter_p10(study))) == 4


def test_delete_instance_series_and_study(store: StudyStore) -> None:
    for series in (1, 2):
        for index in range(2):
            store.put_instance(ct_bytes(index, series=series))
    study = ct_instance(0).StudyInstanceUID
    store.seal(study)
    store.put_instance(ct_bytes(2, series=1))  # one staged beside the sealed ones
    first = ct_instance(0)
    assert store.delete_instance(study, first.SeriesInstanceUID, first.SOPInstanceUID)
    assert not store.delete_instance(study, first.SeriesInstanceUID, first.SOPInstanceUID)
    with pytest.raises(NotFound):
        store.instance_p10(study, first.SeriesInstanceUID, first.SOPInstanceUID)
    assert len(store.instances(study)) == 4
    deleted = store.delete_series(study, first.SeriesInstanceUID)
    assert len(deleted) == 2
    assert {i.series_uid for i in store.instances(study)} == {
        ct_instance(0, series=2).SeriesInstanceUID
    }
    with zipfile.ZipFile(study_zip_path(store.root, study)) as archive:
        assert archive.testzip() is None
    assert store.delete_study(study)
    assert not store.study_exists(study)
    assert store.pending_studies() == []
    with pytest.raises(NotFound):
        store.instances(study)


def test_deleting_last_instance_removes_study(store: StudyStore) -> None:
    study, series, sop = ids_of(store.put_instance(ct_bytes(0)))
    store.seal(study)
    store.delete_instance(study, series, sop)
    assert not store.study_exists(study)
    assert list(store.study_uids()) == []


def test_a_pending_marker_with_nothing_behind_it_is_no_study(tmp_path: Path) -> None:
    """A deletion cut by a crash after its marker and its last file leaves the marker
    alone; recovery keeps it for the node to reconcile, but nothing is stored there."""
    with StudyStore(tmp_path / "data") as store:
        study, *_ = ids_of(store.put_instance(ct_bytes(0)))
        store.seal(study)
        kept, *_ = ids_of(store.put_instance(ct_bytes(0, study=2)))
        store.delete_study(study)
        (store.root / "pending" / study).touch()  # the crash: the marker was not cleared
    with StudyStore(tmp_path / "data") as store:
        assert study in store.pending_studies()
        assert list(store.study_uids()) == [kept]
        assert not store.study_exists(study)


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        (b"not a dicom file at all" * 10, InvalidDicom, "not a DICOM file"),
        (b"", InvalidDicom, "not a DICOM file"),
    ],
)
def test_garbage_is_refused(store: StudyStore, data: bytes, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        store.put_instance(data)
    assert list(store.study_uids()) == []


def test_truncated_file_is_refused_and_nothing_changes(store: StudyStore) -> None:
    store.put_instance(ct_bytes(0))
    before = snapshot(store.root)
    whole = ct_bytes(1)
    for cut in (140, 400, len(whole) // 2, len(whole) - 3):
        with pytest.raises(InvalidDicom):
            store.put_instance(whole[:cut])
    assert snapshot(store.root) == before


@pytest.mark.parametrize(
    "keyword", ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID"]
)
def test_missing_uid_is_refused(store: StudyStore, keyword: str) -> None:
    dataset = ct_instance(0)
    delattr(dataset, keyword)
    if keyword == "SOPClassUID":
        dataset.file_meta.MediaStorageSOPClassUID = "1.2.3"
    with pytest.raises(MissingUid, match=keyword):
        store.put_instance(to_bytes_loose(dataset))


def to_bytes_loose(dataset: pydicom.Dataset) -> bytes:
    buffer = pydicom.filebase.DicomBytesIO()
    pydicom.dcmwrite(buffer, dataset, enforce_file_format=False)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "hostile",
    [
        "../../etc",
        "1.2.3/../../x",
        "1.2.03",
        "1..2",
        ".1.2",
        "1.2.",
        "1" * 65,
        "1.2.3\x00",
        "abc",
        "1.2.3 ",
        "\x001.2.3",
        " 1.2.3",
    ],
)
def test_hostile_uids_are_refused(store: StudyStore, hostile: str) -> None:
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        dataset = ct_instance(0)
        setattr(dataset, keyword, hostile)
        if hostile.strip("\0 ") == "1.2.3":
            continue  # trailing padding is part of the DICOM encoding, not of the UID
        with pytest.raises(InvalidUid):
            store.put_instance(to_bytes_loose(dataset))
    assert list(store.study_uids()) == []
    with pytest.raises(InvalidUid):
        store.delete_study(hostile)


def test_second_process_cannot_open_the_same_directory(store: StudyStore) -> None:
    other = StudyStore(store.root)
    with pytest.raises(StorageError, match="in use"):
        other.open()
