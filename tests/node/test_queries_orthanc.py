"""Query/retrieve over REST as Orthanc's scripts use it, against a real node that queries
itself: normalized queries, what answers carry, counters per level, wildcards a VR cannot
hold, and retrieves as jobs."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.node.server import DCMTK_ENV, NodeProcess, free_port
from tests.storage.helpers import ct_instance, to_bytes

pytestmark = pytest.mark.e2e  # starts real node processes


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    directory = tmp_path_factory.mktemp("queries")
    process = NodeProcess(directory)
    receiver_port = free_port()
    process.receiver_port = receiver_port  # type: ignore[attr-defined]
    process.config.write_text(
        f'data_dir = "data"\n[http]\nport = {process.http_port}\n'
        f'[dicom]\naet = "SELF"\nport = {process.dicom_port}\n'
        f'[[modalities]]\nname = "self"\naet = "SELF"\nhost = "127.0.0.1"\n'
        f"port = {process.dicom_port}\n"
        f'[[modalities]]\nname = "receiver"\naet = "RECEIVER"\nhost = "127.0.0.1"\n'
        f"port = {receiver_port}\n"
    )
    process.start()
    yield process
    process.stop()


@pytest.fixture
def empty(node: NodeProcess) -> NodeProcess:
    for patient in node.request("GET", "/patients").json():
        node.request("DELETE", f"/patients/{patient}")
    return node


def store(node: NodeProcess, index: int = 0, *, patient: int = 1, **changes: Any) -> None:
    dataset = ct_instance(index, patient=patient)
    for keyword, value in changes.items():
        setattr(dataset, keyword, value)
    assert node.request("POST", "/instances", to_bytes(dataset)).status == 200


def answers(node: NodeProcess, body: dict[str, Any], view: str = "expand&simplify") -> Any:
    started = node.request("POST", "/modalities/self/query", body)
    assert started.status == 200, started.body
    return node.request("GET", f"{started.json()['Path']}/answers?{view}").json()


def test_a_normalized_query_keeps_only_its_level_attributes(empty: NodeProcess) -> None:
    store(empty, Rows=512)
    instance = {"Level": "Instance", "Query": {"Rows": "42"}}
    found = answers(empty, instance)
    assert len(found) == 1 and "Rows" not in found[0]  # Rows is no instance main tag
    assert answers(empty, {**instance, "Normalize": False}) == []  # matched on the file
    kept = answers(empty, {"Level": "Instance", "Query": {"Rows": ""}, "Normalize": False})
    assert kept[0]["Rows"] == "512"

    study = {"Level": "Study", "Query": {"SeriesDescription": "NOPE"}}
    assert len(answers(empty, study)) == 1
    assert answers(empty, {**study, "Normalize": False}) == []


@pytest.mark.parametrize(
    ("keyword", "value"), [("StudyInstanceUID", "*"), ("Rows", "*"), ("SOPClassUID", "1.2?")]
)
def test_wildcards_are_refused_where_the_vr_cannot_hold_them(
    empty: NodeProcess, keyword: str, value: str
) -> None:
    body = {"Level": "Instance", "Query": {keyword: value}, "Normalize": False}
    assert empty.request("POST", "/modalities/self/query", body).status == 400


def test_a_study_answer_carries_the_keys_to_retrieve_it(empty: NodeProcess) -> None:
    store(empty)
    empty.request("PUT", "/tools/default-encoding", "Latin1")
    found = answers(empty, {"Level": "Study", "Query": {}}, "expand&short")
    assert found == [
        {
            "0008,0005": "ISO_IR 100",
            "0008,0050": "ACC000101",
            "0008,0052": "STUDY",
            "0008,0054": "SELF",
            "0010,0020": "PAT00001",
            "0020,000d": "1.2.826.0.1.3680043.10.1234.1.1",
        }
    ]
    empty.request("PUT", "/tools/default-encoding", "Utf8")


def test_counters_are_answered_at_their_own_level_only(empty: NodeProcess) -> None:
    store(empty, 0)
    store(empty, 1)
    counters = {
        f"Number{kind}": ""
        for kind in (
            "OfPatientRelatedInstances", "OfPatientRelatedSeries", "OfPatientRelatedStudies",
            "OfStudyRelatedInstances", "OfStudyRelatedSeries", "OfSeriesRelatedInstances",
        )
    }  # fmt: skip
    patient = answers(empty, {"Level": "Patient", "Query": counters})[0]
    assert patient["NumberOfPatientRelatedInstances"] == "2"
    assert patient["NumberOfPatientRelatedSeries"] == "1"
    assert "NumberOfStudyRelatedInstances" not in patient
    study = answers(empty, {"Level": "Study", "Query": counters})[0]
    assert study["NumberOfStudyRelatedInstances"] == "2"
    assert "NumberOfPatientRelatedStudies" not in study
    started = empty.request("POST", "/modalities/self/query", {"Level": "Patient"}).json()
    child = empty.request(
        "POST", f"{started['Path']}/answers/0/query-series", {"Query": counters}
    ).json()
    series = empty.request("GET", f"{child['Path']}/answers?expand&simplify").json()
    assert series == answers(empty, {"Level": "Series", "Query": counters})


@pytest.fixture
def receiver(node: NodeProcess, tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "received"
    folder.mkdir()
    port = str(node.receiver_port)  # type: ignore[attr-defined]
    process = subprocess.Popen(
        ["/usr/bin/storescp", "-aet", "RECEIVER", "-od", str(folder), port],
        env=DCMTK_ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.3)  # listening
    yield folder
    process.terminate()
    process.wait(timeout=10)


def test_a_retrieve_is_a_job_and_moves_the_whole_study(empty: NodeProcess, receiver: Path) -> None:
    # one Study Instance UID under two patients: retrieving the study sends both
    store(empty, 0, patient=1)
    other = ct_instance(1, patient=2)
    other.StudyInstanceUID = ct_instance(0, patient=1).StudyInstanceUID
    assert empty.request("POST", "/instances", to_bytes(other)).status == 200
    started = empty.request(
        "POST", "/modalities/self/query", {"Level": "Study", "Query": {"PatientID": "PAT00001"}}
    ).json()
    assert len(empty.request("GET", f"{started['Path']}/answers").json()) == 1

    shown = empty.request("POST", f"{started['Path']}/retrieve", {"TargetAet": "RECEIVER"})
    assert shown.status == 200, shown.body
    content = shown.json()
    assert content["Description"] == "REST API" and content["RemoteAet"] == "SELF"
    assert content["Query"] == [
        {
            "0008,0050": "ACC000101",
            "0008,0052": "STUDY",
            "0010,0020": "PAT00001",
            "0020,000d": "1.2.826.0.1.3680043.10.1234.1.1",
        }
    ]
    assert len(list(receiver.iterdir())) == 2

    body = {"TargetAet": "RECEIVER", "Synchronous": False}
    job = empty.request("POST", f"{started['Path']}/retrieve", body).json()
    assert finished(empty, job["ID"]) == "Success"
    assert empty.request("GET", f"/jobs/{job['ID']}").json()["Type"] == "DicomMoveScu"


def test_a_move_is_a_job_as_a_retrieve_is(empty: NodeProcess, receiver: Path) -> None:
    store(empty, 0)
    study = ct_instance(0).StudyInstanceUID
    body = {"Level": "Study", "Resources": [{"StudyInstanceUID": study}], "TargetAet": "RECEIVER"}
    done = empty.request("POST", "/modalities/self/move", body)
    assert done.status == 200, done.body
    assert done.json()["Query"] == [{"0008,0052": "STUDY", "0020,000d": study}]
    assert len(list(receiver.iterdir())) == 1
    started = empty.request("POST", "/modalities/self/move", {**body, "Asynchronous": True})
    assert finished(empty, started.json()["ID"]) == "Success"
    assert empty.request("GET", started.json()["Path"]).json()["Type"] == "DicomMoveScu"


def finished(node: NodeProcess, job_id: str) -> str:
    """The job's final state (it is waited for: the receiver stops after the test)."""
    deadline = time.monotonic() + 20
    state = ""
    while state not in ("Success", "Failure") and time.monotonic() < deadline:
        state = node.request("GET", f"/jobs/{job_id}").json()["State"]
        time.sleep(0.1)
    return state
