"""Two real nodes replicating over mutual TLS: push, pull, no ping-pong, refusals."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pydicom
import pytest

from tests.node.server import REPO, NodeProcess, free_port
from tests.peer.proxy import CuttingProxy
from tests.storage.helpers import ct_bytes, to_bytes

pytestmark = pytest.mark.e2e  # starts real node processes


def identity_of(directory: Path) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "identity.toml"
    config.write_text('data_dir = "data"\n')
    result = subprocess.run(
        [sys.executable, "-m", "pacsnode.node.cli", "--config", str(config), "identity"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    return str(value)


def peer_toml(port: int, peers: list[dict[str, object]]) -> str:
    lines = [f"\n[peering]\nport = {port}\n"]
    for peer in peers:
        lines.append("[[peers]]")
        lines.extend(f"{key} = {_toml_value(value)}" for key, value in peer.items())
    return "\n".join(lines) + "\n"


def linked_sites(
    tmp_path: Path,
    a_peer: dict[str, object] | None = None,
    b_peer: dict[str, object] | None = None,
    route: Callable[[int], int] = lambda port: port,
) -> tuple[NodeProcess, NodeProcess]:
    """Site A dials site B (through ``route``, e.g. a proxy); B lets A in. Not started."""
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    a_id, b_id = identity_of(a_dir), identity_of(b_dir)
    b_port = free_port()
    to_b = {"name": "siteb", "url": f"https://127.0.0.1:{route(b_port)}", "fingerprint": b_id}
    site_a = NodeProcess(a_dir, extra_toml=peer_toml(free_port(), [{**to_b, **(a_peer or {})}]))
    to_a = {"name": "sitea", "fingerprint": a_id}
    site_b = NodeProcess(b_dir, extra_toml=peer_toml(b_port, [{**to_a, **(b_peer or {})}]))
    return site_a, site_b


@pytest.fixture
def two_sites(tmp_path: Path) -> Iterator[tuple[NodeProcess, NodeProcess, str, str]]:
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    a_id, b_id = identity_of(a_dir), identity_of(b_dir)
    a_port, b_port = free_port(), free_port()
    site_a = NodeProcess(
        a_dir,
        extra_toml=peer_toml(
            a_port,
            [
                {"name": "siteb", "url": f"https://127.0.0.1:{b_port}", "fingerprint": b_id},
                {
                    "name": "impostor",
                    "url": f"https://127.0.0.1:{b_port}",
                    "fingerprint": "00" * 32,
                },
            ],
        ),
    )
    site_b = NodeProcess(
        b_dir, extra_toml=peer_toml(b_port, [{"name": "sitea", "fingerprint": a_id}])
    )
    site_a.start()
    site_b.start()
    yield site_a, site_b, a_id, b_id
    site_a.stop()
    site_b.stop()


def sync(node: NodeProcess, peer: str) -> dict:
    response = node.request("POST", f"/peers/{peer}/sync?wait", b"")
    return {"status": response.status, **response.json()}


def inventory(node: NodeProcess) -> set[str]:
    return {
        i["MainDicomTags"]["SOPInstanceUID"]
        for i in node.request("GET", "/instances?expand").json()
    }


def test_push_pull_and_no_ping_pong(two_sites: tuple[NodeProcess, NodeProcess, str, str]) -> None:
    site_a, site_b, _, b_id = two_sites
    assert site_a.request("GET", "/tools/identity").json()["Fingerprint"] != b_id
    for index in range(3):
        site_a.request("POST", "/instances", ct_bytes(index, patient=1))
    for index in range(2):
        site_b.request("POST", "/instances", ct_bytes(index, patient=2))

    first = sync(site_a, "siteb")
    assert first["status"] == 200 and first["State"] == "Success", first
    assert first["Content"]["PushedInstances"] == 3
    assert first["Content"]["PulledInstances"] == 2
    assert inventory(site_a) == inventory(site_b) and len(inventory(site_a)) == 5
    pushed = site_b.request(
        "POST", "/tools/find", {"Level": "Instance", "Query": {"PatientID": "PAT00001"}}
    ).json()
    assert len(pushed) == 3
    origin = site_b.request("GET", f"/instances/{pushed[0]}/metadata?expand").json()
    assert (origin["Origin"], origin["Peer"]) == ("Peer", "sitea")

    again = sync(site_a, "siteb")
    assert again["Content"]["PushedInstances"] == 0 and again["Content"]["PulledInstances"] == 0

    site_a.request("POST", "/instances", ct_bytes(3, patient=1))
    incremental = sync(site_a, "siteb")
    assert incremental["Content"]["PushedInstances"] == 1
    assert len(inventory(site_b)) == 6
    state = site_a.request("GET", "/peers/siteb/configuration").json()
    assert state["LastError"] is None and state["PushCursor"] > 0
    shown = subprocess.run(
        [sys.executable, "-m", "pacsnode.node.cli", "--config", str(site_a.config), "peers"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert shown.returncode == 0, shown.stderr
    assert (
        "siteb: url=https://127.0.0.1" in shown.stdout
        and "last-success=never" not in (shown.stdout.split("siteb:")[1].split("\n")[0])
    )


def test_wrong_fingerprint_is_refused(two_sites: tuple[NodeProcess, NodeProcess, str, str]) -> None:
    site_a, site_b, _, _ = two_sites
    site_a.request("POST", "/instances", ct_bytes(0))
    refused = sync(site_a, "impostor")
    assert refused["status"] == 502 and refused["State"] == "Failure"
    assert "presented certificate" in refused["ErrorDescription"]
    assert inventory(site_b) == set()


def test_unknown_client_is_refused(
    tmp_path: Path, two_sites: tuple[NodeProcess, NodeProcess, str, str]
) -> None:
    _, site_b, _, b_id = two_sites
    stranger_dir = tmp_path / "stranger"
    identity_of(stranger_dir)
    peering_port = int(site_b.config.read_text().split("[peering]\nport = ")[1].split()[0])
    stranger = NodeProcess(
        stranger_dir,
        extra_toml=peer_toml(
            free_port(),
            [{"name": "siteb", "url": f"https://127.0.0.1:{peering_port}", "fingerprint": b_id}],
        ),
    )
    stranger.start()
    try:
        stranger.request("POST", "/instances", ct_bytes(0, patient=7))
        refused = sync(stranger, "siteb")
        assert refused["State"] == "Failure" and "403" in refused["ErrorDescription"]
        assert inventory(site_b) == set()
    finally:
        stranger.stop()


def three_sites(tmp_path: Path, extra_b: str = "") -> list[NodeProcess]:
    """A pushes to B, B pushes to C, C pushes to A: a cycle, every link push-only."""
    names = ["a", "b", "c"]
    ids = {name: identity_of(tmp_path / name) for name in names}
    ports = {name: free_port() for name in names}
    nodes = []
    for index, name in enumerate(names):
        nxt, prev = names[(index + 1) % 3], names[(index - 1) % 3]
        peers = [
            {
                "name": nxt,
                "url": f"https://127.0.0.1:{ports[nxt]}",
                "fingerprint": ids[nxt],
                "pull": False,
            },
            {"name": prev, "fingerprint": ids[prev], "pull": False},
        ]
        extra = extra_b if name == "b" else ""
        nodes.append(NodeProcess(tmp_path / name, extra_toml=peer_toml(ports[name], peers) + extra))
    for node in nodes:
        node.start()
    return nodes


def test_a_cycle_settles_with_every_study_everywhere_once(tmp_path: Path) -> None:
    nodes = three_sites(tmp_path)
    try:
        for patient, node in enumerate(nodes, start=1):
            node.request("POST", "/instances", ct_bytes(0, patient=patient))
        names = ["b", "c", "a"]
        for _ in range(2):  # two laps carry everything around the cycle
            for node, nxt in zip(nodes, names, strict=True):
                assert sync(node, nxt)["State"] == "Success"
        inventories = [inventory(node) for node in nodes]
        assert inventories[0] == inventories[1] == inventories[2]
        assert len(inventories[0]) == 3
        for node, nxt in zip(nodes, names, strict=True):  # settled: nothing moves
            content = sync(node, nxt)["Content"]
            assert content["PushedInstances"] == 0
        assert all(n.request("GET", "/statistics").json()["CountInstances"] == 3 for n in nodes)
    finally:
        for node in nodes:
            node.stop()


def test_recycling_on_one_node_leaves_the_others_alone(tmp_path: Path) -> None:
    nodes = three_sites(tmp_path, extra_b="\n[storage]\nmaximum_patient_count = 1\n")
    site_a, site_b, _ = nodes
    try:
        for patient in (1, 2):
            site_a.request("POST", "/instances", ct_bytes(0, patient=patient))
        assert sync(site_a, "b")["State"] == "Success"
        assert site_b.request("GET", "/statistics").json()["CountPatients"] == 1
        assert sync(site_a, "b")["State"] == "Success"
        assert site_a.request("GET", "/statistics").json()["CountPatients"] == 2
    finally:
        for node in nodes:
            node.stop()


def test_a_tampered_zip_is_refused_whole(
    tmp_path: Path, two_sites: tuple[NodeProcess, NodeProcess, str, str]
) -> None:
    import io
    import zipfile

    from pacsnode.peer.client import PeerClient
    from pacsnode.peer.errors import PeerError
    from pacsnode.peer.identity import load_or_create
    from pacsnode.peer.tls import client_context

    site_a, site_b, _, b_id = two_sites
    site_a.request("POST", "/instances", ct_bytes(0))
    study = site_a.request("GET", "/studies?expand").json()[0]["MainDicomTags"]["StudyInstanceUID"]
    identity = load_or_create(tmp_path / "a" / "data" / "identity")
    port = int(site_b.config.read_text().split("[peering]\nport = ")[1].split()[0])
    client = PeerClient(f"https://127.0.0.1:{port}", b_id, client_context(identity))
    forged = io.BytesIO()
    with zipfile.ZipFile(forged, "w") as bad:
        bad.writestr(f"studies/{study}/metadata", b"not gzip")
        bad.writestr(f"studies/{study}/../../escape", b"x")
    with pytest.raises(PeerError, match="400"):
        client.upload(study, forged)
    assert inventory(site_b) == set()


def cut_link(tmp_path: Path, upstream: bool) -> tuple[NodeProcess, NodeProcess, CuttingProxy]:
    """Site A reaches site B only through a proxy that cuts transfers twice."""
    proxies: list[CuttingProxy] = []

    def through_proxy(port: int) -> int:
        proxies.append(CuttingProxy(port, cut_after=200_000, cuts=2, upstream=upstream))
        return proxies[0].port

    site_a, site_b = linked_sites(tmp_path, route=through_proxy)
    return site_a.start(), site_b.start(), proxies[0]


@pytest.mark.parametrize("upstream", [False, True], ids=["pull", "push"])
def test_an_interrupted_transfer_resumes(tmp_path: Path, upstream: bool) -> None:
    site_a, site_b, proxy = cut_link(tmp_path, upstream)
    sender = site_a if upstream else site_b
    try:
        for index in range(12):
            sender.request("POST", "/instances", ct_bytes(index, size=256))
        result = sync(site_a, "siteb")
        assert result["State"] == "Success", result
        assert proxy.cuts_made == 2
        assert inventory(site_a) == inventory(site_b) and len(inventory(site_a)) == 12
        moved = result["Content"]["PushedInstances" if upstream else "PulledInstances"]
        assert moved == 12
        traffic = result["Content"]["BytesSent" if upstream else "BytesReceived"]
        assert traffic > 200_000  # the proxy cut only after that much had passed
        again = sync(site_a, "siteb")["Content"]
        assert again["PushedInstances"] == again["PulledInstances"] == 0
        for node in (site_a, site_b):
            assert node.request("GET", "/statistics").json()["CountInstances"] == 12
    finally:
        proxy.close()
        site_a.stop()
        site_b.stop()


def test_a_filter_limits_replication_to_matching_studies(tmp_path: Path) -> None:
    site_a, site_b = linked_sites(
        tmp_path, a_peer={"bandwidth_kbps": 4000, "filter": {"Modality": "MR"}}
    )
    site_a.start()
    site_b.start()
    try:
        site_a.request("POST", "/instances", ct_bytes(0, patient=1))  # CT: stays home
        mr = pydicom.dcmread(io.BytesIO(ct_bytes(0, patient=2)))
        mr.Modality = "MR"
        site_a.request("POST", "/instances", to_bytes(mr))
        site_b.request("POST", "/instances", ct_bytes(0, patient=3))  # CT on B: not pulled
        result = sync(site_a, "siteb")
        assert result["State"] == "Success", result
        assert (result["Content"]["PushedInstances"], result["Content"]["PulledInstances"]) == (
            1,
            0,
        )
        assert inventory(site_b) >= {mr.SOPInstanceUID}
        assert len(inventory(site_b)) == 2 and len(inventory(site_a)) == 2
    finally:
        site_a.stop()
        site_b.stop()


def test_metadata_attachments_and_protection_travel(
    two_sites: tuple[NodeProcess, NodeProcess, str, str],
) -> None:
    site_a, site_b, _, _ = two_sites
    ids = site_a.request("POST", "/instances", ct_bytes(0)).json()
    study, patient = f"/studies/{ids['ParentStudy']}", f"/patients/{ids['ParentPatient']}"
    site_a.request("PUT", f"{study}/metadata/1024", "reviewed")
    site_a.request("PUT", f"{patient}/attachments/1030", b"%PDF report")
    site_a.request("PUT", f"{patient}/protected", "1")
    first = sync(site_a, "siteb")
    assert first["State"] == "Success", first
    assert site_b.request("GET", f"{study}/metadata/1024").body == b"reviewed"
    assert site_b.request("GET", f"{patient}/attachments/1030/data").body == b"%PDF report"
    assert site_b.request("GET", f"{patient}/protected").body == b"1"

    site_a.request("PUT", f"/instances/{ids['ID']}/metadata/1025", "later edit")
    site_b.request("PUT", f"{study}/metadata/1024", "B's own value")  # kept, not overwritten
    second = sync(site_a, "siteb")
    assert site_b.request("GET", f"/instances/{ids['ID']}/metadata/1025").body == b"later edit"
    assert site_b.request("GET", f"{study}/metadata/1024").body == b"B's own value"
    assert second["Content"]["PushedInstances"] == 0
    settled = sync(site_a, "siteb")
    assert settled["Content"]["Annotations"] == 0


def test_a_scheduled_sync_fires(tmp_path: Path) -> None:
    site_a, site_b = linked_sites(tmp_path, a_peer={"interval_s": 1})
    site_a.start()
    site_b.start()
    try:
        site_a.request("POST", "/instances", ct_bytes(0))
        deadline = time.monotonic() + 20
        while not inventory(site_b):
            assert time.monotonic() < deadline, "the scheduled sync never ran"
            time.sleep(0.2)
        # B indexes the study before A's job hears back and records its success
        while not any(
            job["Type"] == "PeerSync" and job["State"] == "Success"
            for job in site_a.request("GET", "/jobs?expand").json()
        ):
            assert time.monotonic() < deadline, "the scheduled sync never succeeded"
            time.sleep(0.1)
    finally:
        site_a.stop()
        site_b.stop()


def test_peers_command_needs_a_running_node(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text(f'data_dir = "data"\n[http]\nport = {free_port()}\n')
    shown = subprocess.run(
        [sys.executable, "-m", "pacsnode.node.cli", "--config", str(config), "peers"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert shown.returncode == 2 and "no node answers" in shown.stderr


def test_deletions_are_mirrored_only_where_both_sides_agree(tmp_path: Path) -> None:
    site_a, site_b = linked_sites(
        tmp_path, a_peer={"mirror_deletions": True}, b_peer={"mirror_deletions": True}
    )
    site_a.start()
    site_b.start()
    try:
        first = site_a.request("POST", "/instances", ct_bytes(0, patient=1)).json()
        site_a.request("POST", "/instances", ct_bytes(0, patient=2))
        assert sync(site_a, "siteb")["State"] == "Success"
        assert len(inventory(site_b)) == 2
        assert site_a.request("DELETE", f"/patients/{first['ParentPatient']}").status == 200
        result = sync(site_a, "siteb")
        assert result["State"] == "Success" and result["Content"]["Deletions"] == 1
        assert site_b.request("GET", f"/patients/{first['ParentPatient']}").status == 404
        assert len(inventory(site_b)) == 1
        settled = sync(site_a, "siteb")["Content"]
        assert settled["Deletions"] == 0 and settled["PulledInstances"] == 0
    finally:
        site_a.stop()
        site_b.stop()


def test_deletions_stay_local_without_mirroring(
    two_sites: tuple[NodeProcess, NodeProcess, str, str],
) -> None:
    site_a, site_b, _, _ = two_sites
    first = site_a.request("POST", "/instances", ct_bytes(0)).json()
    sync(site_a, "siteb")
    site_a.request("DELETE", f"/studies/{first['ParentStudy']}")
    result = sync(site_a, "siteb")
    assert result["State"] == "Success"
    assert len(inventory(site_b)) == 1
    assert inventory(site_a) == set()  # and not pulled back: nothing new happened on B


def test_store_sends_given_resources_now(
    two_sites: tuple[NodeProcess, NodeProcess, str, str],
) -> None:
    site_a, site_b, _, _ = two_sites
    first = site_a.request("POST", "/instances", ct_bytes(0, patient=1)).json()
    site_a.request("POST", "/instances", ct_bytes(0, patient=2))
    stored = site_a.request("POST", "/peers/siteb/store", first["ParentStudy"])
    assert stored.status == 200 and stored.json()["State"] == "Success", stored.body
    assert stored.json()["Content"]["PushedInstances"] == 1
    assert len(inventory(site_b)) == 1  # only the study asked for
    assert site_a.request("POST", "/peers/siteb/store", "nonsense-id").status == 404
