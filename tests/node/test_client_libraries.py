"""Orthanc's client libraries, unchanged, against a real node: a scripting workflow with
pyorthanc and with orthanc-api-client (upload, browse up and down, find, tags, files and
archives, metadata, attachments, protection, modalities, peers, jobs, changes, delete)."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pyorthanc
import pytest
from orthanc_api_client import OrthancApiClient

from tests.node.server import NodeProcess
from tests.storage.helpers import ct_bytes

pytestmark = pytest.mark.e2e  # starts a real node process


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NodeProcess]:
    process = NodeProcess(tmp_path / "node").start()
    yield process
    process.stop()


def test_pyorthanc_workflow(node: NodeProcess) -> None:
    client = pyorthanc.Orthanc(node.url)
    client.post_instances(ct_bytes(0))
    client.post_instances(ct_bytes(1, series=2))
    client.post_instances(ct_bytes(0, patient=2))

    patients = pyorthanc.find_patients(client, query={"PatientID": "PAT00001"})
    assert len(patients) == 1
    patient = patients[0]
    assert patient.patient_id == "PAT00001" and patient.name == "Synthetic^Patient1"
    (study,) = patient.studies
    assert {series.modality for series in study.series} == {"CT"}
    instances = [i for series in study.series for i in series.instances]
    assert len(instances) == 2
    first = instances[0]
    data = first.get_dicom_file_content()
    assert pydicom.dcmread(io.BytesIO(data)).SOPInstanceUID == first.uid
    assert first.simplified_tags["PatientID"] == "PAT00001"
    assert first.parent_patient.id_ == patient.id_  # up the hierarchy
    assert first.parent_study.id_ == study.id_

    archive = zipfile.ZipFile(io.BytesIO(study.get_zip()))
    assert len(archive.namelist()) == 2
    assert len(pyorthanc.find_studies(client, query={"PatientID": "PAT*"})) == 2

    client.put_instances_id_metadata_name(first.id_, "1024", "reviewed")
    assert client.get_instances_id_metadata_name(first.id_, "1024") == "reviewed"
    patient.protected = True
    assert patient.protected is True
    client.put_modalities_id("viewer", {"AET": "VIEWER", "Host": "127.0.0.1", "Port": 104})
    assert client.get_modalities() == ["viewer"]
    assert client.get_peers() == [] and client.get_jobs() == []
    assert client.get_statistics()["CountInstances"] == 3
    changes = client.get_changes(params={"since": 0, "limit": 100})
    assert changes["Done"] and changes["Changes"]

    patient.protected = False
    client.delete_patients_id(patient.id_)
    assert client.get_statistics()["CountPatients"] == 1


def test_orthanc_api_client_workflow(node: NodeProcess, tmp_path: Path) -> None:
    client = OrthancApiClient(node.url)
    assert client.is_alive()
    client.upload(ct_bytes(0, patient=3))
    client.upload(ct_bytes(1, patient=3))

    (study_id,) = client.studies.get_all_ids()
    found = client.studies.find(query={"PatientID": "PAT00003"})
    assert [study.orthanc_id for study in found] == [study_id]
    (series_id,) = client.studies.get_series_ids(study_id)
    instance_ids = client.series.get_instances_ids(series_id)
    assert len(instance_ids) == 2
    assert client.instances.get_parent_study_id(instance_ids[0]) == study_id
    tags = client.instances.get_tags(instance_ids[0])
    assert tags["PatientID"] == "PAT00003"
    assert pydicom.dcmread(io.BytesIO(client.instances.get_file(instance_ids[0]))).PatientID

    client.instances.set_string_metadata(instance_ids[0], "1024", "checked")
    assert client.instances.get_string_metadata(instance_ids[0], "1024") == "checked"
    client.instances.set_attachment(instance_ids[0], 1025, b"a report")
    assert client.instances.get_attachment(instance_ids[0], 1025) == b"a report"

    target = tmp_path / "study.zip"
    client.studies.download_archive(study_id, path=str(target))
    assert len(zipfile.ZipFile(target).namelist()) == 2
    assert client.get_statistics().instances_count == 2

    client.studies.delete(study_id)
    assert client.studies.get_all_ids() == []
