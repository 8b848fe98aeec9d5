"""Running a plan against a real node core (:mod:`pacsnode.node.index_plugins.finder`):
the search index's candidates checked again by DICOM matching, changes it has not seen
read from the feed, the fallback on main-tag candidates without it, its bound, and a
plugin that raises."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from pacsnode.node.core import NodeCore
from pacsnode.node.errors import SearchUnavailable
from pacsnode.node.ids import Level
from pacsnode.node.index_plugins import finder
from pacsnode.node.index_plugins.contract import IndexPluginFailed, QueryTooBroad
from pacsnode.node.index_plugins.finder import Finder
from pacsnode.node.index_plugins.loading import build
from pacsnode.node.index_plugins.maintags import MainTagIndex
from pacsnode.node.query import Constraint, parse_constraint
from pacsnode.node.search.plugin import SearchPlugin
from pacsnode.node.settings import CoreSettings
from tests.node.index_plugins.conftest import caught_up
from tests.node.index_plugins.corpus import Item, corpus, ids


def parsed(**query: str) -> list[Constraint]:
    return [parse_constraint(keyword, value) for keyword, value in query.items()]


@pytest.fixture
def core(tmp_path: Path) -> Iterator[NodeCore]:
    """A core without plugins of its own but the main tags (a CLI's, or search off)."""
    opened = NodeCore(CoreSettings(data_dir=tmp_path / "data", ingest_workers=0))
    opened.open(background=False)
    yield opened
    opened.close()


def stored(core: NodeCore) -> list[Item]:
    items = corpus()
    for item in items:
        core.ingest(item.data)
    return items


def main_tags(core: NodeCore) -> MainTagIndex:
    plugin = MainTagIndex()
    plugin.start(core)
    return plugin


@pytest.fixture
def search(core: NodeCore, tmp_path: Path) -> Iterator[SearchPlugin]:
    plugin = build("search", {"commit_interval_s": 0.02}, tmp_path / "data")
    assert isinstance(plugin, SearchPlugin)
    plugin.start(core)
    yield plugin
    plugin.stop()


def test_search_candidates_are_checked_by_dicom_matching(core: NodeCore, search) -> None:
    items = stored(core)
    caught_up(search)
    found = Finder(core, main_tags(core), [("search", search)])

    def studies(**query: str) -> set[str]:
        return set(found.find(Level.STUDY, parsed(**query), 0, None))

    # the index finds Axial, AXIAL and axial; DICOM matching keeps the last
    assert studies(SeriesDescription="*axial*") == ids(items, Level.STUDY, "c1")
    assert studies(BodyPartExamined="CHEST") == ids(items, Level.STUDY, "a1", "d1")
    assert studies(BodyPartExamined="CHEST", PatientID="PAT00003") == ids(items, Level.STUDY, "d1")
    # a study's modalities are checked on the index, not on one instance
    assert studies(ModalitiesInStudy="CT", BodyPartExamined="ABDOMEN") == ids(
        items, Level.STUDY, "b1"
    )
    series = set(found.find(Level.SERIES, parsed(SliceThickness="5"), 0, None))
    assert series == ids(items, Level.SERIES, "a1")  # stored as 5.0
    pages = [found.find(Level.INSTANCE, parsed(ImageType="AXIAL"), o, 2) for o in (0, 2)]
    assert [len(p) for p in pages] == [2, 1]
    assert set(pages[0] + pages[1]) == ids(items, Level.INSTANCE, "a1", "a2", "c1")


REQUESTED = "RequestAttributesSequence.RequestedProcedureID"
STEP = "RequestAttributesSequence.ScheduledProcedureStepID"


def sequence_matches(found: Finder, items: list[Item]) -> None:
    """Attributes inside sequence items, matched as DICOM does: any item, case as written."""

    def studies(**query: str) -> set[str]:
        return set(found.find(Level.STUDY, parsed(**query), 0, None))

    assert studies(**{REQUESTED: "RP-7"}) == ids(items, Level.STUDY, "a1")  # not c1's rp-7
    assert studies(**{REQUESTED: "RP-8"}) == ids(items, Level.STUDY, "a1")  # the second item
    assert studies(**{REQUESTED: "rp-7\\RP-8"}) == ids(items, Level.STUDY, "a1", "c1")
    assert studies(**{STEP: "SPS-*"}) == ids(items, Level.STUDY, "a1", "c1")
    assert studies(**{STEP: "SPS-*", "PatientID": "PAT00002"}) == ids(items, Level.STUDY, "c1")
    assert studies(**{REQUESTED: "RP-9"}) == set()
    instances = set(found.find(Level.INSTANCE, parsed(**{STEP: "SPS-1"}), 0, None))
    assert instances == ids(items, Level.INSTANCE, "a1")


def test_attributes_inside_sequences_from_the_search_index(core: NodeCore, search) -> None:
    items = stored(core)
    caught_up(search)
    sequence_matches(Finder(core, main_tags(core), [("search", search)]), items)


def test_what_the_search_index_has_not_seen_is_read_from_the_feed(
    core: NodeCore, tmp_path: Path
) -> None:
    # commits an hour apart: nothing this test stores becomes visible to searches
    slow = build("search", {"commit_interval_s": 3600}, tmp_path / "data")
    slow.start(core)
    try:
        items = stored(core)
        assert slow.lag() > 0
        found = Finder(core, main_tags(core), [("search", slow)])
        chest = found.find(Level.STUDY, parsed(BodyPartExamined="CHEST"), 0, None)
        assert set(chest) == ids(items, Level.STUDY, "a1", "d1")
        sequence_matches(found, items)
        core.delete(ids(items, Level.STUDY, "d1").pop())
        chest = found.find(Level.STUDY, parsed(BodyPartExamined="CHEST"), 0, None)
        assert set(chest) == ids(items, Level.STUDY, "a1")
    finally:
        slow.stop()


def test_without_search_main_tag_candidates_are_read_from_the_files(core: NodeCore) -> None:
    items = stored(core)
    found = Finder(core, main_tags(core), [])
    chest = found.find(Level.STUDY, parsed(BodyPartExamined="CHEST"), 0, None)
    assert set(chest) == ids(items, Level.STUDY, "a1", "d1")
    axial = found.find(Level.SERIES, parsed(SeriesDescription="*axial*", ImageType="*"), 0, None)
    assert set(axial) == ids(items, Level.SERIES, "c1")  # a main tag there, a lone star
    sequence_matches(found, items)


def test_the_fallback_reads_a_bounded_number_of_resources(
    core: NodeCore, search, monkeypatch: pytest.MonkeyPatch
) -> None:
    items = stored(core)
    monkeypatch.setattr(finder, "FALLBACK_CANDIDATES", 2)
    off = Finder(core, main_tags(core), [])
    with pytest.raises(QueryTooBroad, match=r"BodyPartExamined.*\[search\] is off"):
        off.find(Level.STUDY, parsed(BodyPartExamined="CHEST"), 0, None)
    narrowed = off.find(Level.STUDY, parsed(BodyPartExamined="CHEST", PatientID="PAT00001"), 0, 5)
    assert set(narrowed) == ids(items, Level.STUDY, "a1")
    monkeypatch.setattr(finder, "MAX_LAG", -1)  # the search index counts as far behind
    behind = Finder(core, main_tags(core), [("search", search)])
    with pytest.raises(SearchUnavailable, match="behind"):
        behind.find(Level.STUDY, parsed(BodyPartExamined="CHEST"), 0, None)


class Failing(MainTagIndex):
    """An index plugin whose queries fail (a bug in it, a lost connection...)."""

    exact = False

    def answers(self, level: Level, keyword: str) -> bool:
        return True

    def find(
        self, level: Level, constraints: Sequence[Constraint], limit: int | None, offset: int = 0
    ) -> list[str]:
        raise ConnectionError("the index server went away")


def test_a_plugin_that_raises_fails_the_query_naming_it(core: NodeCore) -> None:
    stored(core)
    failing = Failing()
    failing.start(core)
    found = Finder(core, main_tags(core), [("faulty", failing)])
    with pytest.raises(IndexPluginFailed, match="'faulty' failed: ConnectionError: the index"):
        found.find(Level.STUDY, parsed(BodyPartExamined="CHEST"), 0, None)
    assert len(found.find(Level.STUDY, parsed(PatientID="PAT00001"), 0, None)) == 1
