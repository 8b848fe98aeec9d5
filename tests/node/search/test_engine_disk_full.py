"""The search index on a disk that fills up (a real small tmpfs, as in
tests/node/test_disk_full.py): every failure is one of the node's conditions
(StorageFull, or SearchUnavailable when the disk filled under tantivy's own writer
thread and killed it), never a bare tantivy error whose traceback lands in the log; and
once there is room again the index takes the same documents and finds them."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from pacsnode.node.errors import DomainError, SearchUnavailable, StorageFull
from pacsnode.node.ids import Level
from pacsnode.node.search.documents import Document, flatten, level_ids
from pacsnode.node.search.engine import SearchIndex
from pacsnode.node.search.query_language import parse
from tests.node.search.conftest import dicom_json
from tests.node.test_disk_full import SmallDisk

DOCUMENTS = 300


def documents() -> list[Document]:
    """Copies of one CT instance, each with its own SOP Instance UID."""
    ct: dict[str, Any] = dicom_json("CT_small.dcm")
    made = []
    for number in range(DOCUMENTS):
        dataset = copy.deepcopy(ct)
        dataset["00080018"]["Value"] = [f"1.2.826.0.1.3680043.10.1234.77.{number}"]
        made.append(flatten(dataset, level_ids(dataset)))
    return made


def test_a_full_disk_under_the_search_index_is_a_condition_not_a_crash(tmp_path: Path) -> None:
    disk = SmallDisk(tmp_path / "disk", 8)
    try:
        index = SearchIndex(disk.mount / "search")
        everything = documents()
        index.add(everything[0])
        index.commit(last_change=1)
        disk.fill(leave=0)
        refused: list[type[DomainError]] = []
        for number, document in enumerate(everything, start=1):
            try:
                index.add(document)
                if number % 25 == 0:
                    index.commit(last_change=number)
            except DomainError as exc:  # anything else fails the test
                refused.append(type(exc))
        assert refused, "nothing was refused on a full disk"
        assert set(refused) <= {StorageFull, SearchUnavailable}
        disk.grow(64)
        # what the feeder does next: everything after the last commit again
        for document in everything:
            index.add(document)
        index.commit(last_change=DOCUMENTS)
        found = index.search(parse("Modality:CT"), Level.INSTANCE, limit=1000)
        assert len(found) == DOCUMENTS
        index.close()
    finally:
        disk.unmount()
