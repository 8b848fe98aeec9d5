"""A real node receiving one study from several senders while it is deleted again and again
(issue 13, item 15): once every request is answered, what the study store holds and what
the index lists agree, read straight from the data directory after the node stops, before
any start-up recovery could repair them (the old code left instances stored but unindexed
until the next start)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from pacsnode.node.index import Index
from pacsnode.storage.errors import NotFound
from pacsnode.storage.store import StudyStore
from tests.node.server import NodeProcess
from tests.storage.helpers import ct_bytes, ct_instance

pytestmark = pytest.mark.e2e  # starts a real node process

STUDY = ct_instance(0, patient=5).StudyInstanceUID


def test_deletions_racing_uploads_leave_nothing_stored_but_unindexed(tmp_path: Path) -> None:
    node = NodeProcess(tmp_path / "node", extra_toml="[storage]\nstable_age_s = 0.2\n").start()
    study_id = node.request("POST", "/instances", ct_bytes(0, patient=5)).json()["ParentStudy"]
    stop = threading.Event()
    failures: list[str] = []

    def send(series: int) -> None:
        for index in range(25):
            answer = node.request("POST", "/instances", ct_bytes(index, patient=5, series=series))
            if answer.status != 200:
                failures.append(f"POST {answer.status} {answer.body[:200]!r}")

    def delete() -> None:
        while not stop.wait(0.001):
            answer = node.request("DELETE", f"/studies/{study_id}")
            if answer.status not in (200, 404):
                failures.append(f"DELETE {answer.status} {answer.body[:200]!r}")

    senders = [threading.Thread(target=send, args=(series,)) for series in range(1, 7)]
    deleter = threading.Thread(target=delete)
    try:
        for thread in [deleter, *senders]:
            thread.start()
        for thread in senders:
            thread.join()
        stop.set()
        deleter.join()
    finally:
        node.stop()
    assert not failures
    data = node.directory / "data"
    store = StudyStore(data)  # not opened: opening would run recovery
    try:
        stored = {i.sop_uid for i in store.instances(STUDY)}
    except NotFound:
        stored = set()
    index = Index(data / "index")
    try:
        indexed = set(index.indexed_instances(STUDY))
    finally:
        index.close()
    assert stored == indexed
