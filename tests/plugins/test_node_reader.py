"""What web plugins read of the node (``NodeReader``), over a real core: each method
answers as the REST API would, and refuses as it would."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from benchmarks.synthetic import SeriesSpec, series_files
from pacsnode.node.core import NodeCore
from pacsnode.node.errors import BadRequest, UnknownResource
from pacsnode.node.rest.node_reader import NodeReader
from pacsnode.node.settings import CoreSettings, SearchSettings

UNKNOWN = "00000000-00000000-00000000-00000000-00000000"


@pytest.fixture(scope="module")
def core(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeCore]:
    settings = CoreSettings(
        data_dir=tmp_path_factory.mktemp("reader") / "data",
        ingest_workers=0,
        search=SearchSettings(commit_interval_s=0.05),
    )
    opened = NodeCore(settings)
    opened.open(background=False, search=True)
    for spec in (SeriesSpec(1, 1, 1, 2, 16), SeriesSpec(2, 1, 1, 1, 16, modality="MR")):
        for blob in series_files(spec):
            opened.ingest(blob)
    deadline = time.monotonic() + 20
    while opened.search_lag() and time.monotonic() < deadline:
        time.sleep(0.02)
    yield opened
    opened.close()


async def test_finding_and_reading_resources(core: NodeCore) -> None:
    node = NodeReader(core)
    studies = await node.find("Study")
    assert len(studies) == 2 and await node.find("studies", limit=1) == studies[:1]
    (mr_series,) = await node.find("Series", {"Modality": "MR"})
    series = await node.resource(mr_series)
    assert series["Type"] == "Series" and series["MainDicomTags"]["Modality"] == "MR"
    assert series["ParentStudy"] in studies
    assert [s["ID"] for s in await node.resources([mr_series, UNKNOWN])] == [mr_series]
    (instance,) = series["Instances"]
    tags = await node.tags(instance)
    assert tags["00080060"]["Value"] == ["MR"]
    assert isinstance(await node.metadata(instance), dict)


async def test_search_and_statistics(core: NodeCore) -> None:
    node = NodeReader(core)
    assert len(await node.search("Modality:MR", "Series")) == 1
    assert len(await node.search("Modality:CT", limit=10)) == 1  # studies by default
    stats = await node.statistics()
    assert stats["CountStudies"] == 2 and stats["CountInstances"] == 3
    assert stats["SearchIndexLag"] == 0
    assert stats["IndexPluginLags"] == {"search": 0}


async def test_a_plugin_that_cannot_tell_its_lag_leaves_the_statistics_answered(
    core: NodeCore, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> int:  # a plugin's bug
        raise RuntimeError("lost its position")

    (name, plugin) = core._plugins.others[0]  # type: ignore[union-attr]
    monkeypatch.setattr(plugin, "lag", broken)
    stats = await NodeReader(core).statistics()
    assert stats["IndexPluginLags"] == {name: None} and stats["CountStudies"] == 2
    assert any("failed to tell its lag" in r.getMessage() for r in caplog.records)


async def test_it_refuses_as_the_rest_api_does(core: NodeCore) -> None:
    node = NodeReader(core)
    (study, _) = await node.find("Study")
    with pytest.raises(UnknownResource):
        await node.resource(study, "Series")
    with pytest.raises(UnknownResource):
        await node.metadata(UNKNOWN)
    with pytest.raises(UnknownResource):
        await node.tags(study)  # not an instance
    with pytest.raises(BadRequest):
        await node.find("Nowhere")
