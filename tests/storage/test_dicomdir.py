"""The DICOMDIR of a file-set: read back by pydicom's FileSet, checked by dicom3tools."""

from __future__ import annotations

import subprocess
import warnings
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.fileset import FileSet
from pydicom.uid import BasicTextSRStorage, generate_uid

from pacsnode.storage.dicomdir import DicomDir, leaf_record_type, read_header
from tests.storage.helpers import ct_instance, to_bytes


def _write_file_set(root: Path, files: list[bytes], extended: bool = False) -> Path:
    """The files as IMAGES/IMn beside their DICOMDIR, as a media ZIP unpacks."""
    directory = DicomDir(extended=extended)
    (root / "IMAGES").mkdir(parents=True)
    for number, data in enumerate(files):
        (root / "IMAGES" / f"IM{number}").write_bytes(data)
        directory.add(("IMAGES", f"IM{number}"), read_header(data))
    (root / "DICOMDIR").write_bytes(directory.encode())
    return root / "DICOMDIR"


def _sr_document(text_charset: str, name: str) -> Dataset:
    """A Basic Text SR in its own character set (a non-image leaf record)."""
    sr = ct_instance(0, patient=3)
    del sr.PixelData
    sr.SOPClassUID = BasicTextSRStorage
    sr.SOPInstanceUID = generate_uid()
    sr.SeriesInstanceUID = generate_uid()
    sr.Modality = "SR"
    sr.SpecificCharacterSet = text_charset
    sr.PatientName = name
    sr.CompletionFlag, sr.VerificationFlag = "COMPLETE", "UNVERIFIED"
    sr.ContentDate, sr.ContentTime = "20260101", "101010"
    concept = Dataset()
    concept.CodeValue, concept.CodingSchemeDesignator, concept.CodeMeaning = "1", "99X", "Report"
    sr.ConceptNameCodeSequence = [concept]
    sr.ContentSequence = [Dataset()]  # the report's content: not the directory's business
    return sr


def _mixed_files() -> list[bytes]:
    latin1 = ct_instance(0, patient=2)
    latin1.SpecificCharacterSet = "ISO_IR 100"
    latin1.PatientName = "Müller^Jürgen"
    return [
        to_bytes(ct_instance(0)),
        to_bytes(ct_instance(1)),
        to_bytes(ct_instance(0, study=2)),
        to_bytes(latin1),
        to_bytes(_sr_document("ISO_IR 101", "Łukasz^Żółw")),
    ]


def _load(path: Path) -> FileSet:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a broken offset or a missing file warns
        return FileSet(path)


def test_every_file_is_found_under_its_patient_study_and_series(tmp_path: Path) -> None:
    path = _write_file_set(tmp_path, _mixed_files())
    file_set = _load(path)
    found = sorted(Path(i.path).relative_to(tmp_path).as_posix() for i in file_set)
    assert found == [f"IMAGES/IM{n}" for n in range(5)]  # FileID is pydicom's own naming
    assert sorted(file_set.find_values("PatientID")) == ["PAT00001", "PAT00002", "PAT00003"]
    first = file_set.find(PatientID="PAT00001")
    assert len(first) == 3 and len({i.StudyInstanceUID for i in first}) == 2
    sr = file_set.find(PatientID="PAT00003")[0]
    assert sr.node.record_type == "SR DOCUMENT" and "ContentSequence" not in sr.node._record
    ct = file_set.find(PatientID="PAT00001")[0]
    assert ct.node.record_type == "IMAGE"
    assert ct.ReferencedTransferSyntaxUIDInFile == ct.load().file_meta.TransferSyntaxUID


def test_text_beyond_ascii_is_all_utf8(tmp_path: Path) -> None:
    path = _write_file_set(tmp_path, _mixed_files())
    file_set = _load(path)
    names = {str(n) for n in file_set.find_values("PatientName")}
    assert names == {"Synthetic^Patient1", "Müller^Jürgen", "Łukasz^Żółw"}
    top = read_header(path.read_bytes())
    assert top.SpecificCharacterSet == "ISO_IR 192"
    assert {r.SpecificCharacterSet for r in top.DirectoryRecordSequence} == {"ISO_IR 192"}


def test_ascii_records_keep_their_instances_character_set(tmp_path: Path) -> None:
    ascii_only = ct_instance(0)
    ascii_only.SpecificCharacterSet = "ISO_IR 100"
    top = read_header(_write_file_set(tmp_path, [to_bytes(ascii_only)]).read_bytes())
    assert "SpecificCharacterSet" not in top
    assert {r.SpecificCharacterSet for r in top.DirectoryRecordSequence} == {"ISO_IR 100"}


def test_extended_records_carry_the_series_description(tmp_path: Path) -> None:
    files = [to_bytes(ct_instance(0))]
    plain = read_header(_write_file_set(tmp_path / "plain", files).read_bytes())
    extended = read_header(_write_file_set(tmp_path / "ext", files, extended=True).read_bytes())
    series = [r for r in extended.DirectoryRecordSequence if r.DirectoryRecordType == "SERIES"]
    assert series[0].SeriesDescription == read_header(files[0]).SeriesDescription
    assert all("SeriesDescription" not in r for r in plain.DirectoryRecordSequence)


def test_an_instance_without_patient_id_is_still_listed(tmp_path: Path) -> None:
    no_id = ct_instance(0)
    del no_id.PatientID
    top = read_header(_write_file_set(tmp_path, [to_bytes(no_id)]).read_bytes())
    patient = top.DirectoryRecordSequence[0]
    assert patient.DirectoryRecordType == "PATIENT" and patient.PatientID == ""


def test_leaf_record_types_follow_the_sop_class() -> None:
    assert leaf_record_type("1.2.840.10008.5.1.4.1.1.2") == "IMAGE"
    assert leaf_record_type(BasicTextSRStorage) == "SR DOCUMENT"
    assert leaf_record_type("1.2.840.10008.5.1.4.1.1.88.59") == "KEY OBJECT DOC"
    assert leaf_record_type("1.2.840.10008.5.1.4.1.1.104.1") == "ENCAP DOC"
    assert leaf_record_type("1.2.840.10008.5.1.4.1.1.481.2") == "RT DOSE"


def dicom3tools_findings(path: Path) -> tuple[list[str], list[str]]:
    """(dciodvfy's error lines, dcentvfy's output lines) for a DICOMDIR."""
    iod = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, check=False)
    lines = (iod.stdout + iod.stderr).splitlines()
    assert "BasicDirectory" in lines
    entities = subprocess.run(["dcentvfy", str(path)], capture_output=True, text=True, check=True)
    return [x for x in lines if x.startswith("Error")], (entities.stdout + entities.stderr).split()


@pytest.mark.e2e
def test_dicom3tools_find_no_error(tmp_path: Path) -> None:
    errors, entity_findings = dicom3tools_findings(_write_file_set(tmp_path, _mixed_files()))
    assert errors == [] and entity_findings == []
