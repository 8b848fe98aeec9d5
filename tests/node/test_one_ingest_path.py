"""Every way in ends the same: the same instance stored by a REST upload, by a C-STORE
(DCMTK's storescu) and by a peer's study ZIP gives identical index records and
identical change entries on three real nodes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.node.server import NodeProcess
from tests.peer.test_replication import linked_sites, sync
from tests.storage.helpers import ct_bytes

pytestmark = pytest.mark.e2e

# Differ by nature between two nodes: when and how the instance arrived.
#: how and from whom an instance arrived, and what depends on the file as it came (its file
#: meta: the sender's over REST, the receiver's over DICOM): not the same by every way in
_ARRIVAL_METADATA = {"ReceptionDate", "LastUpdate", "Origin", "RemoteAET", "RemoteIP", "CalledAET",
                     "Peer", "HttpUsername", "PixelDataOffset"}  # fmt: skip


def _resources(node: NodeProcess) -> dict[str, Any]:
    """Every resource as the REST API shows it, with its metadata, dates left out."""
    shown: dict[str, Any] = {}
    for level in ("patients", "studies", "series", "instances"):
        for resource in node.request("GET", f"/{level}?expand").json():
            resource.pop("LastUpdate", None)
            # The file as it came: uploaded over REST it is the sender's own, received over
            # DICOM (or from that node by a peer) it has the receiver's file meta.
            resource.pop("FileSize", None)
            metadata = node.request("GET", f"/{level}/{resource['ID']}/metadata?expand").json()
            resource["Metadata"] = {k: v for k, v in metadata.items() if k not in _ARRIVAL_METADATA}
            shown[resource["ID"]] = resource
    return shown


def _changes(node: NodeProcess) -> list[tuple[str, str, str]]:
    """The change feed up to the instance, without dates and sequence numbers."""
    entries = node.request("GET", "/changes?limit=100").json()["Changes"]
    return [
        (c["ChangeType"], c["ResourceType"], c["ID"])
        for c in entries
        if not c["ChangeType"].startswith("Stable")  # when a study settles is timing
    ]


def test_rest_dicom_and_peer_zip_index_the_same(tmp_path: Path) -> None:
    data = ct_bytes(0, patient=7)
    (tmp_path / "ct.dcm").write_bytes(data)
    by_rest, by_peer = linked_sites(tmp_path)
    by_dicom = NodeProcess(tmp_path / "dicom")
    for node in (by_rest, by_peer, by_dicom):
        node.start()
    try:
        assert by_rest.request("POST", "/instances", data).json()["Status"] == "Success"
        stored = by_dicom.dcmtk("storescu", files=(str(tmp_path / "ct.dcm"),))
        assert stored.returncode == 0, stored.stderr
        pushed = sync(by_rest, "siteb")
        assert pushed["State"] == "Success" and pushed["Content"]["PushedInstances"] == 1

        for node in (by_rest, by_dicom, by_peer):
            node.wait_converted()
        rest_view = _resources(by_rest)
        assert len(rest_view) == 4
        assert _resources(by_dicom) == rest_view
        assert _resources(by_peer) == rest_view
        expected = _changes(by_rest)
        assert [c[0] for c in expected] == ["NewInstance", "NewSeries", "NewStudy", "NewPatient"]
        assert _changes(by_dicom) == expected
        assert _changes(by_peer) == expected
        origins = {
            node.request("GET", f"/instances/{rid}/metadata/Origin").body.decode()
            for node in (by_rest, by_dicom, by_peer)
            for rid, r in rest_view.items()
            if r["Type"] == "Instance"
        }
        assert origins == {"RestApi", "DicomProtocol", "Peer"}
    finally:
        for node in (by_rest, by_peer, by_dicom):
            node.stop()
