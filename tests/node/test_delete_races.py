"""A deletion racing an ingest into the same study (issue 13, item 15) can leave no instance
stored but unindexed, not even for a moment a crash could catch.

The interleavings are forced: a hook in the deletion's path (after it has read what to
delete) or in the ingest's path (between storing and indexing) lets the other side run
until it is done or blocked. With the store's gate (storage/gates.py) the other side blocks
and the hook goes on after a short wait; without it, the other side ran right into the
window. A stress test then mixes both for a while.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pacsnode.node.core import NodeCore
from pacsnode.node.errors import UnknownResource
from pacsnode.node.ids import Level
from pacsnode.node.index import Origin, OriginKind
from pacsnode.storage.errors import NotFound
from pacsnode.storage.store import StudyStore
from tests.storage.helpers import ct_bytes, ct_instance

STUDY = ct_instance(0).StudyInstanceUID
_BLOCKED = 0.5  # how long a hook lets the other side run before going on without it


def stored(core: NodeCore, study_uid: str) -> set[str]:
    try:
        return set(core.study_inventory(study_uid))
    except NotFound:
        return set()


def indexed(core: NodeCore, study_uid: str) -> set[str]:
    return set(core.index.indexed_instances(study_uid))


def assert_consistent(core: NodeCore, study_uids: set[str]) -> None:
    for study_uid in study_uids:
        assert stored(core, study_uid) == indexed(core, study_uid), study_uid


def hook_once(
    target: Any,
    name: str,
    other_side: Callable[[], None],
    then: Callable[[], None] = lambda: None,
) -> tuple[threading.Thread, list[bool]]:
    """Make ``target.name`` (an Index method) run ``other_side`` in a thread on its first
    call, wait until that finishes or ``_BLOCKED`` passes, run ``then``, and go on; the
    list says whether the other side finished within the wait."""
    original = getattr(target, name)
    fired = threading.Event()
    done = threading.Event()
    finished_in_window: list[bool] = []

    def run_other_side() -> None:
        fired.wait()
        try:
            other_side()
        finally:
            done.set()

    def hooked(*args: Any, **kwargs: Any) -> Any:
        if not fired.is_set():
            fired.set()
            finished_in_window.append(done.wait(_BLOCKED))
            then()
        return original(*args, **kwargs)

    setattr(target, name, hooked)
    thread = threading.Thread(target=run_other_side)
    thread.start()
    return thread, finished_in_window


def test_an_ingest_finishing_while_a_deletion_runs_stays_indexed(core: NodeCore) -> None:
    study_id = core.ingest(ct_bytes(0)).ids[Level.STUDY]
    # The deletion has read what to delete and marks it dirty: the ingest goes now.
    thread, window = hook_once(core.index, "mark_dirty", lambda: core.ingest(ct_bytes(1)))
    core.delete(study_id)
    thread.join()
    # Before: the instance ingested meanwhile was unindexed with the study, but kept in
    # storage (the deletion deleted from storage only what it had read).
    assert_consistent(core, {STUDY})
    assert stored(core, STUDY) == {ct_instance(1).SOPInstanceUID}
    assert window == [False]  # the ingest waited for the deletion


def test_a_deletion_never_seals_an_instance_stored_but_not_yet_indexed(core: NodeCore) -> None:
    study_id = core.ingest(ct_bytes(0)).ids[Level.STUDY]
    assert core.seal_quiet_studies(now=float("inf")) == [STUDY]  # so deleting it rewrites
    pending: list[bool] = []
    # Between storing the second instance and indexing it, the deletion goes; the study
    # must stay pending there, so that a crash at that point is recovered. The deletion
    # used to seal the instance into the study ZIP and clear the mark.
    thread, window = hook_once(
        core.index,
        "add_instances",
        lambda: core.delete(study_id),
        then=lambda: pending.append(STUDY in core.pending_studies()),
    )
    core.ingest(ct_bytes(1))
    thread.join()
    assert pending == [True]
    assert_consistent(core, {STUDY})
    assert stored(core, STUDY) == set()  # and then deleted both
    assert window == [False]  # the deletion waited for the ingest to be indexed


def test_a_patient_deletion_does_not_unindex_a_study_arriving_meanwhile(core: NodeCore) -> None:
    patient_id = core.ingest(ct_bytes(0)).ids[Level.PATIENT]
    other = ct_instance(0, study=2)
    thread, window = hook_once(core.index, "mark_dirty", lambda: core.ingest(ct_bytes(0, study=2)))
    core.delete(patient_id)
    thread.join()
    assert_consistent(core, {STUDY, other.StudyInstanceUID})
    assert stored(core, other.StudyInstanceUID) == {other.SOPInstanceUID}
    assert window == [False]  # the ingest waited for the deletion


def test_deletions_and_ingests_of_one_study_stress(core: NodeCore) -> None:
    stop = threading.Event()
    errors: list[BaseException] = []

    def send(series: int) -> None:
        try:
            for index in range(25):
                core.ingest(ct_bytes(index, series=series))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    def delete_repeatedly() -> None:
        while not stop.wait(0.001):  # deletions come often, but not back to back
            for resource_id in core.list_ids(Level.STUDY) + core.list_ids(Level.PATIENT):
                try:
                    core.delete(resource_id)
                except UnknownResource:
                    pass  # deleted meanwhile with its patient

    senders = [threading.Thread(target=send, args=(series,)) for series in range(1, 4)]
    deleter = threading.Thread(target=delete_repeatedly)
    for thread in [deleter, *senders]:
        thread.start()
    for thread in senders:
        thread.join()
    stop.set()
    deleter.join()
    assert not errors
    assert_consistent(core, {STUDY})
    assert core.seal_quiet_studies(now=float("inf")) is not None
    assert_consistent(core, {STUDY})


def test_a_peer_merge_and_a_deletion_of_its_study_do_not_interleave(
    core: NodeCore, tmp_path: Path
) -> None:
    study_id = core.ingest(ct_bytes(0)).ids[Level.STUDY]
    assert core.seal_quiet_studies(now=float("inf")) == [STUDY]
    with StudyStore(tmp_path / "peer") as peer:
        peer.put_instance(ct_bytes(1))
        incoming = peer.study_zip(STUDY)
        pending: list[bool] = []
        # The merge has written the study ZIP and is about to index what it added.
        thread, window = hook_once(
            core.index,
            "add_instances",
            lambda: core.delete(study_id),
            then=lambda: pending.append(STUDY in core.pending_studies()),
        )
        result = core.merge_study_zip(incoming, Origin(kind=OriginKind.PEER, peer="peer"))
        thread.join()
    assert [i.sop_uid for i in result.added] == [ct_instance(1).SOPInstanceUID]
    assert pending == [True]
    assert_consistent(core, {STUDY})
    assert stored(core, STUDY) == set()
    assert window == [False]  # the deletion waited for the merge to be indexed
