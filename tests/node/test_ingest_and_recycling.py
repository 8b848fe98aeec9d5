"""Ingest through the node core, recycling by size and count, protection, reject mode."""

from __future__ import annotations

import subprocess
import time

import pytest

from pacsnode.node.errors import InstanceConflict, StorageFull
from pacsnode.node.ids import Level
from pacsnode.node.ingest import IngestStatus
from pacsnode.node.recycling import StorageMode
from pacsnode.node.settings import ConflictPolicy
from pacsnode.node.verify import verify
from tests.node.conftest import MakeCore
from tests.storage.helpers import ct_bytes, ct_instance, to_bytes


def patient_ids(core) -> set[str]:
    return {core.resource(pid)["tags"]["PatientID"] for pid in core.list_ids(Level.PATIENT)}


def test_ingest_indexes_the_hierarchy(core) -> None:
    result = core.ingest(ct_bytes(0))
    assert result.status is IngestStatus.SUCCESS
    study = core.resource(result.ids[Level.STUDY], Level.STUDY)
    assert study["tags"]["StudyInstanceUID"] == ct_instance(0).StudyInstanceUID
    assert study["patient_tags"]["PatientName"] == "Synthetic^Patient1"
    assert study["tags"]["ModalitiesInStudy"] == "CT"
    assert study["children"] == [result.ids[Level.SERIES]]
    instance = core.resource(result.ids[Level.INSTANCE])
    assert instance["tags"]["InstanceNumber"] == "1"
    assert instance["tags"]["SOPClassUID"] == "1.2.840.10008.5.1.4.1.1.2"
    metadata = core.annotations.metadata(result.ids[Level.INSTANCE])
    assert metadata["Origin"] == "RestApi"
    assert metadata["TransferSyntax"] == "1.2.840.10008.1.2.1"
    assert metadata["IndexInSeries"] == "1"
    stats = core.statistics()
    assert (stats["CountPatients"], stats["CountInstances"]) == (1, 1)
    assert stats["TotalDiskSize"] == result.instance.stored_size


def test_duplicate_and_conflict(make_core: MakeCore) -> None:
    core = make_core()
    core.ingest(ct_bytes(0))
    assert core.ingest(ct_bytes(0)).status is IngestStatus.ALREADY_STORED
    changed = ct_instance(0)
    changed.StudyDescription = "changed"
    kept = core.ingest(to_bytes(changed))
    assert kept.status is IngestStatus.ALREADY_STORED and kept.conflict
    assert core.statistics()["CountInstances"] == 1
    core.close()
    strict = make_core(conflict_policy=ConflictPolicy.REJECT)
    with pytest.raises(InstanceConflict):
        strict.ingest(to_bytes(changed))


def fill(core, patients: int) -> list[str]:
    """One instance per patient, oldest first; return the patient resource ids."""
    return [core.ingest(ct_bytes(0, patient=p)).ids[Level.PATIENT] for p in range(1, patients + 1)]


def test_recycling_by_patient_count_deletes_oldest_unprotected(make_core: MakeCore) -> None:
    core = make_core(maximum_patient_count=3)
    ids = fill(core, 3)
    core.annotations.set_protected(ids[0], True)
    core.ingest(ct_bytes(1, patient=2))  # patient 2 becomes the most recent
    core.ingest(ct_bytes(0, patient=4))
    assert patient_ids(core) == {"PAT00001", "PAT00002", "PAT00004"}  # 3 was oldest unprotected
    core.ingest(ct_bytes(0, patient=5))
    assert patient_ids(core) == {"PAT00001", "PAT00004", "PAT00005"}
    deleted = [c for c in core.changes(0, 1000).changes if c["ChangeType"] == "Deleted"]
    assert [c["Reason"] for c in deleted] == ["Recycled", "Recycled"]
    assert deleted[0]["Uids"] == {"PatientID": "PAT00003"}


def test_recycling_by_size(make_core: MakeCore) -> None:
    limit = 1024 * 1024
    core = make_core(maximum_storage_size_mb=1)
    first = core.ingest(ct_bytes(0, patient=1)).ids[Level.PATIENT]
    second = core.ingest(ct_bytes(0, patient=2)).ids[Level.PATIENT]
    core.ingest(ct_bytes(1, patient=1))  # patient 1 is now more recent than patient 2
    patient = 3
    while not [c for c in core.changes(0, 10_000).changes if c["ChangeType"] == "Deleted"]:
        core.ingest(ct_bytes(0, patient=patient))
        assert core.statistics()["TotalDiskSize"] <= limit
        patient += 1
        assert patient < 1000, "the limit was never reached"
    remaining = core.list_ids(Level.PATIENT)
    assert second not in remaining and first in remaining
    assert core.statistics()["TotalDiskSize"] <= limit


def test_storage_full_when_all_patients_are_protected(make_core: MakeCore) -> None:
    core = make_core(maximum_patient_count=2)
    for patient_id in fill(core, 2):
        core.annotations.set_protected(patient_id, True)
    before = core.statistics()
    with pytest.raises(StorageFull, match="no unprotected patient"):
        core.ingest(ct_bytes(0, patient=3))
    assert core.statistics() == before
    assert sorted(core.study_uids_on_disk()) == sorted(
        ct_instance(0, patient=p).StudyInstanceUID for p in (1, 2)
    )
    core.ingest(ct_bytes(1, patient=1))  # a known patient still fits: no new patient


def test_the_incoming_patient_is_never_recycled(make_core: MakeCore) -> None:
    core = make_core(maximum_patient_count=1)
    fill(core, 1)
    for index in range(1, 4):
        assert core.ingest(ct_bytes(index, patient=1)).status is IngestStatus.SUCCESS
    with pytest.raises(StorageFull):
        core.annotations.set_protected(core.list_ids(Level.PATIENT)[0], True)
        core.ingest(ct_bytes(0, patient=2))


def test_reject_mode(make_core: MakeCore) -> None:
    core = make_core(maximum_patient_count=2, maximum_storage_mode=StorageMode.REJECT)
    fill(core, 2)
    with pytest.raises(StorageFull, match="reject"):
        core.ingest(ct_bytes(0, patient=3))
    assert core.statistics()["CountPatients"] == 2


@pytest.fixture
def tiny_disk(tmp_path):
    """A 3 MiB tmpfs, to meet a really full disk (needs root and mount, as in CI)."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount_point)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_a_really_full_disk_refuses_and_corrupts_nothing(make_core: MakeCore, tiny_disk) -> None:
    core = make_core(data_dir=tiny_disk / "data", stable_age_s=0)
    acked = []
    with pytest.raises(StorageFull, match="disk full"):
        for index in range(1000):
            acked.append(core.ingest(ct_bytes(index, size=64)).instance.sop_uid)
    assert len(acked) > 10
    with pytest.raises(StorageFull):
        core.ingest(ct_bytes(5000, size=64))
    core.seal_quiet_studies(now=time.monotonic() + 3600)  # may fail for space: logged, kept
    assert verify(core) == []
    study = ct_instance(0).StudyInstanceUID
    assert set(core.study_inventory(study)) == set(acked)
    core.close()
    reopened = make_core(data_dir=tiny_disk / "data")
    assert reopened.statistics()["CountInstances"] == len(acked)
    assert verify(reopened) == []
