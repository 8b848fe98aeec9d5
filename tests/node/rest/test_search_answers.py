"""What ``/tools/search`` answers of the ids the search index gives: only resources still
there (the index learns of a deletion a moment later), expanded on request."""

from __future__ import annotations

from pacsnode.node.core import NodeCore
from pacsnode.node.ids import Level
from pacsnode.node.rest.formats import ResourceView
from pacsnode.node.rest.search import _answer
from tests.storage.helpers import ct_bytes


def test_resources_deleted_meanwhile_are_left_out(core: NodeCore) -> None:
    kept = core.ingest(ct_bytes(0)).ids
    gone = core.ingest(ct_bytes(1)).ids
    core.delete(gone[Level.INSTANCE])
    ids = sorted([kept[Level.INSTANCE], gone[Level.INSTANCE]])
    assert _answer(core, ids, Level.INSTANCE, False, ResourceView()) == [kept[Level.INSTANCE]]
    expanded = _answer(core, ids, Level.INSTANCE, True, ResourceView())
    assert [(r["ID"], r["Type"]) for r in expanded] == [(kept[Level.INSTANCE], "Instance")]
