"""Change feed order under concurrent ingest; crash-kill recovery; reindex."""

from __future__ import annotations

import random
import shutil
import threading
import time
from pathlib import Path

import pytest

from pacsnode.node.core import NodeCore
from pacsnode.node.ids import Level
from pacsnode.node.settings import CoreSettings
from pacsnode.node.verify import verify
from tests.crash import run_and_kill
from tests.node.conftest import MakeCore
from tests.storage.helpers import ct_bytes


def test_change_feed_is_ordered_under_concurrent_ingest(core: NodeCore) -> None:
    def send(thread: int) -> None:
        for index in range(15):
            core.ingest(ct_bytes(index, patient=thread + 1, series=1 + index % 2))

    threads = [threading.Thread(target=send, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    feed = core.changes(0, 10_000)
    assert feed.done
    seqs = [c["Seq"] for c in feed.changes]
    assert seqs == list(range(1, len(seqs) + 1))
    kinds = [c["ChangeType"] for c in feed.changes]
    assert kinds.count("NewInstance") == 60 and kinds.count("NewSeries") == 8
    assert kinds.count("NewPatient") == 4 and kinds.count("NewStudy") == 4
    by_seq = {change["Seq"]: change for change in feed.changes}
    for change in feed.changes:  # as in Orthanc: a new series right after its first instance
        if change["ChangeType"] == "NewSeries":
            before = by_seq[change["Seq"] - 1]
            assert before["ChangeType"] == "NewInstance"
            assert core.resource(before["ID"])["parent"] == change["ID"]


def test_changes_paging_with_a_cursor(core: NodeCore) -> None:
    for index in range(5):
        core.ingest(ct_bytes(index))
    seen, cursor = [], 0
    while True:
        page = core.changes(cursor, 3)
        seen.extend(c["Seq"] for c in page.changes)
        cursor = page.last
        if page.done:
            break
    assert seen == list(range(1, core.statistics()["LastChange"] + 1))
    assert core.changes(cursor, 3).changes == []


def snapshot(core: NodeCore) -> dict[str, dict]:
    """The DICOM part of the index: records without dates, per resource id."""
    found = {}
    for level in Level:
        for resource_id in core.list_ids(level):
            record = core.resource(resource_id)
            found[resource_id] = {
                k: v for k, v in record.items() if k not in ("created", "last_update")
            }
    return found


def test_reindex_rebuilds_an_equivalent_index(make_core: MakeCore, tmp_path: Path) -> None:
    core = make_core()
    for patient in (1, 2):
        for series in (1, 2):
            for index in range(3):
                core.ingest(ct_bytes(index, patient=patient, series=series))
    patient_id = core.list_ids(Level.PATIENT)[0]
    core.annotations.set_metadata(patient_id, "1024", "kept")
    core.annotations.set_protected(patient_id, True)
    core.seal_quiet_studies(now=time.monotonic() + 3600)
    before = snapshot(core)
    stats = core.statistics()

    report = core.reindex()  # on an intact index: nothing changes, annotations stay
    assert (report.indexed, report.unindexed) == (0, 0)
    assert snapshot(core) == before
    assert core.annotations.get_metadata(patient_id, "1024") == "kept"
    assert core.annotations.is_protected(patient_id)

    core.close()
    shutil.rmtree(tmp_path / "data" / "index")
    rebuilt = make_core()
    report = rebuilt.reindex()
    assert report.indexed == 12
    assert snapshot(rebuilt) == before
    for key in (
        "CountPatients",
        "CountStudies",
        "CountSeries",
        "CountInstances",
        "TotalDiskSize",
        "TotalUncompressedSize",
    ):
        assert rebuilt.statistics()[key] == stats[key], key


def test_recovery_finishes_what_a_crash_interrupted(make_core: MakeCore) -> None:
    core = make_core()
    kept = core.ingest(ct_bytes(0))
    doomed = core.ingest(ct_bytes(1))
    study_uid = kept.instance.study_uid
    core.seal_quiet_studies(now=time.monotonic() + 3600)
    # a deletion that stopped after storage, before the index (Deleter's first two steps)
    core.index.mark_dirty([study_uid])
    core._store.delete_instances(study_uid, {doomed.instance.sop_uid})
    # an ingest that stopped after storage, before the index
    late = core._store.put_instance(ct_bytes(2))
    core.close()

    reopened = make_core()
    sops = set(reopened.index.indexed_instances(study_uid))
    assert sops == {kept.instance.sop_uid, late.instance.sop_uid}
    assert sops == {ref.sop_uid for ref in reopened.stored_instances(study_uid)}
    assert reopened.index.dirty_studies() == []
    assert reopened.statistics()["CountInstances"] == 2


@pytest.mark.e2e
def test_sigkill_during_ingest_then_recovery(tmp_path: Path) -> None:
    data_dir, log = tmp_path / "data", tmp_path / "acks.log"
    log.write_text("")
    rng = random.Random(7)
    for round_number in range(8):
        run_and_kill("tests.node.crash_worker", data_dir, log, round_number, rng.uniform(0.2, 1.2))
        with NodeCore(CoreSettings(data_dir, maximum_patient_count=4)) as core:
            check_consistent(core, log)


@pytest.mark.e2e
def test_sigkill_during_peer_merges_then_recovery(tmp_path: Path) -> None:
    """Killed while merging peers' study ZIPs (with sealing and recycling under way):
    after restart every merged instance the peer was told about is there, unless
    recycled, and the index matches the store."""
    data_dir, log = tmp_path / "data", tmp_path / "acks.log"
    log.write_text("")
    rng = random.Random(11)
    for round_number in range(6):
        run_and_kill(
            "tests.node.merge_crash_worker", data_dir, log, round_number, rng.uniform(0.05, 0.6)
        )
        with NodeCore(CoreSettings(data_dir, maximum_patient_count=4)) as core:
            check_consistent(core, log, acked_word="merged")
            assert verify(core) == []


def check_consistent(core: NodeCore, log: Path, acked_word: str = "acked") -> None:
    acked: dict[str, str] = {}
    deleting: set[str] = set()
    for line in log.read_text().splitlines():
        words = line.split()
        if words and words[0] == acked_word:
            acked[words[1]] = words[2]
            deleting.discard(words[1])
        elif words and words[0] == "deleting":
            deleting.add(words[1])
    studies = set(core.study_uids_on_disk())
    for study_uid in studies | set(acked.values()):
        indexed = set(core.index.indexed_instances(study_uid))
        try:
            stored = {ref.sop_uid for ref in core.stored_instances(study_uid)}
        except Exception:
            stored = set()
        assert indexed == stored, study_uid
    # every acknowledged instance is there unless it was deleted or recycled afterwards
    recycled = {
        c["Uids"].get("PatientID")
        for c in core.changes(0, 10_000).changes
        if c["ChangeType"] == "Deleted"
    }
    present = {sop for study in studies for sop in core.index.indexed_instances(study)}
    for sop, study in acked.items():
        if sop in deleting or sop in present:
            continue
        assert recycled, f"acknowledged instance {sop} of {study} is missing"
    stats = core.statistics()
    assert stats["CountPatients"] <= 4
