"""Series completeness as Orthanc tells it: the pure decision, and its change entry."""

from __future__ import annotations

from pacsnode.node.core import NodeCore
from pacsnode.node.series_status import series_status
from tests.storage.helpers import ct_instance, to_bytes


def test_the_decision() -> None:
    assert series_status(None, 3) == series_status("", 3) == series_status("x", 3) == "Unknown"
    assert series_status("4", 3) == "Missing"
    assert series_status(4, 4) == "Complete"
    assert series_status("4", 5) == "Inconsistent"


def test_completed_series_is_announced_once(core: NodeCore) -> None:
    def completed() -> int:
        changes = core.changes(0, 1000).changes
        return sum(c["ChangeType"] == "CompletedSeries" for c in changes)

    for index in range(3):
        dataset = ct_instance(index)
        dataset.ImagesInAcquisition = 3
        core.ingest(to_bytes(dataset))
        assert completed() == (1 if index == 2 else 0)
    extra = ct_instance(3)
    extra.ImagesInAcquisition = 3
    core.ingest(to_bytes(extra))
    assert completed() == 1
