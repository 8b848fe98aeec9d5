"""The DICOM server as Orthanc's callers use it: C-FIND answers (counters, attributes
the index does not keep, character sets, padding) and C-MOVE as jobs, driven by DCMTK's
findscu and movescu against a real node."""

from __future__ import annotations

import io
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

from tests.node.server import DCMTK_ENV, NodeProcess, free_port
from tests.storage.helpers import ct_instance, to_bytes

pytestmark = pytest.mark.e2e  # starts real node processes

RECEIVER_AET = "RECEIVER"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    directory = tmp_path_factory.mktemp("cfind")
    receiver_port = free_port()
    modality = (
        f'[[modalities]]\nname = "receiver"\naet = "{RECEIVER_AET}"\n'
        f'host = "127.0.0.1"\nport = {receiver_port}\n'
    )
    process = NodeProcess(directory, modality)
    process.receiver_port = receiver_port  # type: ignore[attr-defined]
    process.start()
    yield process
    process.stop()


@pytest.fixture
def empty(node: NodeProcess) -> NodeProcess:
    for patient in node.request("GET", "/patients").json():
        node.request("DELETE", f"/patients/{patient}")
    node.request("PUT", "/tools/default-encoding", "Utf8")
    return node


def store(node: NodeProcess, index: int = 0, **changes: object) -> None:
    """Store a synthetic CT with some attributes changed (None removes one)."""
    dataset = ct_instance(
        index,
        patient=int(str(changes.pop("patient", 1))),
        series=int(str(changes.pop("series", 1))),
    )
    for keyword, value in changes.items():
        if value is None:
            delattr(dataset, keyword)
        else:
            setattr(dataset, keyword, value)
    answer = node.request("POST", "/instances", to_bytes(dataset))
    assert answer.status == 200, answer.body


def findscu(node: NodeProcess, *keys: str) -> str:
    """findscu's printout of the answers (as Latin-1, so any character set reads)."""
    options = [part for key in keys for part in ("-k", key)]
    done = subprocess.run(
        ["/usr/bin/findscu", "-P", "-aec", "PACSNODE", "127.0.0.1", str(node.dicom_port), *options],
        capture_output=True,
        env=DCMTK_ENV,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stderr.decode("latin-1")


def values(printout: str, tag: str) -> list[str]:
    """The bracketed values DCMTK printed for a tag, padding included."""
    return re.findall(rf"\({tag}\).*?\[(.*?)\]", printout)


def test_counters_at_each_level_and_padded_values(empty: NodeProcess) -> None:
    store(empty, 0, series=1)
    store(empty, 1, series=2, Modality="PT", SOPClassUID="1.2.840.10008.5.1.4.1.1.128")
    store(empty, 2, series=2, Modality="PT", SOPClassUID="1.2.840.10008.5.1.4.1.1.128")

    patients = findscu(
        empty,
        "QueryRetrieveLevel=PATIENT",
        "NumberOfPatientRelatedStudies",
        "NumberOfPatientRelatedSeries",
        "NumberOfPatientRelatedInstances",
    )
    assert values(patients, "0020,1200") == ["1 "]  # IS values are padded to even length
    assert values(patients, "0020,1202") == ["2 "]
    assert values(patients, "0020,1204") == ["3 "]

    studies = findscu(
        empty,
        "QueryRetrieveLevel=STUDY",
        "ModalitiesInStudy",
        "SOPClassesInStudy",
        "NumberOfStudyRelatedSeries",
        "NumberOfStudyRelatedInstances",
        "NumberOfSeriesRelatedInstances",  # not a study's: answered empty
    )
    assert values(studies, "0008,0061") == ["CT\\PT "]
    classes = values(studies, "0008,0062")[0].rstrip("\x00").split("\\")
    assert sorted(classes) == ["1.2.840.10008.5.1.4.1.1.128", "1.2.840.10008.5.1.4.1.1.2"]
    assert values(studies, "0020,1206") == ["2 "] and values(studies, "0020,1208") == ["3 "]
    assert "(0020,1209) IS (no value available)" in studies
    assert values(studies, "0008,0054") == ["PACSNODE"]  # RetrieveAETitle: where to C-MOVE from

    series = findscu(empty, "QueryRetrieveLevel=SERIES", "NumberOfSeriesRelatedInstances")
    assert sorted(values(series, "0020,1209")) == ["1 ", "2 "]


def test_attributes_outside_the_index_are_read_from_the_files(empty: NodeProcess) -> None:
    store(empty, 0, Rows=512, SecondaryCaptureDeviceID="MEDPC")
    store(empty, 1, series=2, Rows=None)

    # "IMAGES" is not a level DICOM defines, but devices send it (Orthanc takes it too)
    found = findscu(empty, "QueryRetrieveLevel=IMAGES", "PatientName", "Rows", "Columns")
    assert re.findall(r"\(0028,0010\) US ([0-9]+)", found) == ["512"]  # one has no Rows
    assert re.findall(r"\(0028,0011\) US ([0-9]+)", found) == ["64", "64"]

    matched = findscu(empty, "QueryRetrieveLevel=SERIES", "SecondaryCaptureDeviceID=MEDPC")
    assert values(matched, "0018,1010") == ["MEDPC "]
    assert not values(findscu(empty, "QueryRetrieveLevel=SERIES", "0018,1010=NOPE"), "0018,1010")
    # a series attribute at the study level is matched on one of the study's instances
    study_level = findscu(empty, "QueryRetrieveLevel=STUDY", "SeriesDescription=Synth*")
    assert len(values(study_level, "0008,0052")) == 1
    assert not values(findscu(empty, "QueryRetrieveLevel=STUDY", "ImageComments=*"), "0008,0052")


def test_a_lone_star_needs_the_attribute_over_dicom_and_rest(empty: NodeProcess) -> None:
    store(empty, 0, PatientSex=None)
    store(empty, 0, patient=2)

    def by_dicom(key: str) -> int:
        return len(values(findscu(empty, "QueryRetrieveLevel=STUDY", key), "0008,0052"))

    def by_rest(value: str) -> int:
        query = {"Level": "Study", "Query": {"PatientSex": value}}
        return len(empty.request("POST", "/tools/find", query).json())

    assert by_dicom("PatientSex=*") == 1 and by_rest("*") == 1
    assert by_dicom("PatientSex=") == 2 and by_rest("") == 2  # empty: universal matching
    assert by_dicom("PatientSex") == 2


def test_answers_are_written_in_the_default_encoding(empty: NodeProcess) -> None:
    store(empty, 0, SpecificCharacterSet="ISO_IR 192", PatientName="Test-éüäöòДΘ")
    for name, term, codec in (
        ("Latin1", "ISO_IR 100", "latin-1"),
        ("Cyrillic", "ISO_IR 144", "iso8859_5"),
        ("Ascii", "ISO_IR 6", "ascii"),
        ("Japanese", "ISO_IR 13", "shift_jis"),
        ("Utf8", "ISO_IR 192", "utf-8"),
    ):
        assert empty.request("PUT", "/tools/default-encoding", name).status == 200
        found = findscu(empty, "QueryRetrieveLevel=STUDY", "SpecificCharacterSet", "PatientName")
        assert [v.strip() for v in values(found, "0008,0005")] == [term]
        expected = "Test-éüäöòДΘ".encode(codec, "ignore")  # what the set cannot write is left out
        assert [v.strip() for v in values(found, "0010,0010")] == [expected.decode("latin-1")]


def test_group_lengths_and_file_meta_keys_are_not_answered(empty: NodeProcess) -> None:
    store(empty)
    found = findscu(empty, "QueryRetrieveLevel=IMAGE", "0008,0000=22", "0002,0002", "0008,0016")
    assert "(0008,0000)" not in found and "(0002,0002)" not in found
    assert "(0008,0016)" in found


def movescu(node: NodeProcess, *keys: str) -> int:
    options = [part for key in keys for part in ("-k", key)]
    done = subprocess.run(
        ["/usr/bin/movescu", "--study", "-aec", "PACSNODE", "--move", RECEIVER_AET,
         "127.0.0.1", str(node.dicom_port), *options],
        capture_output=True, env=DCMTK_ENV, timeout=60,
    )  # fmt: skip
    return done.returncode


@pytest.fixture
def receiver(node: NodeProcess, tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "received"
    folder.mkdir()
    port = str(node.receiver_port)  # type: ignore[attr-defined]
    process = subprocess.Popen(
        ["/usr/bin/storescp", "-aet", RECEIVER_AET, "-od", str(folder), port],
        env=DCMTK_ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.3)  # listening
    yield folder
    process.terminate()
    process.wait(timeout=10)


def one_new_job(node: NodeProcess, before: set[str]) -> dict[str, object]:
    new = set(node.request("GET", "/jobs").json()) - before
    assert len(new) == 1, new
    job = node.request("GET", f"/jobs/{new.pop()}").json()
    assert isinstance(job, dict)
    return job


def test_each_c_move_is_one_job_and_a_study_moves_by_accession(
    empty: NodeProcess, receiver: Path
) -> None:
    store(empty, 0, AccessionNumber="ACC42")
    store(empty, 1, series=2, AccessionNumber="ACC42")

    def move(*keys: str) -> dict[str, object]:
        before = set(empty.request("GET", "/jobs").json())
        assert movescu(empty, *keys) == 0
        return one_new_job(empty, before)

    # an empty key names nothing: no instance leaves, and the job says it failed
    assert move("StudyInstanceUID=")["State"] == "Failure"
    assert move("AccessionNumber=", "StudyInstanceUID=")["State"] == "Failure"
    assert move("QueryRetrieveLevel=STUDY", "AccessionNumber=NOPE")["State"] == "Success"
    assert list(receiver.iterdir()) == []

    # no QueryRetrieveLevel: a study, found by its accession number
    job = move("AccessionNumber=ACC42", "StudyInstanceUID=")
    assert job["State"] == "Success" and job["Type"] == "DicomModalityStore"
    assert len(list(receiver.iterdir())) == 2


def test_c_move_of_a_list_of_series(empty: NodeProcess, receiver: Path) -> None:
    for series in (1, 2, 3):
        store(empty, 0, series=series)
    series_list = empty.request("GET", "/series?expand").json()
    uids = sorted(s["MainDicomTags"]["SeriesInstanceUID"] for s in series_list)[:2]
    found = findscu(empty, "QueryRetrieveLevel=SERIES", "SeriesInstanceUID=" + "\\".join(uids))
    assert sorted(v.rstrip("\x00") for v in values(found, "0020,000e")) == uids
    assert movescu(empty, "QueryRetrieveLevel=SERIES", "SeriesInstanceUID=" + "\\".join(uids)) == 0
    deadline = time.monotonic() + 10
    while len(list(receiver.iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(list(receiver.iterdir())) == 2


def test_rest_find_folds_identifiers_unless_case_sensitive(empty: NodeProcess) -> None:
    store(empty, 0, PatientID="abcDEF12", AccessionNumber="acc-9")

    def found(query: dict[str, str], **options: object) -> int:
        body = {"Level": "Patient", "Query": query, **options}
        return len(empty.request("POST", "/tools/find", body).json())

    assert found({"PatientID": "ABCdef12"}) == 1  # CaseSensitive is false by default
    assert found({"PatientID": "ABCdef12"}, CaseSensitive=True) == 0
    assert found({"PatientID": "abcDEF12"}, CaseSensitive=True) == 1
    assert found({"PatientID": "ABC*"}) == 1 and found({"PatientID": "*def1?"}) == 1
    assert found({"PatientID": "NOPE\\ABCDEF12"}) == 1
    study = {"Level": "Study", "Query": {"AccessionNumber": "ACC-9"}}
    assert len(empty.request("POST", "/tools/find", study).json()) == 1
    looked_up = empty.request("POST", "/tools/lookup", "ABCDEF12").json()
    assert [x["Type"] for x in looked_up] == ["Patient"]


def test_rest_find_matches_attributes_outside_the_index_on_the_files(
    empty: NodeProcess,
) -> None:
    for series in (1, 2, 3):
        store(empty, 0, series=series, PatientPosition="HFS" if series < 3 else "FFS")

    def found(query: dict[str, str], **options: object) -> list[str]:
        body = {"Level": "Series", "Query": query, **options}
        answer = empty.request("POST", "/tools/find", body)
        assert answer.status == 200, answer.body
        return list(answer.json())

    assert len(found({"PatientPosition": "HFS"})) == 2
    assert len(found({"PatientPosition": "F*"})) == 1
    assert len(found({"PatientPosition": "HFS", "Modality": "CT"})) == 2
    both = found({"PatientPosition": "HFS"})
    assert found({"PatientPosition": "HFS"}, Since=1, Limit=1) == both[1:]
    counted = empty.request(
        "POST", "/tools/count-resources", {"Level": "Series", "Query": {"PatientPosition": "HFS"}}
    )
    assert counted.json() == {"Count": 2}


def test_a_compressed_instance_reaches_a_receiver_that_takes_only_uncompressed(
    empty: NodeProcess, receiver: Path
) -> None:
    # storescp accepts uncompressed syntaxes only, unless told otherwise
    sample = pydicom.dcmread(get_testdata_file("SC_rgb_jpeg_dcmtk.dcm"))
    buffer = io.BytesIO()
    sample.save_as(buffer)
    stored = empty.request("POST", "/instances", buffer.getvalue()).json()

    uncompressed = ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2")
    study = f"StudyInstanceUID={sample.StudyInstanceUID}"
    assert movescu(empty, "QueryRetrieveLevel=STUDY", study) == 0
    [moved] = list(receiver.iterdir())
    assert pydicom.dcmread(moved).file_meta.TransferSyntaxUID in uncompressed
    moved.unlink()

    sent = empty.request("POST", "/modalities/receiver/store", stored["ID"])
    assert sent.status == 200, sent.body
    [copy] = list(receiver.iterdir())
    decoded = pydicom.dcmread(copy)
    assert decoded.SOPInstanceUID == sample.SOPInstanceUID
    assert decoded.file_meta.TransferSyntaxUID in uncompressed
