"""A file comes back as it came: the P10 layout kept beside frames and bulk data."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGBaseline8Bit

from pacsnode.storage.errors import InvalidArchive, StorageError
from pacsnode.storage.fidelity import assemble, build_layout, decode_layout
from pacsnode.storage.layout import is_p10_layout_entry, study_zip_path
from pacsnode.storage.results import PutStatus
from pacsnode.storage.store import StudyStore
from tests.storage.odd_files import odd_file, to_bytes


def test_a_file_comes_back_byte_for_byte_staged_and_sealed(store: StudyStore) -> None:
    original = to_bytes(odd_file())
    put = store.put_instance(original)
    ids = (put.instance.study_uid, put.instance.series_uid, put.instance.sop_uid)
    assert store.instance_p10(*ids) == original
    assert put.instance.uncompressed_size == len(original)
    assert put.instance.pixel_data_offset == original.index(b"\xe0\x7f\x10\x00")
    assert store.seal(ids[0])
    assert store.instance_p10(*ids) == original
    [listed] = store.instances(ids[0])
    assert listed.uncompressed_size == len(original)
    assert listed.pixel_data_offset == put.instance.pixel_data_offset


def test_values_and_frames_stay_in_the_archive_not_in_the_layout(store: StudyStore) -> None:
    original = to_bytes(odd_file())
    put = store.put_instance(original)
    store.seal(put.instance.study_uid)
    with zipfile.ZipFile(study_zip_path(store.root, put.instance.study_uid)) as archive:
        [layout] = [i for i in archive.infolist() if is_p10_layout_entry(i.filename)]
        # the 16x16 frame and the 2 KiB bulk value are referenced, not copied
        assert layout.file_size < len(original) - 2048
        offset = put.instance.pixel_data_offset
        assert layout.comment == f"p10-size={len(original)} pixel-data-offset={offset}".encode()


def test_fragmented_frames_are_referenced_piece_by_piece(store: StudyStore) -> None:
    dataset = odd_file(syntax=JPEGBaseline8Bit)
    frame = bytes(range(200)) * 50
    # one frame in three fragments: pydicom joins them, the layout cuts them again
    dataset.PixelData = encapsulate([frame], fragments_per_frame=3, has_bot=False)
    dataset["PixelData"].VR = "OB"
    dataset["PixelData"].is_undefined_length = True
    original = to_bytes(dataset)
    put = store.put_instance(original)
    ids = (put.instance.study_uid, put.instance.series_uid, put.instance.sop_uid)
    assert [part.payload for part in store.frames(*ids)] == [frame]
    assert store.instance_p10(*ids) == original


def test_the_same_data_set_under_another_file_meta_is_already_stored(store: StudyStore) -> None:
    first = to_bytes(odd_file(implementation="1.2.3.4"))
    second = to_bytes(odd_file(implementation="1.2.3.4.5.6"))
    assert first != second
    put = store.put_instance(first)
    assert store.put_instance(second).status is PutStatus.ALREADY_STORED
    ids = (put.instance.study_uid, put.instance.series_uid, put.instance.sop_uid)
    assert store.instance_p10(*ids) == first  # the first copy is kept


def test_a_bare_data_set_comes_back_as_a_part_10_file(store: StudyStore) -> None:
    dataset = odd_file()
    put = store.put_instance(_without_meta(dataset))
    ids = (put.instance.study_uid, put.instance.series_uid, put.instance.sop_uid)
    copy = store.instance_p10(*ids)
    assert copy[128:132] == b"DICM"
    assert pydicom.dcmread(io.BytesIO(copy)).SOPInstanceUID == dataset.SOPInstanceUID
    assert put.instance.pixel_data_offset is None


def _without_meta(dataset: Dataset) -> bytes:
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, Dataset(dataset), implicit_vr=True, little_endian=True)
    return buffer.getvalue()


def test_a_layout_never_names_bytes_outside_its_payloads() -> None:
    original = b"\0" * 128 + b"DICM" + b"head" + b"F" * 300 + b"tail"
    layout = build_layout(original, [b"F" * 300], {}, None)
    assert layout is not None
    decoded = decode_layout(layout.encode())
    assert assemble(decoded, lambda: [b"F" * 300], lambda key: b"") == original
    with pytest.raises(StorageError):
        assemble(decoded, lambda: [b"F" * 10], lambda key: b"")
    with pytest.raises(StorageError):
        decode_layout(layout.encode()[:-1])  # the literals no longer add up


def test_a_peer_zip_with_a_broken_layout_is_refused(store: StudyStore, tmp_path: Path) -> None:
    put = store.put_instance(to_bytes(odd_file()))
    study = put.instance.study_uid
    good = store.study_zip(study)
    damaged = tmp_path / "damaged.zip"
    with zipfile.ZipFile(good) as source, zipfile.ZipFile(damaged, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            if is_p10_layout_entry(info.filename):
                data = data.replace(b"PNL1", b"XXXX")
            target.writestr(info.filename, data)
    other = StudyStore(tmp_path / "other")
    with other, pytest.raises(InvalidArchive, match="layout"):
        other.merge_study_zip(damaged)
