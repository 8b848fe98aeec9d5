"""The ReplicaClient contract, run against every implementation with a real far end.

- ``pacsnode``: ``PeerClient`` against a ``pacsnode serve`` peering listener over
  mutual TLS, pinned both ways;
- ``orthanc``: ``OrthancClient`` against Debian's Orthanc.

The near end is a real node core (``NodePeering`` over ``NodeCore``) on a fresh
directory per test. Clients are made by ``open_replica`` from the same
``PeerSettings`` a configuration gives. Each test stores its own patients, so
the far ends can be shared by the whole module.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pacsnode.node.core import NodeCore
from pacsnode.node.peering import NodePeering
from pacsnode.node.settings import CoreSettings, PeerSettings
from pacsnode.peer.clients import open_replica
from pacsnode.peer.errors import PeerError, Unsupported, UntrustedPeer
from pacsnode.peer.identity import Identity, load_or_create, normalize_fingerprint
from pacsnode.peer.interface import MergeSummary
from pacsnode.peer.replica import ReplicaClient
from tests.node.server import NodeProcess, free_port
from tests.peer.test_orthanc import CREDENTIALS, ORTHANC, OrthancProcess
from tests.peer.test_peer_state import mr_bytes
from tests.peer.test_replication import peer_toml
from tests.storage.helpers import ct_bytes, ct_instance

pytestmark = pytest.mark.e2e  # starts real node processes

UNKNOWN_STUDY = "1.2.826.0.1.3680043.8.498.424242424242"


@dataclasses.dataclass
class Remote:
    """A running far end: how to reach it, and how to store a file on it directly."""

    settings: PeerSettings
    store: Callable[[bytes], object]
    fingerprint: str = ""  # what a pacsnode far end presents


@pytest.fixture(scope="module")
def identity(tmp_path_factory: pytest.TempPathFactory) -> Identity:
    """The near end's TLS identity, pinned by the pacsnode far end."""
    return load_or_create(tmp_path_factory.mktemp("near") / "identity")


@pytest.fixture(scope="module")
def pacsnode_remote(
    tmp_path_factory: pytest.TempPathFactory, identity: Identity
) -> Iterator[Remote]:
    port = free_port()
    near = {"name": "near", "fingerprint": identity.fingerprint, "mirror_deletions": True}
    # No study turns stable during the tests: that would be one more change in the feed.
    quiet = "\n[storage]\nstable_age_s = 3600\n"
    node = NodeProcess(
        tmp_path_factory.mktemp("pacsnode"), extra_toml=peer_toml(port, [near]) + quiet
    )
    node.start()
    try:
        fingerprint = node.request("GET", "/tools/identity").json()["Fingerprint"]
        settings = PeerSettings(
            name="far", url=f"https://127.0.0.1:{port}", fingerprint=fingerprint
        )

        def store(data: bytes) -> object:
            answer = node.request("POST", "/instances", data)
            assert answer.status == 200, answer.body
            return answer.json()

        yield Remote(settings, store, fingerprint)
    finally:
        node.stop()


@pytest.fixture(scope="module")
def orthanc_remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Remote]:
    if not Path(ORTHANC).exists():
        pytest.skip("Orthanc is not installed")
    server = OrthancProcess(tmp_path_factory.mktemp("orthanc"))
    try:
        settings = PeerSettings(
            name="far",
            kind="orthanc",
            url=f"http://127.0.0.1:{server.port}",
            username=CREDENTIALS[0],
            password=CREDENTIALS[1],
        )
        yield Remote(settings, lambda data: server.call("POST", "/instances", data))
    finally:
        server.stop()


@pytest.fixture(params=["pacsnode", "orthanc"])
def remote(request: pytest.FixtureRequest) -> Remote:
    return request.getfixturevalue(f"{request.param}_remote")


@pytest.fixture
def client(remote: Remote, identity: Identity) -> Iterator[ReplicaClient]:
    replica = open_replica(remote.settings, identity)
    yield replica
    replica.close()


@pytest.fixture
def local(tmp_path: Path) -> Iterator[NodePeering]:
    core = NodeCore(CoreSettings(data_dir=tmp_path / "near"))
    core.open(background=False)
    try:
        yield NodePeering(core)
    finally:
        core.close()


def study_of(patient: int) -> str:
    return str(ct_instance(0, patient=patient).StudyInstanceUID)


def sop_of(index: int, patient: int) -> str:
    return str(ct_instance(index, patient=patient).SOPInstanceUID)


def walk(
    client: ReplicaClient, since: int, query: dict[str, str] | None = None
) -> tuple[int, set[str]]:
    """Page through the far end's feed from ``since``, one change per page, to its end."""
    seen: set[str] = set()
    for _ in range(1000):
        batch = client.study_changes(since, 1, query)
        assert batch.last >= since
        seen.update(change.study_uid for change in batch.changes)
        since = batch.last
        if batch.done:
            return since, seen
    raise AssertionError("the feed never said it was done")


def test_changes_after_a_cursor_list_the_studies_stored_since(
    remote: Remote, client: ReplicaClient
) -> None:
    for index in range(2):
        remote.store(ct_bytes(index, patient=11))
    cursor, seen = walk(client, 0)
    assert study_of(11) in seen
    remote.store(ct_bytes(0, patient=12))
    _, after = walk(client, cursor)
    assert study_of(12) in after and study_of(11) not in after


def test_a_query_lists_only_matching_studies(remote: Remote, client: ReplicaClient) -> None:
    remote.store(ct_bytes(0, patient=13))
    remote.store(mr_bytes(0, patient=14))
    _, seen = walk(client, 0, {"Modality": "MR"})
    assert study_of(14) in seen and study_of(13) not in seen


def test_the_inventory_of_an_unknown_study_is_empty(client: ReplicaClient) -> None:
    assert client.inventory(UNKNOWN_STUDY) == {}


def test_pushed_instances_appear_once(client: ReplicaClient, local: NodePeering) -> None:
    for index in range(2):
        local.store_p10(ct_bytes(index, patient=15), "nobody")
    study, mine = study_of(15), local.inventory(study_of(15))
    assert len(mine) == 2

    first = client.push_instances(local, study, set(mine))
    assert sorted(first.added) == sorted(mine) and not first.conflicts
    theirs = client.inventory(study)
    assert set(theirs) == set(mine)
    assert all(digest in ("", mine[uid]) for uid, digest in theirs.items())

    again = client.push_instances(local, study, set(mine))
    assert again.added == [] and sorted(again.already_stored) == sorted(mine)
    assert client.inventory(study) == theirs
    assert client.push_instances(local, study, set()) == MergeSummary(study)


def test_pulled_instances_arrive_once(
    remote: Remote, client: ReplicaClient, local: NodePeering
) -> None:
    for index in range(2):
        remote.store(ct_bytes(index, patient=16))
    study = study_of(16)
    theirs = client.inventory(study)
    assert set(theirs) == {sop_of(0, 16), sop_of(1, 16)}

    one = client.pull_instances(local, study, {sop_of(0, 16)}, "far")
    assert one.added == [sop_of(0, 16)]
    both = client.pull_instances(local, study, set(theirs), "far")
    assert both.added == [sop_of(1, 16)] and both.already_stored == [sop_of(0, 16)]
    assert set(local.inventory(study)) == set(theirs)

    again = client.pull_instances(local, study, set(theirs), "far")
    assert again.added == [] and sorted(again.already_stored) == sorted(theirs)
    assert set(local.inventory(study)) == set(theirs)
    assert client.pull_instances(local, study, set(), "far") == MergeSummary(study)
    gone = client.pull_instances(local, UNKNOWN_STUDY, {sop_of(0, 16)}, "far")
    assert gone == MergeSummary(UNKNOWN_STUDY)


def test_deletions_page_to_an_end_or_are_unsupported(client: ReplicaClient) -> None:
    try:
        since = 0
        for _ in range(1000):
            batch = client.deletions(since, 50)
            since = batch.last
            if batch.done:
                break
        else:
            raise AssertionError("the deletions feed never said it was done")
        assert client.send_deletions(["-".join(["0" * 8] * 5)]) == 0  # nothing to delete
    except Unsupported as exc:
        assert not exc.transient


def test_annotations_of_a_plain_study_are_none_and_adding_none_adds_nothing(
    remote: Remote, client: ReplicaClient
) -> None:
    remote.store(ct_bytes(0, patient=17))
    document = client.annotations(study_of(17))
    assert isinstance(document, dict) and not document.get("Resources")
    assert client.send_annotations(study_of(17), document) == 0


def test_an_unreachable_peer_fails_transiently(remote: Remote, identity: Identity) -> None:
    scheme = remote.settings.url.split(":")[0]  # type: ignore[union-attr]
    nowhere = dataclasses.replace(remote.settings, url=f"{scheme}://127.0.0.1:{free_port()}")
    replica = open_replica(nowhere, identity)
    try:
        for call in (lambda: replica.inventory(UNKNOWN_STUDY), lambda: walk(replica, 0)):
            with pytest.raises(PeerError) as failed:
                call()
            assert failed.value.transient
    finally:
        replica.close()


@pytest.mark.parametrize("remote", ["pacsnode"], indirect=True)
def test_a_wrong_pinned_fingerprint_is_untrusted(remote: Remote, identity: Identity) -> None:
    impostor = dataclasses.replace(remote.settings, fingerprint="00" * 32)
    replica = open_replica(impostor, identity)
    try:
        with pytest.raises(UntrustedPeer) as refused:
            replica.inventory(UNKNOWN_STUDY)
        assert not refused.value.transient
        seen = refused.value.fingerprint
        assert seen is not None
        assert normalize_fingerprint(seen) == normalize_fingerprint(remote.fingerprint)
    finally:
        replica.close()
