"""Parsing instances that arrive at once in worker processes (node/preparation.py): the
same results as in the arriving thread, domain errors carried back, dead workers survived,
idle workers stopped, none left behind by a node killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from pacsnode.node.preparation import Preparer
from pacsnode.storage.errors import InvalidDicom, NotDicom
from pacsnode.storage.limits import ArchiveLimits
from pacsnode.storage.store import prepare_instance
from tests.storage.helpers import ct_instance, to_bytes

REPO = Path(__file__).resolve().parents[2]
LIMITS = ArchiveLimits()
FILES = [to_bytes(ct_instance(index, patient=1 + index % 3)) for index in range(24)]
WORKER = "pacsnode.node.preparation_worker"


def _workers(of: int | None = None) -> set[int]:
    """The worker processes of this process (or of ``of``)."""
    parent = os.getpid() if of is None else of
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes()
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if WORKER.encode() in command and int(fields[1]) == parent and fields[0] != "Z":
            found.add(int(entry.name))
    return found


@pytest.fixture
def preparer() -> Iterator[Preparer]:
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
    assert [p.staged_bytes for p in prepared] == [e.staged_bytes for e in expected]
    assert len(_workers()) == 2, "several at once should have started both workers"


def test_a_refusal_in_a_worker_is_the_same_domain_error(preparer: Preparer) -> None:
    bad = [b"not dicom at all" * 10, FILES[0][:400]] * 4
    with ThreadPoolExecutor(4) as senders:
        outcomes = list(senders.map(lambda blob: _outcome(preparer, blob), bad))
    assert {type(o) for o in outcomes[0::2]} == {NotDicom}
    assert all(isinstance(o, InvalidDicom) and o.message for o in outcomes)
    with ThreadPoolExecutor(4) as senders:  # the workers are still there, and well
        assert len(list(senders.map(preparer.prepare, FILES))) == len(FILES)


def _outcome(preparer: Preparer, blob: bytes) -> Exception:
    try:
        preparer.prepare(blob)
    except Exception as exc:  # the outcome under test
        return exc
    raise AssertionError("a broken file was prepared")


def test_a_killed_worker_costs_a_parse_in_the_thread_not_an_instance(preparer: Preparer) -> None:
    with ThreadPoolExecutor(4) as senders:
        list(senders.map(preparer.prepare, FILES[:8]))
    killed = _workers()
    assert killed
    for pid in killed:
        os.kill(pid, signal.SIGKILL)
    with ThreadPoolExecutor(4) as senders:
        prepared = list(senders.map(preparer.prepare, FILES))
    assert len(prepared) == len(FILES)
    assert _workers() and not _workers() & killed  # new ones took over


def test_idle_workers_stop(preparer: Preparer) -> None:
    with ThreadPoolExecutor(4) as senders:
        list(senders.map(preparer.prepare, FILES))
    assert _workers()
    deadline = time.monotonic() + 15
    while _workers() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _workers()


def test_alone_an_instance_is_prepared_in_the_arriving_thread() -> None:
    preparer = Preparer(LIMITS, 3, workers=2)
    try:
        for blob in FILES[:5]:
            preparer.prepare(blob)
        assert not _workers()
    finally:
        preparer.close()


def test_workers_end_with_a_killed_node(tmp_path: Path) -> None:
    """A node killed (SIGKILL) leaves no worker behind."""
    script = tmp_path / "node.py"
    script.write_text(
        "import time\n"
        "from concurrent.futures import ThreadPoolExecutor\n"
        "from pacsnode.node.preparation import Preparer\n"
        "from pacsnode.storage.limits import ArchiveLimits\n"
        "from tests.storage.helpers import ct_instance, to_bytes\n"
        "files = [to_bytes(ct_instance(i)) for i in range(12)]\n"
        "preparer = Preparer(ArchiveLimits(), 3, workers=2)\n"
        "with ThreadPoolExecutor(4) as senders:\n"
        "    list(senders.map(preparer.prepare, files))\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    node = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert node.stdout is not None and node.stdout.readline().strip() == "ready"
    workers = _workers(node.pid)
    assert workers, "the node should have worker processes"
    node.send_signal(signal.SIGKILL)
    node.wait()
    deadline = time.monotonic() + 10
    while any(_running(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in workers if _running(pid)]


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
