"""Merging study ZIPs from another node, and refusing tampered ones whole."""

from __future__ import annotations

import gzip
import io
import json
import shutil
import zipfile
from pathlib import Path

import pytest

from pacsnode.storage.errors import InvalidArchive
from pacsnode.storage.layout import study_zip_path
from pacsnode.storage.store import StudyStore
from pacsnode.storage.zipwriter import ZipWriter
from tests.storage.helpers import ct_bytes, ct_instance, to_bytes
from tests.storage.test_store import snapshot

STUDY = ct_instance(0).StudyInstanceUID


@pytest.fixture
def other(tmp_path: Path):
    with StudyStore(tmp_path / "other") as other_store:
        yield other_store


def test_merge_into_empty_store_gives_identical_zip(store: StudyStore, other: StudyStore) -> None:
    for index in range(3):
        other.put_instance(ct_bytes(index))
    source_zip = other.study_zip(STUDY)
    result = store.merge_study_zip(source_zip)
    assert result.study_uid == STUDY
    assert len(result.added) == 3 and not result.conflicts and not result.already_stored
    assert result.added[0].metadata["00100020"]["Value"] == ["PAT00001"]
    assert study_zip_path(store.root, STUDY).read_bytes() == source_zip.read_bytes()
    assert store.inventory(STUDY) == other.inventory(STUDY)


def test_merge_is_a_union_and_idempotent(store: StudyStore, other: StudyStore) -> None:
    for index in (0, 1):
        store.put_instance(ct_bytes(index))
    for index in (1, 2, 3):
        other.put_instance(ct_bytes(index))
    result = store.merge_study_zip(other.study_zip(STUDY))
    assert len(result.added) == 2 and len(result.already_stored) == 1
    assert store.pending_studies() == []  # the local staged instances were sealed too
    assert len(store.instances(STUDY)) == 4
    again = store.merge_study_zip(other.study_zip(STUDY))
    assert not again.added and len(again.already_stored) == 3
    other.merge_study_zip(store.study_zip(STUDY))
    assert store.study_zip(STUDY).read_bytes() == other.study_zip(STUDY).read_bytes()


def test_conflicting_instance_is_reported_and_kept(store: StudyStore, other: StudyStore) -> None:
    store.put_instance(ct_bytes(0))
    changed = ct_instance(0)
    changed.PatientName = "Changed^Elsewhere"
    other.put_instance(to_bytes(changed))
    other.put_instance(ct_bytes(1))
    result = store.merge_study_zip(other.study_zip(STUDY))
    assert result.conflicts == [changed.SOPInstanceUID]
    assert len(result.added) == 1
    kept = store.instance_metadata(STUDY, changed.SeriesInstanceUID, changed.SOPInstanceUID)
    assert kept["00100010"]["Value"] == [{"Alphabetic": "Synthetic^Patient1"}]


def rebuild(source: Path, target: Path, edit) -> Path:
    """Copy a study ZIP entry by entry, letting ``edit(name, data)`` change or drop entries."""
    with zipfile.ZipFile(source) as archive, open(target, "wb") as handle:
        writer = ZipWriter(handle)
        for info in archive.infolist():
            for name, data in edit(info.filename, archive.read(info)):
                writer.add(name, data, 6)
        writer.close()
    return target


def metadata_objects(data: bytes) -> list[dict]:
    return json.loads(gzip.decompress(data))


def with_metadata(objects: list[dict]) -> bytes:
    return gzip.compress(json.dumps(objects).encode())


def tampered_variants(tmp_path: Path, good: Path) -> dict[str, Path]:
    def escape(name: str, data: bytes):
        yield name, data
        if name.endswith("/metadata"):
            yield f"studies/{STUDY}/../../../etc/passwd", b"x"

    def absolute(name: str, data: bytes):
        yield (f"/tmp/{name}" if "frames" in name else name), data

    def other_study(name: str, data: bytes):
        yield name.replace(STUDY, "1.2.3.4"), data

    def bad_json(name: str, data: bytes):
        yield name, (gzip.compress(b"[{not json") if name.endswith("/metadata") else data)

    def drop_frame(name: str, data: bytes):
        if "frames" not in name:
            yield name, data

    def foreign_uri(name: str, data: bytes):
        if name.endswith("/metadata"):
            objects = metadata_objects(data)
            objects[0]["7FE00010"]["BulkDataURI"] = "https://evil.example/x"
            data = with_metadata(objects)
        yield name, data

    def hostile_uid(name: str, data: bytes):
        if name.endswith("/metadata"):
            objects = metadata_objects(data)
            objects[0]["00080018"]["Value"] = ["../../x"]
            data = with_metadata(objects)
        yield name, data

    def broken_part(name: str, data: bytes):
        yield name, (data[10:] if "frames" in name else data)

    def edit_one(change, position: int = 0):
        def edit(name: str, data: bytes):
            if name.endswith("/metadata"):
                objects = metadata_objects(data)
                change(objects[position])
                data = with_metadata(objects)
            yield name, data

        return edit

    def edit_first(change):
        return edit_one(change, 0)

    def edit_last(change):
        # after elements shared with earlier instances have been judged once
        return edit_one(change, -1)

    def bogus_syntax(obj: dict) -> None:
        obj["00083002"]["Value"] = ["1.2.3"]

    def file_meta(obj: dict) -> None:
        obj["00020010"] = {"vr": "UI", "Value": ["1.2.840.10008.1.2.1"]}

    def bad_vr(obj: dict) -> None:
        obj["00100010"]["vr"] = "XX"

    def bad_value(obj: dict) -> None:
        obj["00280010"]["Value"] = ["abc"]

    def null_sequence(obj: dict) -> None:
        obj["00081140"] = {"vr": "SQ", "Value": None}

    def no_sop_class(obj: dict) -> None:
        del obj["00080016"]

    def unwritable_shared_value(obj: dict) -> None:
        obj["00280011"]["Value"] = [70000]  # Columns, the same in every instance

    edits = {
        "escape": escape,
        "absolute": absolute,
        "other_study": other_study,
        "bad_json": bad_json,
        "drop_frame": drop_frame,
        "foreign_uri": foreign_uri,
        "hostile_uid": hostile_uid,
        "broken_part": broken_part,
        "bogus_syntax": edit_first(bogus_syntax),
        "file_meta": edit_first(file_meta),
        "bad_vr": edit_first(bad_vr),
        "bad_value": edit_first(bad_value),
        "null_sequence": edit_first(null_sequence),
        "bad_value_later": edit_last(bad_value),
        "bad_vr_later": edit_last(bad_vr),
        "no_sop_class_later": edit_last(no_sop_class),
        "unwritable_later": edit_last(unwritable_shared_value),
    }
    return {key: rebuild(good, tmp_path / f"{key}.zip", edit) for key, edit in edits.items()}


def test_tampered_zips_are_refused_whole(
    store: StudyStore, other: StudyStore, tmp_path: Path
) -> None:
    store.put_instance(ct_bytes(5))
    for index in range(2):
        other.put_instance(ct_bytes(index))
    good = other.study_zip(STUDY)
    before = snapshot(store.root)
    for name, path in tampered_variants(tmp_path, good).items():
        with pytest.raises(InvalidArchive):
            store.merge_study_zip(path)
        assert snapshot(store.root) == before, name


def test_corrupted_byte_fails_crc(store: StudyStore, other: StudyStore, tmp_path: Path) -> None:
    for index in range(2):
        other.put_instance(ct_bytes(index))
    damaged = tmp_path / "damaged.zip"
    shutil.copy(other.study_zip(STUDY), damaged)
    data = bytearray(damaged.read_bytes())
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        info = [i for i in archive.infolist() if "frames" in i.filename][-1]
    data[info.header_offset + 100] ^= 0xFF  # inside the compressed frame
    damaged.write_bytes(bytes(data))
    with pytest.raises(InvalidArchive, match="damaged"):
        store.merge_study_zip(damaged)
    assert list(store.study_uids()) == []


def test_corrupted_metadata_byte_fails_crc(
    store: StudyStore, other: StudyStore, tmp_path: Path
) -> None:
    other.put_instance(ct_bytes(0))
    damaged = tmp_path / "damaged.zip"
    shutil.copy(other.study_zip(STUDY), damaged)
    data = bytearray(damaged.read_bytes())
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        info = archive.getinfo(f"studies/{STUDY}/metadata")
    # The last byte of the gzip member (its length field), so only zipfile's CRC can tell.
    data[info.header_offset + 30 + len(info.filename) + info.compress_size - 1] ^= 0x01
    damaged.write_bytes(bytes(data))
    with pytest.raises(InvalidArchive, match=r"metadata entry is damaged.*CRC"):
        store.merge_study_zip(damaged)
    assert list(store.study_uids()) == []


def test_not_a_zip_is_refused(store: StudyStore, tmp_path: Path) -> None:
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"PK\x03\x04 this is not really a zip")
    with pytest.raises(InvalidArchive):
        store.merge_study_zip(junk)


def test_open_study_zip_sends_the_sealed_zip_or_a_subset(
    store: StudyStore, other: StudyStore, tmp_path: Path
) -> None:
    for index in range(3):
        store.put_instance(ct_bytes(index))
    with store.open_study_zip(STUDY, None) as staged:  # staged: a subset written out
        staged_bytes = staged.read()
    sealed_path = store.study_zip(STUDY)  # seals
    with store.open_study_zip(STUDY, None) as whole:
        store.put_instance(ct_bytes(3))
        store.seal(STUDY)  # the study ZIP is replaced while the handle is open
        whole_bytes = whole.read()
    assert staged_bytes == whole_bytes != sealed_path.read_bytes()
    copy = tmp_path / "whole.zip"
    copy.write_bytes(whole_bytes)
    assert len(other.merge_study_zip(copy).added) == 3
    with store.open_study_zip(STUDY, {ct_instance(3).SOPInstanceUID}) as subset:
        copy.write_bytes(subset.read())
    assert [i.sop_uid for i in other.merge_study_zip(copy).added] == [ct_instance(3).SOPInstanceUID]
    assert other.inventory(STUDY) == store.inventory(STUDY)
