"""P10 -> archive -> P10 over every file of pydicom's test corpus."""

from __future__ import annotations

import os
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_files

from pacsnode.storage.convert import read_p10, split_dataset
from pacsnode.storage.errors import InvalidDicom, MissingUid
from pacsnode.storage.results import PutStatus
from pacsnode.storage.store import StudyStore
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


@pytest.mark.parametrize("path", corpus_files(), ids=corpus_id)
def test_round_trip(path: Path, tmp_path: Path) -> None:
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

        source = read_p10(path)
        copy = pydicom.dcmread(pydicom.filebase.DicomBytesIO(sealed_copy))
        assert differences(source, copy) == []
        original = split_dataset(read_p10(path))
        assert str(copy.file_meta.TransferSyntaxUID) == original.transfer_syntax

        original_frames = original.frames
        assert [part.payload for part in store.frames(*ids)] == original_frames
        assert split_dataset(read_p10(sealed_copy)).frames == original_frames
