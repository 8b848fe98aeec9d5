"""Query/retrieve through the REST API between two real nodes, as Orthanc scripts do it:
A queries B (C-FIND), looks at the answers, and retrieves them (C-MOVE, C-GET)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.node.server import NodeProcess
from tests.storage.helpers import ct_bytes

pytestmark = pytest.mark.e2e  # starts real node processes


def _modality(name: str, aet: str, port: int) -> str:
    return f'[[modalities]]\nname = "{name}"\naet = "{aet}"\nhost = "127.0.0.1"\nport = {port}\n'


@pytest.fixture
def two_nodes(tmp_path: Path) -> Iterator[tuple[NodeProcess, NodeProcess]]:
    """Node A (NODEA) and node B (NODEB), each the other's modality."""
    a, b = NodeProcess(tmp_path / "a"), NodeProcess(tmp_path / "b")
    for node, aet, other, other_aet in ((a, "NODEA", b, "NODEB"), (b, "NODEB", a, "NODEA")):
        node.config.write_text(
            f'data_dir = "data"\n[http]\nport = {node.http_port}\n'
            f'[dicom]\naet = "{aet}"\nport = {node.dicom_port}\n'
            + _modality(other_aet[-1].lower(), other_aet, other.dicom_port)
        )
    yield a.start(), b.start()
    a.stop()
    b.stop()


def test_query_then_retrieve_from_another_node(two_nodes: tuple[NodeProcess, NodeProcess]) -> None:
    a, b = two_nodes
    for index in range(2):
        b.request("POST", "/instances", ct_bytes(index, patient=3, series=1 + index))
    query = {"Level": "Series", "Query": {"PatientID": "*", "StudyDate": ""}}
    started = a.request("POST", "/modalities/b/query", query)
    assert started.status == 200, started.body
    query_id = started.json()["ID"]
    assert query_id in a.request("GET", "/queries").json()
    assert a.request("GET", f"/queries/{query_id}/level").body == b"Series"
    assert a.request("GET", f"/queries/{query_id}/modality").body == b"b"
    asked = a.request("GET", f"/queries/{query_id}/query?simplify").json()
    assert asked == {"PatientID": "*", "StudyDate": ""}
    answers = a.request("GET", f"/queries/{query_id}/answers?expand&simplify").json()
    assert len(answers) == 2 and {x["QueryRetrieveLevel"] for x in answers} == {"SERIES"}
    content = a.request("GET", f"/queries/{query_id}/answers/0/content?simplify").json()
    assert content["SeriesInstanceUID"] in {x["SeriesInstanceUID"] for x in answers}

    moved = a.request("POST", f"/queries/{query_id}/answers/0/retrieve", "NODEA")
    assert moved.status == 200, moved.body
    assert len(a.request("GET", "/instances").json()) == 1
    assert a.request("POST", f"/queries/{query_id}/retrieve", "").status == 200  # to us: NODEA
    assert len(a.request("GET", "/instances").json()) == 2

    study = a.request("GET", "/studies?expand").json()[0]["MainDicomTags"]["StudyInstanceUID"]
    down = a.request("POST", f"/queries/{query_id}/answers/0/query-instances", {})
    instances = down.json()["ID"]
    assert len(a.request("GET", f"/queries/{instances}/answers").json()) == 1
    assert a.request("DELETE", f"/queries/{query_id}").status == 200
    assert a.request("GET", f"/queries/{query_id}").status == 404

    for patient in a.request("GET", "/patients").json():
        a.request("DELETE", f"/patients/{patient}")
    got = a.request(
        "POST", "/modalities/b/get", {"Level": "Study", "Resources": [{"StudyInstanceUID": study}]}
    )
    assert got.status == 200, got.body
    assert got.json()["ReceivedInstancesCount"] == 2
    assert len(got.json()["Details"][0]["ReceivedInstancesIds"]) == 2
    assert len(a.request("GET", "/instances").json()) == 2
    refused = a.request("POST", "/modalities/b/query", {"Level": "Nope", "Query": {}})
    assert refused.status == 400
