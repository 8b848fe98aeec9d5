"""P10 -> archive -> P10 over every file of pydicom's test corpus."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file, get_testdata_files
from pydicom.encaps import generate_frames
from pydicom.uid import UID

from pacsnode.storage.convert import read_p10, split_dataset, transfer_syntax_of
from pacsnode.storage.errors import InvalidDicom, MissingUid
from pacsnode.storage.layout import is_p10_layout_entry
from pacsnode.storage.results import PutStatus
from pacsnode.storage.store import StudyStore
from pacsnode.storage.zipwriter import ZipWriter
from tests.storage.dicom_compare import differences

CORPUS_ROOT = Path(pydicom.data.__file__).parent / "test_files"

# Files pydicom reads that the store refuses, and why.
LACKS_UIDS = {
    "JPEGLSNearLossless_08.dcm",
    "JPEGLSNearLossless_16.dcm",
    "SC_rgb_jls_lossy_line.dcm",
    "SC_rgb_jls_lossy_sample.dcm",
    "UN_sequence.dcm",
    "empty_charset_LEI.dcm",
    "meta_missing_tsyntax.dcm",
    "nested_priv_SQ.dcm",
    "no_meta_group_length.dcm",
    "priv_SQ.dcm",
    # DICOMDIRs are media directories, not instances: no Study/Series/SOP Instance UID
    "DICOMDIR",
    "DICOMDIR-bigEnd",
    "DICOMDIR-empty.dcm",
    "DICOMDIR-implicit",
    "DICOMDIR-nooffset",
    "DICOMDIR-nopatient",
    "DICOMDIR-reordered",
}
INVALID_VALUES = {
    "badVR.dcm": "an IS value '1A' is not a number",
    "MR_truncated.dcm": "truncated: Pixel Data is 62 bytes short of its declared length",
    "rtplan_truncated.dcm": "truncated: a sequence ends 265 bytes short of its declared length",
}
NOT_DICOM = {
    "README.txt",
    "README",
    "crayons.icc",
    "rtplan.dump",
    "rtstruct.dump",
    "test1.json",
    "test_PN.json",
    "zipMR.gz",
    # a fragment of one element, no preamble: pydicom only reads it when forced
    "no_meta.dcm",
}


def corpus_files() -> list[Path]:
    files = [Path(name) for name in get_testdata_files() if os.path.isfile(name)]
    return sorted(files)


def corpus_id(path: Path) -> str:
    return str(path.relative_to(CORPUS_ROOT)) if path.is_relative_to(CORPUS_ROOT) else path.name


def test_corpus_is_present() -> None:
    assert len(corpus_files()) > 100


# Files given back regenerated rather than as they came, and why (see storage/fidelity.py).
REGENERATED = {
    "ExplVR_BigEndNoMeta.dcm": "no Part 10 header: given back as a Part 10 file",
    "ExplVR_LitEndNoMeta.dcm": "no Part 10 header: given back as a Part 10 file",
    "rtstruct.dcm": "no Part 10 header: given back as a Part 10 file",
    "image_dfl.dcm": "a deflated transfer syntax is re-deflated",
}


@pytest.mark.parametrize("path", corpus_files(), ids=corpus_id)
def test_round_trip(path: Path, tmp_path: Path) -> None:
    """Each file back as ``/file`` gives it (its layout kept: the very bytes), and as a
    peer's copy without layouts regenerates it: the same elements, values and pixels."""
    with StudyStore(tmp_path / "data") as store:
        if path.name in LACKS_UIDS:
            with pytest.raises(MissingUid):
                store.put_instance(path)
            return
        if path.name in NOT_DICOM or path.name in INVALID_VALUES:
            with pytest.raises(InvalidDicom):
                store.put_instance(path)
            return
        result = store.put_instance(path)
        assert result.status is PutStatus.STORED
        instance = result.instance
        ids = (instance.study_uid, instance.series_uid, instance.sop_uid)
        staged_copy = store.instance_p10(*ids)
        assert store.seal(instance.study_uid)
        sealed_copy = store.instance_p10(*ids)
        assert staged_copy == sealed_copy
        if path.name not in REGENERATED:
            assert sealed_copy == path.read_bytes()
        assert_same_instance(path, sealed_copy)

        original = split_dataset(read_p10(path))
        original_frames = original.frames
        assert [part.payload for part in store.frames(*ids)] == original_frames
        assert split_dataset(read_p10(sealed_copy)).frames == original_frames

        # A peer's copy (or an older node's ZIP) without layouts: regenerated.
        bare = without_layouts(store.study_zip(instance.study_uid), tmp_path / "bare.zip")
    with StudyStore(tmp_path / "peer") as peer:
        assert [i.sop_uid for i in peer.merge_study_zip(bare).added] == [instance.sop_uid]
        regenerated = peer.instance_p10(*ids)
        assert_same_instance(path, regenerated)
        assert split_dataset(read_p10(regenerated)).frames == original_frames


def assert_same_instance(path: Path, copy_bytes: bytes) -> None:
    source = read_p10(path)
    copy = pydicom.dcmread(pydicom.filebase.DicomBytesIO(copy_bytes))
    assert differences(source, copy) == []
    assert str(copy.file_meta.TransferSyntaxUID) == transfer_syntax_of(source)
    assert pixel_bytes(source) == pixel_bytes(copy)


def pixel_bytes(dataset: pydicom.Dataset) -> list[bytes] | None:
    """Pixel Data as its bytes (padding included), or its frames when encapsulated (the
    offset table and fragment boundaries may differ, the frames may not)."""
    if "PixelData" not in dataset:
        return None
    value = dataset.PixelData
    if not value or not UID(transfer_syntax_of(dataset)).is_encapsulated:
        return [value]
    count = int(dataset.get("NumberOfFrames") or 1)
    return list(generate_frames(value, number_of_frames=count))


def without_layouts(study_zip: Path, target: Path) -> Path:
    """The study ZIP with every entry copied as it is, except the P10 layouts."""
    with zipfile.ZipFile(study_zip) as archive, open(study_zip, "rb") as raw:
        with open(target, "wb") as handle:
            writer = ZipWriter(handle)
            for info in archive.infolist():
                if not is_p10_layout_entry(info.filename):
                    writer.copy(raw, info)
            writer.close()
    return target


@pytest.mark.parametrize("frames", [1, 2])
def test_odd_big_endian_ow_frames_keep_every_pixel(frames: int, tmp_path: Path) -> None:
    """Big endian OW swaps each word's bytes, so an odd-length frame's last pixel lies past
    its end (pydicom's SC_rgb_small_odd_big_endian.dcm lost it): one frame is kept whole,
    several stay bulk data; either way the file regenerates with every pixel."""
    source = pydicom.dcmread(get_testdata_file("SC_rgb_small_odd_big_endian.dcm"))
    samples = bytes(range(1, 28)) * frames  # 3x3 RGB, the last sample not zero
    samples += b"\0" * (len(samples) % 2)
    source.NumberOfFrames = frames
    # As a big endian file holds OW: each word's two bytes swapped.
    source.PixelData = b"".join(samples[i : i + 2][::-1] for i in range(0, len(samples), 2))
    path = tmp_path / "odd.dcm"
    source.save_as(path, enforce_file_format=True)
    with StudyStore(tmp_path / "data") as store:
        instance = store.put_instance(path).instance
        ids = (instance.study_uid, instance.series_uid, instance.sop_uid)
        assert len(store.frames(*ids)) == (1 if frames == 1 else 0)
        bare = without_layouts(store.study_zip(instance.study_uid), tmp_path / "bare.zip")
    with StudyStore(tmp_path / "peer") as peer:
        peer.merge_study_zip(bare)
        assert_same_instance(path, peer.instance_p10(*ids))
