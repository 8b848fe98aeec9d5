"""dicomweb-client (PyPI), a real DICOMweb client, against a real ``pacsnode serve``."""

from __future__ import annotations

from collections.abc import Iterator

import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient

from pacsnode.node.auth import hash_password
from tests.node.dicomweb.conftest import CORPUS, corpus_dataset, source_frames
from tests.node.server import NodeProcess

pytestmark = pytest.mark.e2e
USER, PASSWORD = "viewer", "dicomweb-test"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    users = f'[[users]]\nname = "{USER}"\npassword_hash = "{hash_password(PASSWORD)}"\n'
    process = NodeProcess(
        tmp_path_factory.mktemp("dicomweb-node"), extra_toml=users, credentials=(USER, PASSWORD)
    ).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def client(node: NodeProcess) -> DICOMwebClient:
    session = requests.Session()
    session.auth = (USER, PASSWORD)
    return DICOMwebClient(f"{node.url}/dicom-web", session=session)


@pytest.fixture(scope="module")
def stored(client: DICOMwebClient) -> dict[str, pydicom.Dataset]:
    datasets = {name: corpus_dataset(name) for name in CORPUS}
    with_bulk = corpus_dataset("MR_small.dcm")
    with_bulk.ICCProfile = bytes(range(256)) * 16  # binary over the bulk data threshold
    datasets["with-bulk"] = with_bulk
    answer = client.store_instances(list(datasets.values()))
    assert len(answer.ReferencedSOPSequence) == len(datasets)
    assert "FailedSOPSequence" not in answer
    return datasets


def test_search_pages_to_the_end(client: DICOMwebClient, stored: dict[str, pydicom.Dataset]):
    seen: list[str] = []
    offset = 0
    while page := client.search_for_instances(limit=2, offset=offset):
        seen.extend(item["00080018"]["Value"][0] for item in page)
        offset += len(page)
        assert offset <= len(stored)
    assert sorted(seen) == sorted(d.SOPInstanceUID for d in stored.values())
    ct = stored["CT_small.dcm"]
    studies = client.search_for_studies(search_filters={"PatientID": ct.PatientID})
    assert ct.StudyInstanceUID in [s["0020000D"]["Value"][0] for s in studies]
    series = client.search_for_series(ct.StudyInstanceUID)
    assert series[0]["0020000E"]["Value"] == [ct.SeriesInstanceUID]


def test_retrieve_study_series_and_instance(
    client: DICOMwebClient, stored: dict[str, pydicom.Dataset]
):
    for dataset in stored.values():
        study = client.retrieve_study(dataset.StudyInstanceUID)
        assert dataset.SOPInstanceUID in [d.SOPInstanceUID for d in study]
        series = client.retrieve_series(dataset.StudyInstanceUID, dataset.SeriesInstanceUID)
        assert dataset.SOPInstanceUID in [d.SOPInstanceUID for d in series]
        copy = client.retrieve_instance(
            dataset.StudyInstanceUID, dataset.SeriesInstanceUID, dataset.SOPInstanceUID
        )
        assert copy.SOPInstanceUID == dataset.SOPInstanceUID
        assert (
            copy.PixelData == dataset.PixelData
            or dataset.file_meta.TransferSyntaxUID.is_encapsulated
        )


def test_metadata_at_each_level(client: DICOMwebClient, stored: dict[str, pydicom.Dataset]):
    ct = stored["CT_small.dcm"]
    study = client.retrieve_study_metadata(ct.StudyInstanceUID)
    assert study[0]["00080018"]["Value"] == [ct.SOPInstanceUID]
    series = client.retrieve_series_metadata(ct.StudyInstanceUID, ct.SeriesInstanceUID)
    # one instance in that series; its bulk data URIs made absolute (the study's are relative)
    prefix = f"{client.base_url}/studies/{ct.StudyInstanceUID}/"
    assert all(
        element["BulkDataURI"].startswith(prefix)
        for element in series[0].values()
        if "BulkDataURI" in element
    )
    relative = {
        key: {**element, "BulkDataURI": element["BulkDataURI"].removeprefix(prefix)}
        if "BulkDataURI" in element
        else element
        for key, element in series[0].items()
    }
    assert relative == study[0]
    instance = client.retrieve_instance_metadata(
        ct.StudyInstanceUID, ct.SeriesInstanceUID, ct.SOPInstanceUID
    )
    assert instance["00100020"]["Value"] == [ct.PatientID]


def test_frames_are_the_source_frames(client: DICOMwebClient, stored: dict[str, pydicom.Dataset]):
    for name in CORPUS:
        dataset = stored[name]
        expected = source_frames(dataset)
        numbers = list(range(1, len(expected) + 1))
        frames = client.retrieve_instance_frames(
            dataset.StudyInstanceUID, dataset.SeriesInstanceUID, dataset.SOPInstanceUID, numbers
        )
        assert frames == expected, name
        one = client.retrieve_instance_frames(
            dataset.StudyInstanceUID,
            dataset.SeriesInstanceUID,
            dataset.SOPInstanceUID,
            [numbers[-1]],
        )
        assert one == expected[-1:]


def test_bulk_data_at_the_uri_the_metadata_names(
    client: DICOMwebClient, stored: dict[str, pydicom.Dataset]
):
    dataset = stored["with-bulk"]
    metadata = client.retrieve_instance_metadata(
        dataset.StudyInstanceUID, dataset.SeriesInstanceUID, dataset.SOPInstanceUID
    )
    uri = metadata["00282000"]["BulkDataURI"]  # ICC Profile
    assert uri.startswith("http")
    assert client.retrieve_bulkdata(uri) == [dataset.ICCProfile]
    pixels = client.retrieve_bulkdata(metadata["7FE00010"]["BulkDataURI"])
    assert pixels == source_frames(dataset)


def test_unknown_resources_and_bad_uids(client: DICOMwebClient, node: NodeProcess, stored):
    with pytest.raises(requests.HTTPError) as missing:
        client.retrieve_study_metadata("1.2.3.4.5.6.7.8")
    assert missing.value.response.status_code == 404
    bad = node.request("GET", "/dicom-web/studies/1..2/metadata")
    assert bad.status == 400 and "not a valid DICOM UID" in bad.json()["Message"]
    anonymous = node.request("GET", "/dicom-web/studies", auth=False)
    assert anonymous.status == 401


def test_stored_instances_name_the_user_who_sent_them(node: NodeProcess, stored):
    ct = stored["CT_small.dcm"]
    found = node.request("POST", "/tools/lookup", ct.SOPInstanceUID).json()
    instance_id = found[0]["ID"]
    username = node.request("GET", f"/instances/{instance_id}/metadata/HttpUsername")
    assert username.status == 200 and username.body.decode() == USER
    origin = node.request("GET", f"/instances/{instance_id}/metadata/Origin")
    assert origin.body.decode() == "RestApi"
