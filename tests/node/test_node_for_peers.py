"""The contract of ``peer.interface.NodeForPeers``, run against every implementation.

Today there is one, the node's own (:class:`NodePeering` over a real, opened
:class:`NodeCore`); a second one (say, a node on another storage plugin) joins by
adding a fixture parameter. Each test states one promise of the interface's
docstrings: cursors and pages, inventories, ZIPs that merge idempotently,
annotations that only add, deletions that only mirror what users did.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pacsnode.node.core import NodeCore
from pacsnode.node.ids import Level
from pacsnode.node.peering import NodePeering
from pacsnode.node.settings import CoreSettings
from pacsnode.peer.interface import NodeForPeers
from pacsnode.peer.sync import plan_missing
from pacsnode.storage.errors import StorageError
from tests.storage.helpers import ct_bytes

OpenNode = Callable[[str], tuple[NodeForPeers, NodeCore]]


def _node_peering(tmp_path: Path) -> Iterator[OpenNode]:
    opened: list[NodeCore] = []

    def open_node(name: str) -> tuple[NodeForPeers, NodeCore]:
        core = NodeCore(CoreSettings(data_dir=tmp_path / name, stable_age_s=0))
        core.open(background=False)
        opened.append(core)
        return NodePeering(core), core

    yield open_node
    for core in opened:
        if core.is_open:
            core.close()


IMPLEMENTATIONS = {"NodePeering": _node_peering}


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def open_node(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OpenNode]:
    yield from IMPLEMENTATIONS[request.param](tmp_path)


def _study_of(core: NodeCore, patient: int = 1, count: int = 3) -> str:
    uid = ""
    for index in range(count):
        uid = core.ingest(ct_bytes(index, patient=patient)).instance.study_uid
    return uid


def _zip_of(node: NodeForPeers, study_uid: str, sops: set[str] | None, path: Path) -> Path:
    with open(path, "wb") as handle:
        node.write_study(study_uid, sops, handle)
    return path


def test_study_changes_page_to_the_end_and_resume_from_a_cursor(open_node: OpenNode) -> None:
    node, core = open_node("a")
    first = _study_of(core, patient=1)
    second = _study_of(core, patient=2)
    seen: list[str] = []
    cursor, done, pages = 0, False, 0
    while not done:
        batch = node.study_changes(cursor, 2)
        assert batch.last >= cursor
        seen.extend(change.study_uid for change in batch.changes)
        cursor, done, pages = batch.last, batch.done, pages + 1
        assert pages < 50, "paging must terminate"
    # a study may come again on a later page (it changed again); never out of order
    assert list(dict.fromkeys(seen)) == [first, second]
    assert node.study_changes(cursor, 10).changes == []
    third = _study_of(core, patient=3, count=1)
    assert [c.study_uid for c in node.study_changes(cursor, 10).changes] == [third]


def test_study_changes_honour_a_query(open_node: OpenNode) -> None:
    node, core = open_node("a")
    _study_of(core, patient=1)
    wanted = _study_of(core, patient=2)
    batch = node.study_changes(0, 100, {"PatientID": "PAT00002"})
    assert [c.study_uid for c in batch.changes] == [wanted]
    assert node.study_changes(0, 100, {"Modality": "MR"}).changes == []


def test_inventory_is_empty_for_an_unknown_study(open_node: OpenNode) -> None:
    node, _ = open_node("a")
    assert node.inventory("1.2.3.4") == {}


def test_a_written_zip_merges_once_and_then_adds_nothing(
    open_node: OpenNode, tmp_path: Path
) -> None:
    source, source_core = open_node("a")
    target, target_core = open_node("b")
    study = _study_of(source_core)
    mine = source.inventory(study)
    assert len(mine) == 3 and all(mine.values())
    part = set(sorted(mine)[:2])
    first = target.merge_study(_zip_of(source, study, part, tmp_path / "part.zip"), "a")
    assert sorted(first.added) == sorted(part)
    assert plan_missing(mine, target.inventory(study)) == set(mine) - part
    whole = _zip_of(source, study, None, tmp_path / "whole.zip")
    second = target.merge_study(whole, "a")
    assert len(second.added) == 1 and sorted(second.already_stored) == sorted(part)
    again = target.merge_study(whole, "a")
    assert again.added == [] and len(again.already_stored) == 3
    assert target.inventory(study) == mine
    assert target_core.statistics()["CountInstances"] == 3


def test_an_open_study_zip_is_a_readable_archive(open_node: OpenNode) -> None:
    node, core = open_node("a")
    study = _study_of(core)
    with node.open_study_zip(study, None) as archive:
        names = zipfile.ZipFile(io.BytesIO(archive.read())).namelist()
    assert names and all(name.startswith(f"studies/{study}/") for name in names)


def test_a_damaged_zip_is_refused_and_stores_nothing(open_node: OpenNode, tmp_path: Path) -> None:
    node, core = open_node("a")
    path = tmp_path / "damaged.zip"
    path.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(StorageError):
        node.merge_study(path, "a")
    assert core.statistics()["CountInstances"] == 0


def test_annotations_travel_and_only_add(open_node: OpenNode, tmp_path: Path) -> None:
    source, source_core = open_node("a")
    target, target_core = open_node("b")
    study = _study_of(source_core)
    patient = source_core.list_ids(Level.PATIENT)[0]
    source_core.annotations.set_metadata(patient, "1024", "from a")
    source_core.annotations.put_attachment(patient, "1025", b"report")
    source_core.annotations.set_protected(patient, True)
    target.merge_study(_zip_of(source, study, None, tmp_path / "s.zip"), "a")
    target_core.annotations.set_metadata(patient, "1024", "edited on b")
    document = source.annotations(study)
    assert target.apply_annotations(document) == 2  # the attachment and the protection
    assert target_core.annotations.get_metadata(patient, "1024") == "edited on b"
    assert target_core.annotations.attachment_data(patient, "1025") == b"report"
    assert target_core.annotations.is_protected(patient)
    assert target.apply_annotations(document) == 0


def test_only_users_deletions_are_offered_and_mirroring_is_idempotent(
    open_node: OpenNode,
) -> None:
    node, core = open_node("a")
    _study_of(core, patient=1)
    _study_of(core, patient=2)
    first, second = sorted(core.list_ids(Level.PATIENT))
    core.delete(first)
    offered = node.deletions(0, 100)
    assert offered.done and {d.resource_id for d in offered.deletions} >= {first}
    assert node.mirror_deletions([second, second, "0" * 8 + "-" + "0" * 32], "b") == 1
    assert node.mirror_deletions([second], "b") == 0
    after = node.deletions(offered.last, 100)  # a mirrored deletion goes on along a chain
    assert second in {d.resource_id for d in after.deletions}


def test_instance_files_are_p10_of_what_is_stored(open_node: OpenNode) -> None:
    node, core = open_node("a")
    study = _study_of(core)
    sops = set(node.inventory(study))
    files = dict(node.instance_files(study, sops | {"9.9.9"}))
    assert set(files) == sops
    assert all(data[128:132] == b"DICM" for data in files.values())


def test_store_p10_says_whether_it_was_new(open_node: OpenNode) -> None:
    node, core = open_node("a")
    assert node.store_p10(ct_bytes(0), "orthanc") is True
    assert node.store_p10(ct_bytes(0), "orthanc") is False
    assert core.statistics()["CountInstances"] == 1


def test_cursors_are_durable_and_start_at_zero(open_node: OpenNode, tmp_path: Path) -> None:
    node, core = open_node("a")
    assert node.load_cursor("b:pull") == 0
    node.save_cursor("b:pull", 42)
    node.save_cursor("b:pull", 42)
    core.close()
    reopened, _ = open_node("a")
    assert reopened.load_cursor("b:pull") == 42
