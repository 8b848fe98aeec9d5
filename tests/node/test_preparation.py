"""Parsing instances that arrive at once in worker processes (node/preparation.py): the
same results as in the arriving thread, domain errors carried back, dead workers survived,
idle workers stopped."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from pacsnode.node.preparation import Preparer
from pacsnode.storage.errors import InvalidDicom, NotDicom
from pacsnode.storage.limits import ArchiveLimits
from pacsnode.storage.store import prepare_instance
from tests.storage.helpers import ct_instance, to_bytes

LIMITS = ArchiveLimits()
FILES = [to_bytes(ct_instance(index, patient=1 + index % 3)) for index in range(24)]


def _children() -> set[int]:
    """This process's worker processes (children of its fork server)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent != os.getpid() and _is_descendant(parent):
            found.add(int(entry.name))
    return found


def _is_descendant(pid: int) -> bool:
    while pid > 1:
        if pid == os.getpid():
            return True
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return False


@pytest.fixture
def preparer() -> Preparer:
    preparer = Preparer(LIMITS, 3, workers=2, idle_s=1.0)
    yield preparer
    preparer.close()


def test_instances_arriving_at_once_are_prepared_as_in_the_arriving_thread(
    preparer: Preparer,
) -> None:
    with ThreadPoolExecutor(6) as senders:
        prepared = list(senders.map(preparer.prepare, FILES))
    expected = [prepare_instance(blob, LIMITS, 3) for blob in FILES]
    assert [p.instance.digest for p in prepared] == [e.instance.digest for e in expected]
    assert [p.instance.metadata for p in prepared] == [e.instance.metadata for e in expected]
    assert all(p.source_size == len(blob) for p, blob in zip(prepared, FILES, strict=True))
    assert _children(), "several at once should have started worker processes"


def test_a_refusal_in_a_worker_is_the_same_domain_error(preparer: Preparer) -> None:
    bad = [b"not dicom at all" * 10, FILES[0][:400]] * 4
    with ThreadPoolExecutor(4) as senders:
        outcomes = list(senders.map(lambda blob: _outcome(preparer, blob), bad))
    assert {type(o) for o in outcomes[0::2]} == {NotDicom}
    assert all(isinstance(o, InvalidDicom) for o in outcomes)
    assert all(o.message for o in outcomes)


def _outcome(preparer: Preparer, blob: bytes) -> Exception:
    try:
        preparer.prepare(blob)
    except Exception as exc:  # the outcome under test
        return exc
    raise AssertionError("a broken file was prepared")


def test_a_killed_worker_costs_a_parse_in_the_thread_not_an_instance(preparer: Preparer) -> None:
    with ThreadPoolExecutor(4) as senders:
        list(senders.map(preparer.prepare, FILES[:8]))
    for pid in _children():
        os.kill(pid, signal.SIGKILL)
    with ThreadPoolExecutor(4) as senders:
        prepared = list(senders.map(preparer.prepare, FILES))
    assert len(prepared) == len(FILES)


def test_idle_workers_stop(preparer: Preparer) -> None:
    with ThreadPoolExecutor(4) as senders:
        list(senders.map(preparer.prepare, FILES))
    deadline = time.monotonic() + 15
    while _children() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _children()


def test_alone_an_instance_is_prepared_in_the_arriving_thread() -> None:
    preparer = Preparer(LIMITS, 3, workers=2)
    try:
        for blob in FILES[:5]:
            preparer.prepare(blob)
        assert not _children()
    finally:
        preparer.close()
