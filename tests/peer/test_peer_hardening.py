"""The peering listener holds peers to their grant and their quota, and tells them no
internals (issue 13, items 7, 9 and 13).

The pure decisions are tested directly; the rest against one real node over real mutual
TLS, spoken to by pinned clients that behave as a hostile (but pinned) peer would.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pacsnode.peer.annotation_doc import annotations_problem
from pacsnode.peer.grants import feed_queries
from pacsnode.peer.identity import Identity, load_or_create
from pacsnode.peer.server import public_error
from pacsnode.peer.spool import Spool, TransferLimits, upload_refusal
from pacsnode.peer.tls import client_context
from pacsnode.storage.errors import InvalidArchive
from tests.node.server import NodeProcess, free_port
from tests.peer.test_peer_state import mr_bytes
from tests.peer.test_replication import peer_toml
from tests.storage.helpers import ct_bytes

MiB = 1 << 20

# --- pure decisions ---------------------------------------------------------------------


def test_feed_queries_merge_a_grant_and_a_request_unless_they_disagree() -> None:
    assert feed_queries(None, None) == []
    assert feed_queries({"Modality": "MR"}, None) == [{"Modality": "MR"}]
    assert feed_queries(None, {"Modality": "CT"}) == [{"Modality": "CT"}]
    both = feed_queries({"Modality": "MR"}, {"PatientID": "P*"})
    assert both == [{"PatientID": "P*", "Modality": "MR"}]
    # A request cannot widen the grant: disagreeing patterns must both match.
    assert feed_queries({"Modality": "MR"}, {"Modality": "*"}) == [
        {"Modality": "MR"},
        {"Modality": "*"},
    ]


def test_upload_refusals() -> None:
    limits = TransferLimits(max_upload_bytes=10 * MiB, idle_s=60, per_peer=2)
    fine = {"held_by_peer": 0, "reserved": 0, "room": None, "disk_free": 1 << 40}
    assert upload_refusal(10 * MiB, limits, **fine) is None
    assert upload_refusal(10 * MiB + 1, limits, **fine).status == 413  # type: ignore[union-attr]
    held = {**fine, "held_by_peer": 2}
    assert upload_refusal(1, limits, **held).status == 429  # type: ignore[union-attr]
    # The spool counts against the storage limit, with what it already holds.
    full = {**fine, "reserved": 6 * MiB, "room": 10 * MiB}
    assert upload_refusal(4 * MiB, limits, **full) is None
    assert upload_refusal(4 * MiB + 1, limits, **full).status == 507  # type: ignore[union-attr]
    small_disk = {**fine, "disk_free": MiB}
    assert upload_refusal(2 * MiB, limits, **small_disk).status == 507  # type: ignore[union-attr]


def test_public_errors_name_no_path_and_no_python() -> None:
    status, code, message = public_error(
        InvalidArchive("bad entry in /srv/pacs/data/peer-spool/uploads/ab.zip: CRC")
    )
    assert (status, code) == (400, "invalid-archive")
    assert "/srv" not in message and "peer-spool" not in message and "CRC" in message
    message = public_error(InvalidArchive("0a1b.zip is not a readable ZIP"))[2]
    assert message == "the file is not a readable ZIP"
    message = public_error(InvalidArchive("the ZIP is malformed: BadZipFile: Bad magic number"))[2]
    assert message == "the ZIP is malformed: Bad magic number"
    message = public_error(InvalidArchive("damaged: zlib.error: Error -3 while decompressing"))[2]
    assert "zlib.error" not in message and "Error -3" in message
    status, code, message = public_error(ValueError("invalid literal for int() with base 10"))
    assert (status, code) == (500, "internal-error")
    assert "int()" not in message
    assert public_error(KeyError("/etc/passwd"))[2].find("/etc") == -1


def test_annotation_documents_are_checked_whole() -> None:
    good = {"Resources": {"x": {"Level": "Study", "Metadata": {"1024": "v"}}}}
    assert annotations_problem(good) is None
    assert annotations_problem({"Resources": {"x": {"Metadata": {"abc": "v"}}}})
    assert annotations_problem({"Resources": {"x": {"Attachments": {"1024": {"Data": "%%"}}}}})
    assert annotations_problem({"Resources": {"x": {"Attachments": {"1024": {}}}}})
    assert annotations_problem({"Resources": {"x": {"Protected": "yes"}}})
    assert annotations_problem([]) and annotations_problem({"Resources": []})


def test_the_spool_is_private_to_its_peer_and_swept_when_idle(tmp_path: Path) -> None:
    from aiohttp import web

    spool = Spool(tmp_path)
    upload_id, path = spool.new("uploads", "alice", {"Size": 5 * MiB})
    _, export = spool.new("exports", "alice", {"Study": "1.2"})
    export.write_bytes(b"x" * 100)
    assert spool.existing("uploads", upload_id, "alice") == path
    with pytest.raises(web.HTTPNotFound):
        spool.existing("uploads", upload_id, "mallory")
    with pytest.raises(web.HTTPNotFound):
        spool.existing("uploads", "../../etc/passwd", "alice")
    assert spool.count("uploads", "alice") == 1 and spool.count("uploads", "bob") == 0
    assert spool.reserved_bytes() == 5 * MiB + 100  # declared, not yet written, counts
    with spool.busy(path):  # being written or merged: never swept from under a request
        assert spool.sweep(60, now=time.time() + 120) == 1
    assert path.exists() and not export.exists()
    assert spool.sweep(60) == 0  # recent: kept
    assert spool.sweep(60, now=time.time() + 120) == 1
    assert not path.exists() and not path.with_suffix(".json").exists()


# --- against a real node ------------------------------------------------------------------


@dataclass
class Peer:
    """A pinned client of the node's peering port, seeing every answer as it is."""

    identity: Identity
    port: int

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
        connection = http.client.HTTPSConnection(
            "127.0.0.1", self.port, context=client_context(self.identity), timeout=60
        )
        try:
            connection.request(method, path, body=data, headers=headers or {})
            answer = connection.getresponse()
            return answer.status, answer.read()
        finally:
            connection.close()

    def json(self, method: str, path: str, body: Any = None) -> Any:
        status, data = self.call(method, path, body)
        assert status == 200, (status, data)
        return json.loads(data)


@dataclass
class Site:
    node: NodeProcess
    filtered: Peer  # push and pull, filter Modality = MR
    pusher: Peer  # push only
    full: Peer  # push and pull, everything
    ct: dict[str, str]  # the CT study: StudyInstanceUID, patient id, study id, a SOP UID
    mr: dict[str, str]

    @property
    def spool(self) -> Path:
        return self.node.directory / "data" / "peer-spool"


def _stored(node: NodeProcess, data: bytes) -> dict[str, str]:
    answer = node.request("POST", "/instances", data).json()
    study = node.request("GET", f"/studies/{answer['ParentStudy']}").json()
    instance = node.request("GET", f"/instances/{answer['ID']}").json()
    return {
        "uid": study["MainDicomTags"]["StudyInstanceUID"],
        "patient": answer["ParentPatient"],
        "study": answer["ParentStudy"],
        "sop": instance["MainDicomTags"]["SOPInstanceUID"],
    }


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("hardening")
    identities = {name: load_or_create(root / name / "identity") for name in ("f", "p", "u")}
    port = free_port()
    peers: list[dict[str, object]] = [
        {
            "name": "filtered",
            "fingerprint": identities["f"].fingerprint,
            "mirror_deletions": True,
        },
        {"name": "pusher", "fingerprint": identities["p"].fingerprint, "pull": False},
        {"name": "full", "fingerprint": identities["u"].fingerprint},
    ]
    peers[0]["filter"] = {"Modality": "MR"}
    limits = (
        "max_upload_mb = 2\nspool_idle_s = 4\nmax_transfers_per_peer = 2\n"
        "\n[storage]\nmaximum_storage_size_mb = 3\nstable_age_s = 3600\n"
    )
    toml = peer_toml(port, peers).replace(f"port = {port}\n", f"port = {port}\n{limits}", 1)
    node = NodeProcess(root / "node", extra_toml=toml).start()
    try:
        ct = _stored(node, ct_bytes(0, patient=1))
        mr = _stored(node, mr_bytes(0, patient=2))
        yield Site(
            node,
            Peer(identities["f"], port),
            Peer(identities["p"], port),
            Peer(identities["u"], port),
            ct,
            mr,
        )
    finally:
        node.stop()


UNKNOWN = "1.2.826.0.1.3680043.8.498.999999999"


@pytest.mark.e2e
def test_a_filtered_peer_sees_only_matching_studies(site: Site) -> None:
    peer = site.filtered
    listed = peer.json("GET", "/peer/v1/changes?since=0&limit=100")["Changes"]
    assert {c["StudyInstanceUID"] for c in listed} == {site.mr["uid"]}
    # Asking for every modality does not widen the grant.
    wide = urllib.parse.quote(json.dumps({"Modality": "*"}))
    listed = peer.json("GET", f"/peer/v1/changes?since=0&query={wide}")["Changes"]
    assert {c["StudyInstanceUID"] for c in listed} == {site.mr["uid"]}
    for suffix in ("inventory", "annotations"):
        outside = peer.call("GET", f"/peer/v1/studies/{site.ct['uid']}/{suffix}")
        assert outside == peer.call("GET", f"/peer/v1/studies/{UNKNOWN}/{suffix}")
    assert peer.json("GET", f"/peer/v1/studies/{site.mr['uid']}/inventory")["Instances"]
    # An export of a study outside the grant answers exactly as one of a study we lack.
    outside = peer.call("POST", f"/peer/v1/studies/{site.ct['uid']}/export", {})
    assert outside[0] == 404
    assert outside == peer.call("POST", f"/peer/v1/studies/{UNKNOWN}/export", {})
    assert peer.call(
        "POST", f"/peer/v1/studies/{site.ct['uid']}/inventory", {"Instances": [site.ct["sop"]]}
    ) == (200, b'{"Instances": {}}')
    # Annotations it sends about a study outside its grant change nothing.
    document = {"Resources": {site.ct["patient"]: {"Level": "Patient", "Protected": True}}}
    answer = peer.json("POST", f"/peer/v1/studies/{site.ct['uid']}/annotations", document)
    assert answer == {"Added": 0}
    assert site.node.request("GET", f"/patients/{site.ct['patient']}/protected").body == b"0"
    # The unfiltered peer still sees everything.
    listed = site.full.json("GET", "/peer/v1/changes?since=0")["Changes"]
    assert {c["StudyInstanceUID"] for c in listed} == {site.ct["uid"], site.mr["uid"]}


@pytest.mark.e2e
def test_an_export_is_fetched_only_by_the_peer_that_made_it(site: Site) -> None:
    made = site.full.json("POST", f"/peer/v1/studies/{site.mr['uid']}/export", {})
    path = f"/peer/v1/exports/{made['Export']}"
    unknown = site.filtered.call("GET", f"/peer/v1/exports/{uuid.uuid4().hex}")
    assert unknown[0] == 404
    # The filtered peer may see this study, yet not another peer's export of it.
    assert site.filtered.call("GET", path) == unknown
    assert site.filtered.call("DELETE", path)[0] == 404
    status, data = site.full.call("GET", path)
    assert status == 200 and hashlib.sha256(data).hexdigest() == made["SHA256"]
    assert site.full.call("DELETE", path)[0] == 200
    # An export the filtered peer made is fetched again only while in its grant: the
    # grant's check is repeated at fetch time (here trivially: MR stays MR).
    own = site.filtered.json("POST", f"/peer/v1/studies/{site.mr['uid']}/export", {})
    assert site.filtered.call("GET", f"/peer/v1/exports/{own['Export']}")[0] == 200
    site.filtered.call("DELETE", f"/peer/v1/exports/{own['Export']}")


@pytest.mark.e2e
def test_a_push_only_peer_learns_only_about_instances_it_names(site: Site) -> None:
    peer = site.pusher
    inventory = f"/peer/v1/studies/{site.ct['uid']}/inventory"
    assert peer.call("GET", inventory)[0] == 403
    assert peer.call("GET", "/peer/v1/changes?since=0")[0] == 403
    named = peer.json("POST", inventory, {"Instances": [site.ct["sop"], "1.2.3.4.5"]})
    assert list(named["Instances"]) == [site.ct["sop"]]
    assert peer.json("POST", inventory, {"Instances": []}) == {"Instances": {}}
    assert peer.call("POST", inventory, {"Instances": "all"})[0] == 400


@pytest.mark.e2e
def test_pushed_annotations_touch_only_the_study_in_the_url(site: Site) -> None:
    peer = site.pusher
    url = f"/peer/v1/studies/{site.mr['uid']}/annotations"
    document = {
        "Resources": {
            site.ct["patient"]: {"Level": "Patient", "Protected": True},
            site.ct["study"]: {"Level": "Study", "Metadata": {"1024": "forged"}},
            site.mr["study"]: {"Level": "Study", "Metadata": {"1024": "fine"}},
        }
    }
    assert peer.json("POST", url, document) == {"Added": 1}
    assert site.node.request("GET", f"/patients/{site.ct['patient']}/protected").body == b"0"
    assert site.node.request("GET", f"/studies/{site.ct['study']}/metadata/1024").status == 404
    assert site.node.request("GET", f"/studies/{site.mr['study']}/metadata/1024").body == b"fine"
    # The study's own patient may be protected through it.
    mine = {"Resources": {site.mr["patient"]: {"Level": "Patient", "Protected": True}}}
    assert peer.json("POST", url, mine) == {"Added": 1}
    assert site.node.request("GET", f"/patients/{site.mr['patient']}/protected").body == b"1"


def _assert_clean(status: int, data: bytes, site: Site, expected: int) -> dict[str, Any]:
    assert status == expected, data
    answer = json.loads(data)
    text = data.decode()
    for leak in (str(site.node.directory), "/tmp", "Traceback", "Error(", "int()", "line 1"):
        assert leak not in text, text
    return dict(answer)


@pytest.mark.e2e
def test_errors_name_no_path_and_no_python(site: Site) -> None:
    url = f"/peer/v1/studies/{site.mr['uid']}/annotations"
    bad_key = {"Resources": {site.mr["study"]: {"Level": "Study", "Metadata": {"x": "v"}}}}
    answer = _assert_clean(*site.pusher.call("POST", url, bad_key), site, 400)
    assert answer["ErrorCode"] == "bad-annotations"
    _assert_clean(*site.pusher.call("POST", url, b"{not json"), site, 400)
    # A ZIP that is no ZIP, committed: refused, naming neither the spool nor Python.
    junk = b"PK\x03\x04" + b"\0" * 200
    digest = hashlib.sha256(junk).hexdigest()
    start = site.pusher.json(
        "POST", "/peer/v1/uploads", {"Study": site.mr["uid"], "Size": len(junk), "SHA256": digest}
    )
    upload = f"/peer/v1/uploads/{start['Upload']}"
    status, _ = site.pusher.call("PATCH", upload, junk, {"Upload-Offset": "0"})
    assert status == 200
    status, data = site.pusher.call("POST", f"{upload}/commit", b"{}")
    assert 400 <= status < 600
    _assert_clean(status, data, site, status)
    assert start["Upload"] not in data.decode()  # not even the spool file's name
    log = site.node.log.read_text()
    assert "refused" in log or "failed" in log  # the details went to the log instead


def _start(peer: Peer, size: int, study: str = "1.2.3") -> tuple[int, dict[str, Any]]:
    body = {"Study": study, "Size": size, "SHA256": "0" * 64}
    status, data = peer.call("POST", "/peer/v1/uploads", body)
    return status, json.loads(data)


@pytest.mark.e2e
def test_uploads_are_bounded_by_size_count_and_storage(site: Site) -> None:
    peer = site.pusher
    assert _start(peer, 2 * MiB + 1)[0] == 413  # max_upload_mb = 2
    status, first = _start(peer, MiB)
    assert status == 200
    upload = f"/peer/v1/uploads/{first['Upload']}"
    # Nothing is written beyond the declared size, at any offset.
    assert peer.call("PATCH", upload, b"x" * 10, {"Upload-Offset": str(MiB - 5)})[0] == 400
    assert peer.call("PATCH", upload, b"x", {"Upload-Offset": str(MiB + 1)})[0] == 409
    spooled = site.spool / "uploads" / f"{first['Upload']}.zip"
    assert spooled.stat().st_size == 0
    # Another peer may not write to, read or drop this upload.
    assert site.full.call("PATCH", upload, b"x", {"Upload-Offset": "0"})[0] == 404
    assert site.full.call("GET", upload)[0] == 404
    assert site.full.call("DELETE", upload)[0] == 404
    # Two uploads in progress per peer (max_transfers_per_peer = 2).
    status, second = _start(peer, MiB)
    assert status == 200
    assert _start(peer, 1)[0] == 429
    # The spool counts against the 3 MB storage limit: 2 MiB promised, 2 more do not fit.
    status, answer = _start(site.full, 2 * MiB)
    assert status == 507 and answer["ErrorCode"] == "insufficient-storage"
    for done in (first, second):
        assert peer.call("DELETE", f"/peer/v1/uploads/{done['Upload']}")[0] == 200
    status, third = _start(site.full, 2 * MiB)
    assert status == 200
    site.full.call("DELETE", f"/peer/v1/uploads/{third['Upload']}")


@pytest.mark.e2e
def test_abandoned_uploads_and_exports_are_removed_on_a_timer(site: Site) -> None:
    status, started = _start(site.pusher, 100)
    assert status == 200
    upload = f"/peer/v1/uploads/{started['Upload']}"
    assert site.pusher.call("PATCH", upload, b"x" * 50, {"Upload-Offset": "0"})[0] == 200
    export = site.full.json("POST", f"/peer/v1/studies/{site.mr['uid']}/export", {})
    files = [
        site.spool / "uploads" / f"{started['Upload']}.zip",
        site.spool / "exports" / f"{export['Export']}.zip",
    ]
    assert all(path.exists() for path in files)
    # spool_idle_s = 4: nobody starts another transfer, yet both go.
    deadline = time.monotonic() + 30
    while any(path.exists() for path in files) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not any(path.exists() for path in files)
    assert site.pusher.call("GET", upload)[0] == 404
    assert site.full.call("GET", f"/peer/v1/exports/{export['Export']}")[0] == 404


@pytest.mark.e2e
def test_a_filtered_peer_mirrors_deletions_only_inside_its_grant(site: Site) -> None:
    ct = _stored(site.node, ct_bytes(0, patient=3))
    mr = _stored(site.node, mr_bytes(0, patient=4))
    asked = {"IDs": [ct["study"], ct["patient"], mr["study"]]}
    assert site.filtered.json("POST", "/peer/v1/deletions", asked) == {"Deleted": 1}
    assert site.node.request("GET", f"/studies/{ct['study']}").status == 200
    assert site.node.request("GET", f"/studies/{mr['study']}").status == 404
