"""The search feeder in a real core: it follows the change feed, and rebuilds from the
archive when the index is fresh, ahead of the feed, or behind a cleared feed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom.data import get_testdata_file

from pacsnode.node.core import NodeCore
from pacsnode.node.errors import SearchUnavailable
from pacsnode.node.ids import Level
from pacsnode.node.index import ChangePage, InstanceRef
from pacsnode.node.search.engine import SearchIndex
from pacsnode.node.search.feeder import (
    Feeder,
    RebuildStopped,
    document_of,
    feed_was_cleared,
    needs_rebuild,
    rebuild,
)
from pacsnode.node.search.query_language import parse
from pacsnode.node.settings import CoreSettings, SearchSettings
from tests.node.search.conftest import dicom_json
from tests.storage.helpers import ct_bytes


def opened(data_dir: Path, search: bool = True) -> NodeCore:
    core = NodeCore(CoreSettings(data_dir, search=SearchSettings(commit_interval_s=0.05)))
    core.open(background=False, search=search)
    return core


def caught_up(core: NodeCore) -> None:
    deadline = time.monotonic() + 10
    while core.search_lag() != 0:
        assert time.monotonic() < deadline, f"lag stays at {core.search_lag()}"
        time.sleep(0.02)


@pytest.fixture
def core(tmp_path: Path) -> Iterator[NodeCore]:
    node = opened(tmp_path / "data")
    yield node
    node.close()


def mr_path() -> Path:
    path = get_testdata_file("MR_small.dcm")
    assert path is not None
    return Path(path)


def test_new_and_deleted_instances_follow_the_feed(core: NodeCore) -> None:
    for index in range(3):
        core.ingest(ct_bytes(index))
    mr = core.ingest(mr_path())
    caught_up(core)
    assert len(core.search("Modality:CT", Level.INSTANCE, 100)) == 3
    assert core.search("Modality:MR", Level.INSTANCE, 100) == [mr.ids[Level.INSTANCE]]
    assert len(core.search("Modality:CT", Level.SERIES, 100)) == 1
    core.delete(mr.ids[Level.INSTANCE])
    caught_up(core)
    assert core.search("Modality:MR", Level.INSTANCE, 100) == []


def test_a_restart_keeps_the_index_and_a_cleared_feed_rebuilds_it(tmp_path: Path) -> None:
    core = opened(tmp_path / "data")
    core.ingest(ct_bytes(0))
    caught_up(core)
    core.close()
    core = opened(tmp_path / "data", search=False)  # changes the feeder does not see
    core.ingest(ct_bytes(1))
    core.clear_changes()
    core.ingest(ct_bytes(2))
    with pytest.raises(SearchUnavailable):
        core.search("Modality:CT", Level.INSTANCE, 100)
    core.close()
    core = opened(tmp_path / "data")
    try:
        caught_up(core)
        assert len(core.search("Modality:CT", Level.INSTANCE, 100)) == 3
    finally:
        core.close()


def test_rebuild_from_the_archive(tmp_path: Path) -> None:
    core = opened(tmp_path / "data", search=False)
    for index in range(2):
        core.ingest(ct_bytes(index))
    assert core.rebuild_search() == 2
    core.close()
    core = opened(tmp_path / "data")
    try:
        assert core.search_lag() == 0  # rebuilt up to the feed's end: nothing to replay
        assert len(core.search("*", Level.INSTANCE, 100)) == 2
    finally:
        core.close()


def test_when_to_rebuild() -> None:
    assert needs_rebuild(0, 5) and needs_rebuild(9, 5)
    assert not needs_rebuild(0, 0) and not needs_rebuild(5, 5) and not needs_rebuild(3, 5)
    page = ChangePage([{"Seq": 4}], True, 4)
    assert not feed_was_cleared(page, 3, 4)
    assert feed_was_cleared(page, 2, 4)
    assert feed_was_cleared(ChangePage([], True, 3), 3, 7)
    assert not feed_was_cleared(ChangePage([], True, 3), 3, 3)


class Source:
    """A feed and an archive in memory, with one instance that cannot be read."""

    def __init__(self, datasets: list[dict[str, Any]]) -> None:
        self.by_id = {document_of(d).ids.instance: d for d in datasets}
        #: instances waiting for their background conversion
        self.converting_ids: set[str] = set()
        # the index starts past the first change, so that it follows the feed (a fresh
        # one would be rebuilt from the archive instead)
        self.feed = [{"Seq": 1, "ChangeType": "StableStudy", "ResourceType": "Study", "ID": ""}]
        self.feed += [
            {"Seq": n + 2, "ChangeType": "NewInstance", "ResourceType": "Instance", "ID": i}
            for n, i in enumerate(["broken", *self.by_id])
        ]

    def changes(self, since: int = 0, limit: int = 100) -> ChangePage:
        entries = [e for e in self.feed if e["Seq"] > since][:limit]
        return ChangePage(entries, len(entries) < limit, entries[-1]["Seq"] if entries else since)

    def last_change(self) -> int:
        return len(self.feed)

    def instance_ref(self, instance_id: str) -> InstanceRef:
        return InstanceRef(instance_id, "", "", "")

    def converting(self, instance_id: str) -> bool:
        return instance_id in self.converting_ids

    def instance_json(self, ref: InstanceRef) -> dict[str, Any]:
        if ref.id == "broken":
            raise TypeError("not what an instance's JSON looks like")
        return self.by_id[ref.id]

    def study_uids_on_disk(self) -> list[str]:
        return ["1.2.3"]

    def study_metadata(self, study_uid: str) -> list[dict[str, Any]]:
        return list(self.by_id.values())


def test_an_instance_that_cannot_be_read_is_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = Source([dicom_json("CT_small.dcm"), dicom_json("MR_small.dcm")])
    index = SearchIndex(tmp_path / "search")
    index.commit(last_change=1)
    feeder = Feeder(index, source, commit_interval_s=0.01)
    feeder.start()
    try:
        deadline = time.monotonic() + 10
        while feeder.lag():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert len(index.search(parse("*"), Level.INSTANCE)) == 2
        assert "instance broken left out" in caplog.text
    finally:
        feeder.stop()


def test_the_feeder_waits_for_an_instance_s_conversion(tmp_path: Path) -> None:
    """An instance acknowledged before its conversion is indexed once converted, and the
    ones after it wait their turn (the feed is followed in order)."""
    source = Source([dicom_json("CT_small.dcm"), dicom_json("MR_small.dcm")])
    first = next(iter(source.by_id))
    source.converting_ids = {first}
    index = SearchIndex(tmp_path / "search")
    index.commit(last_change=1)
    feeder = Feeder(index, source, commit_interval_s=0.01)
    feeder.start()
    try:
        time.sleep(0.5)
        assert feeder.lag() == 2  # "broken" applied, then the wait
        assert index.search(parse("*"), Level.INSTANCE) == []
        source.converting_ids = set()
        deadline = time.monotonic() + 10
        while feeder.lag():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert len(index.search(parse("*"), Level.INSTANCE)) == 2
    finally:
        feeder.stop()


def test_a_rebuild_stopped_midway_is_not_taken_for_whole(tmp_path: Path) -> None:
    source = Source([dicom_json("CT_small.dcm")])
    index = SearchIndex(tmp_path / "search")
    try:
        with pytest.raises(RebuildStopped):
            rebuild(index, source, stopped=lambda: True)
        assert index.last_change == 0  # rebuilt again at the next start
        assert rebuild(index, source) == 1 and index.last_change == source.last_change()
    finally:
        index.close()


def test_an_index_that_does_not_open_is_made_anew(tmp_path: Path) -> None:
    core = opened(tmp_path / "data")
    core.ingest(ct_bytes(0))
    caught_up(core)
    core.close()
    (tmp_path / "data" / "search" / "meta.json").write_text("{ damaged")
    core = opened(tmp_path / "data")
    try:
        caught_up(core)
        assert len(core.search("Modality:CT", Level.INSTANCE, 100)) == 1
    finally:
        core.close()


def test_stopping_commits_what_was_indexed(tmp_path: Path) -> None:
    settings = CoreSettings(tmp_path / "data", search=SearchSettings(commit_interval_s=3600))
    core = NodeCore(settings)
    core.open(background=False, search=True)
    core.ingest(ct_bytes(0))  # fed, or rebuilt from the archive if before the first look
    time.sleep(0.5)
    core.ingest(ct_bytes(1))
    time.sleep(1.0)  # polls every 0.2 s: fed, but not due for a commit for an hour
    assert core.search_lag() > 0
    feed_position = core.last_change()
    core.close()
    index = SearchIndex(tmp_path / "data" / "search")
    try:
        assert index.last_change == feed_position
        assert len(index.search(parse("Modality:CT"), Level.INSTANCE)) == 2
    finally:
        index.close()
