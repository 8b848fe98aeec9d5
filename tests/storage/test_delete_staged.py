"""Deleting instances that are only staged removes their staging files, nothing else."""

from __future__ import annotations

from pacsnode.storage.layout import staged_instance_path, study_zip_path
from pacsnode.storage.store import StudyStore
from tests.storage.helpers import ct_bytes


def test_a_staged_instance_goes_without_rewriting_the_study(store: StudyStore) -> None:
    sealed = store.put_instance(ct_bytes(0)).instance
    store.seal(sealed.study_uid)
    zip_path = study_zip_path(store.root, sealed.study_uid)
    before = zip_path.stat().st_ino
    staged = store.put_instance(ct_bytes(1)).instance
    assert store.delete_instances(staged.study_uid, {staged.sop_uid}) == [staged.sop_uid]
    assert zip_path.stat().st_ino == before  # not rewritten
    assert not staged_instance_path(store.root, staged.study_uid, staged.sop_uid).exists()
    assert set(store.inventory(sealed.study_uid)) == {sealed.sop_uid}


def test_a_staged_copy_of_a_sealed_instance_takes_the_sealed_one_with_it(
    store: StudyStore,
) -> None:
    first = store.put_instance(ct_bytes(0)).instance
    store.seal(first.study_uid)
    store.put_instance(ct_bytes(0, size=32), overwrite=True)  # a newer copy, staged
    assert store.delete_instances(first.study_uid, {first.sop_uid}) == [first.sop_uid]
    assert not study_zip_path(store.root, first.study_uid).exists()
    assert not store.study_exists(first.study_uid) or store.inventory(first.study_uid) == {}
