"""Acknowledging on the minimum, converting in the background (node/conversion.py).

The same instances stored by a node that converts before acknowledging and by one that
converts after must end the same: index records, sizes, metadata, bytes served."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from benchmarks.synthetic import SeriesSpec, make_instance, p10, small_instances
from pacsnode.node.core import NodeCore
from pacsnode.node.ids import Level
from pacsnode.node.index import Index, Origin, OriginKind
from pacsnode.node.index.maintags import INDEXED_TAGS
from pacsnode.node.settings import CoreSettings
from pacsnode.node.verify import verify
from pacsnode.storage.limits import ArchiveLimits
from pacsnode.storage.received import is_received_digest, receive_instance
from pacsnode.storage.store import StudyStore
from tests.node.conftest import MakeCore
from tests.storage.helpers import ct_instance, to_bytes

Opener = Callable[..., NodeCore]


@pytest.fixture
def open_core(tmp_path: Path, make_core: MakeCore) -> Opener:
    """A core converting in the background, in its own data directory."""

    def open_one(name: str, **settings: Any) -> NodeCore:
        # one worker whatever the cores: without any, conversion is not put off
        settings.setdefault("ingest_workers", 1)
        return make_core(
            data_dir=tmp_path / name, stable_age_s=3600, background=True, search=False, **settings
        )

    return open_one


def instances() -> list[bytes]:
    ct = [p10(make_instance(SeriesSpec(7, 1, 1, 1000, 128), index)) for index in range(4)]
    return [*list(small_instances(2, per_series=3)), *ct]


def records(core: NodeCore, ids: list[str]) -> list[dict[str, Any]]:
    shown = []
    for resource_id in ids:
        record = core.index.resource(resource_id)
        assert record is not None
        shown.append({k: v for k, v in record.items() if k not in ("created", "last_update")})
    return shown


def converted(core: NodeCore, instance_ids: list[str]) -> None:
    """Wait until the converter has recorded every instance."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        digests = [core.index.resource(i)["digest"] for i in instance_ids]  # type: ignore[index]
        if not any(is_received_digest(d) for d in digests):
            return
        time.sleep(0.02)
    raise AssertionError("the converter did not record every instance")


def test_both_ways_of_acknowledging_end_the_same(open_core: Opener) -> None:
    after = open_core("after")
    before = open_core("before", background_conversion=False)
    files = instances()
    results = [(after.ingest(data), before.ingest(data)) for data in files]
    assert all(a.ids == b.ids for a, b in results)
    instance_ids = [a.ids[Level.INSTANCE] for a, _ in results]
    converted(after, instance_ids)
    every_id = sorted({i for a, _ in results for i in a.ids.values()})
    assert records(after, every_id) == records(before, every_id)
    stored = {k: v for k, v in after.statistics().items() if k != "IndexDiskSize"}
    assert stored == {k: v for k, v in before.statistics().items() if k != "IndexDiskSize"}
    for instance_id in instance_ids:
        shown = after.annotations.metadata(instance_id)
        expected = before.annotations.metadata(instance_id)
        assert shown.keys() == expected.keys()
        assert shown["PixelDataOffset"] == expected["PixelDataOffset"]
        ref = after.instance_ref(instance_id)
        assert after.instance_p10(ref) == before.instance_p10(before.instance_ref(instance_id))
    assert verify(after) == []


def test_a_copy_sent_again_is_told_apart_by_its_converted_content(open_core: Opener) -> None:
    core = open_core("again")
    data = instances()[0]
    first = core.ingest(data)
    again = core.ingest(data)  # received, maybe not converted yet
    assert again.status.value == "AlreadyStored"
    assert again.ids == first.ids
    converted(core, [first.ids[Level.INSTANCE]])
    assert core.statistics()["CountInstances"] == 1


def test_an_acknowledged_instance_that_cannot_be_converted_leaves_the_index(
    open_core: Opener, caplog: pytest.LogCaptureFixture
) -> None:
    core = open_core("nan")
    dataset = ct_instance(0)
    dataset.add_new(0x00189087, "FD", float("nan"))  # parsed, but not DICOM JSON
    result = core.ingest(to_bytes(dataset))
    instance_id = result.ids[Level.INSTANCE]
    deadline = time.monotonic() + 30
    while core.exists(instance_id) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not core.exists(instance_id)
    assert "cannot be converted" in caplog.text
    deleted = [c for c in core.changes(0, 100).changes if c["ChangeType"] == "Deleted"]
    assert {c["ID"] for c in deleted} >= {instance_id}
    assert [p.suffix for p in (core.settings.data_dir / "quarantine").iterdir()] == [".dcm"]


def test_a_restart_converts_what_was_left_received_and_keeps_its_origin(
    tmp_path: Path,
) -> None:
    """What a crash leaves: received files indexed as received, no converter."""
    data_dir = tmp_path / "crashed"
    files = instances()
    origin = Origin(kind=OriginKind.DICOM, remote_aet="MODALITY", called_aet="PACSNODE")
    store = StudyStore(data_dir)
    store.open()
    index = Index(data_dir / "index")
    try:
        for data in files:
            received = receive_instance(data, ArchiveLimits(), INDEXED_TAGS)
            assert store.put_received(received) is not None
            index.add_instances([(received.instance, index.ids_of(received.instance))], origin)
    finally:
        index.close()
        store.close()
    core = NodeCore(CoreSettings(data_dir=data_dir, stable_age_s=3600))
    report = core.open(background=False)  # no converter: recovery converts
    try:
        assert report.indexed == 0  # recorded as converted, not indexed again
        refs = core.index.instances_of(core.find(Level.INSTANCE, {}))
        assert len(refs) == len(files)
        for ref in refs:
            record = core.index.resource(ref.id)
            assert record is not None and not is_received_digest(record["digest"])
            metadata = core.annotations.metadata(ref.id)
            assert (metadata["Origin"], metadata["RemoteAET"]) == ("DicomProtocol", "MODALITY")
        # converted: each received file has its staging ZIP (both stay until the seal)
        assert all(path.with_suffix(".zip").exists() for path in data_dir.rglob("*.dcm"))
        assert verify(core) == []
    finally:
        core.close()


def test_sizes_read_right_after_an_ingest_are_the_stored_ones(open_core: Opener) -> None:
    """A script reading sizes just after its upload sees them once, as stored (Orthanc's
    own tests compare sizes read one after the other)."""
    after = open_core("after")
    before = open_core("before", background_conversion=False)
    for data in instances():
        instance_id = after.ingest(data).ids[Level.INSTANCE]
        before.ingest(data)
        assert after.statistics()["TotalDiskSize"] == before.statistics()["TotalDiskSize"]
        sizes = after.resource_statistics(instance_id, Level.INSTANCE)
        assert sizes == before.resource_statistics(instance_id, Level.INSTANCE)


def test_without_worker_processes_instances_are_converted_before_the_answer(
    open_core: Opener,
) -> None:
    core = open_core("one-core", ingest_workers=0)
    result = core.ingest(instances()[0])
    record = core.index.resource(result.ids[Level.INSTANCE])
    assert record is not None and not is_received_digest(record["digest"])
    assert list(core.settings.data_dir.rglob("*.dcm")) == []
