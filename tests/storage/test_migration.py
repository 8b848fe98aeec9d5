"""Moving sealed studies from one backend into a store's (storage/migration.py): copied
and checked, resumed, merged with what the new backend already holds, conflicts kept on
both sides, and the old copies removed only when asked and only when safe. Both backends
are real data-disk backends in two places."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pacsnode.storage.migration import MigrationReport, Moved, migrate, move_study
from pacsnode.storage.store import StudyStore
from tests.storage.helpers import ct_bytes, ct_instance, to_bytes

FIRST = ct_instance(0, study=1).StudyInstanceUID
SECOND = ct_instance(0, study=2).StudyInstanceUID


@pytest.fixture
def old(tmp_path: Path) -> Iterator[StudyStore]:
    """The store whose backend the studies are moved out of."""
    with StudyStore(tmp_path / "old") as old_store:
        yield old_store


def sealed(store: StudyStore, study: int, indexes: range) -> str:
    for index in indexes:
        store.put_instance(ct_bytes(index, study=study))
    study_uid = ct_instance(0, study=study).StudyInstanceUID
    assert store.seal(study_uid)
    return study_uid


def zip_bytes(store: StudyStore, study_uid: str) -> bytes:
    with store.backend.get(study_uid) as blob:
        blob.seek(0)
        return blob.read()


def test_studies_are_copied_byte_for_byte_then_found_again(
    store: StudyStore, old: StudyStore
) -> None:
    sealed(old, 1, range(3))
    sealed(old, 2, range(2))
    moved: list[tuple[str, Moved]] = []
    report = migrate(store, old.backend, progress=lambda uid, how: moved.append((uid, how)))
    assert sorted(moved) == sorted([(FIRST, Moved.COPIED), (SECOND, Moved.COPIED)])
    assert report.studies["copied"] == 2 and report.removed_from_source == 0
    assert report.bytes_copied == sum(old.backend.size(uid) or 0 for uid in (FIRST, SECOND))
    for study_uid in (FIRST, SECOND):
        assert zip_bytes(store, study_uid) == zip_bytes(old, study_uid)
        assert store.inventory(study_uid) == old.inventory(study_uid)
    # run again (a migration cut short): nothing is copied twice
    again = migrate(store, old.backend)
    assert again.studies["already there"] == 2 and again.bytes_copied == 0


def test_what_the_new_backend_sealed_meanwhile_is_merged_not_overwritten(
    store: StudyStore, old: StudyStore
) -> None:
    sealed(old, 1, range(3))
    sealed(store, 1, range(2, 5))  # the node ran on the new backend before the move
    report = MigrationReport()
    assert move_study(store, old.backend, FIRST, report) is Moved.MERGED
    assert len(store.instances(FIRST)) == 5
    assert FIRST in store.pending_studies()  # reconciled with the index at the next start


def test_conflicts_are_kept_on_both_sides(store: StudyStore, old: StudyStore) -> None:
    sealed(old, 1, range(2))
    changed = ct_instance(0, study=1)
    changed.PatientName = "Changed^Here"
    store.put_instance(to_bytes(changed))
    assert store.seal(FIRST)
    sealed(old, 2, range(1))
    report = migrate(store, old.backend, remove_source=True)
    assert report.conflicts == {FIRST: [changed.SOPInstanceUID]}
    assert report.studies["merged, with conflicts"] == 1 and report.studies["copied"] == 1
    # the new backend's instance stays as it was, the other one joins it
    assert str(store.instance_dataset(FIRST, changed.SeriesInstanceUID, changed.SOPInstanceUID)
               .PatientName) == "Changed^Here"  # fmt: skip
    assert len(store.instances(FIRST)) == 2
    # the study with a conflict stays in the old backend; the copied one is removed
    assert set(old.backend.study_uids()) == {FIRST}
    assert report.removed_from_source == 1


def test_the_old_copies_are_removed_only_when_asked(store: StudyStore, old: StudyStore) -> None:
    sealed(old, 1, range(2))
    migrate(store, old.backend)
    assert set(old.backend.study_uids()) == {FIRST}
    report = migrate(store, old.backend, remove_source=True)
    assert report.studies["already there"] == 1 and report.removed_from_source == 1
    assert list(old.backend.study_uids()) == []
    assert len(store.instances(FIRST)) == 2
