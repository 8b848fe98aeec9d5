"""The index's front door: named queries and updates over the LMDB environment.

Reads run in a snapshot on the caller's thread (readers never wait); updates go
through the single writer thread, which commits concurrent callers' updates in
one transaction (one fsync). Callers get plain values (records, refs, pages),
never a transaction, so LMDB stays inside this package.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from pacsnode.node.ids import Level
from pacsnode.node.index import reads, updates
from pacsnode.node.index.changes import ChangePage, last_page, of_existing_resource, page_after
from pacsnode.node.index.environment import Environment, Txn
from pacsnode.node.index.hierarchy import instance_ids, record_conversion
from pacsnode.node.index.lookups import find, narrowed_by_lookup
from pacsnode.node.index.maintags import json_value
from pacsnode.node.index.records import (
    AddedInstance,
    DeletionReason,
    InstanceRef,
    Origin,
    Removed,
    ResourceAnnotations,
)
from pacsnode.node.query import Constraint
from pacsnode.node.recycling import Limits, Usage, choose_victims
from pacsnode.node.revisions import Revision
from pacsnode.storage.results import StoredInstance

T = TypeVar("T")
_CURSOR_PREFIX = "peer_cursor:"
_SETTING_PREFIX = "setting:"


class Index:
    """The node's index of patients, studies, series and instances, and of what users
    attach to them (metadata, attachments, protection), with the change feed."""

    def __init__(self, path: Path) -> None:
        from pacsnode.node.index.writer import IndexWriter

        self._environment = Environment(path)
        self._writer = IndexWriter(self._environment)

    def close(self) -> None:
        self._writer.close()
        self._environment.close()

    def _read(self, fn: Callable[[Txn], T]) -> T:
        return self._environment.read(fn)

    def _write(self, fn: Callable[[Txn], T]) -> T:
        return self._writer.run(fn)

    # --- resources -----------------------------------------------------------------

    def resource(self, resource_id: str) -> dict[str, Any] | None:
        """The resource's record, or ``None``."""
        return self._read(lambda txn: txn.resource(resource_id))

    def resources(self, resource_ids: Iterable[str]) -> list[dict[str, Any] | None]:
        """Many records in one read snapshot (``None`` for those absent)."""
        ids = list(resource_ids)
        return self._read(lambda txn: [txn.resource(i) for i in ids])

    def resource_with_children(
        self, resource_id: str, level: Level | None = None
    ) -> dict[str, Any]:
        """The record with its children's ids; UnknownResource if absent (at that level)."""
        return self._read(lambda txn: reads.resource_with_children(txn, resource_id, level))

    def ancestors(self, record: dict[str, Any]) -> list[dict[str, Any]]:
        return self._read(lambda txn: reads.ancestors(txn, record))

    def instances_of(self, resource_ids: Iterable[str]) -> list[InstanceRef]:
        """Every instance below (or at) each resource; UnknownResource for an unknown id."""
        ids = list(resource_ids)
        return self._read(lambda txn: reads.instances_of(txn, ids))

    def instance_known(self, instance_id: str) -> bool:
        return self.resource(instance_id) is not None

    def indexed_instances(self, study_uid: str) -> dict[str, dict[str, Any]]:
        """SOP Instance UID -> instance record, for a Study Instance UID."""
        return self._read(lambda txn: reads.indexed_instances(txn, study_uid))

    def indexed_study_uids(self) -> set[str]:
        return self._read(reads.indexed_study_uids)

    def studies_of(self, resource_id: str) -> list[str]:
        """The Study Instance UIDs a resource concerns (none once it is gone)."""
        return self._read(lambda txn: reads.studies_of(txn, resource_id))

    # --- queries ---------------------------------------------------------------------

    def find(
        self,
        level: Level,
        constraints: list[Constraint],
        *,
        since: int = 0,
        limit: int | None = None,
    ) -> list[str]:
        """Ids of the resources of ``level`` matching every constraint, paged."""
        return self._read(lambda txn: find(txn, level, constraints, since=since, limit=limit))

    @staticmethod
    def find_is_narrow(level: Level, constraints: list[Constraint]) -> bool:
        """Whether :meth:`find` looks up given values (a few keys) rather than scanning."""
        return narrowed_by_lookup(level, constraints)

    def ids_in_order(self, level: Level, keyword: str) -> list[str]:
        """Every id of ``level``, ascending by an indexed keyword's value (those without a
        value last), read from the lookup alone: for sorted, paged listings."""
        return self._read(lambda txn: reads.ids_in_order(txn, level, keyword))

    def query_answer(self, resource_id: str) -> tuple[dict[str, str], dict[str, int]]:
        """A match's tags (with its ancestors') and related-object counts, for C-FIND."""
        return self._read(lambda txn: reads.query_answer(txn, resource_id))

    def first_instance(self, resource_id: str) -> InstanceRef | None:
        """One instance below (or at) a resource; None when there is none."""
        return self._read(lambda txn: reads.first_instance(txn, resource_id))

    def changes(self, since: int = 0, limit: int = 100) -> ChangePage:
        return self._read(lambda txn: page_after(txn, since, limit))

    def last_change_page(self) -> ChangePage:
        return self._read(last_page)

    def visible_changes(self, since: int = 0, limit: int = 100) -> ChangePage:
        """Orthanc's view of the feed: changes of resources that still exist, no deletions."""
        return self._read(
            lambda txn: page_after(txn, since, limit, shown=of_existing_resource(txn))
        )

    def last_visible_change_page(self) -> ChangePage:
        return self._read(lambda txn: last_page(txn, shown=of_existing_resource(txn)))

    # --- exports log (Orthanc's /exports) ----------------------------------------------

    def log_exports(self, resource_ids: Iterable[str], remote: str) -> None:
        """Log resources sent to a modality or peer named ``remote``, one entry each."""
        ids = list(resource_ids)
        self._write(lambda txn: updates.log_exports(txn, ids, remote))

    def exports(self, since: int = 0, limit: int = 100) -> ChangePage:
        return self._read(lambda txn: page_after(txn, since, limit, "exports"))

    def last_export_page(self) -> ChangePage:
        return self._read(lambda txn: last_page(txn, "exports"))

    def clear_exports(self) -> None:
        self._write(lambda txn: txn.clear_feed("exports"))

    def clear_changes(self) -> None:
        def clear(txn: Txn) -> None:
            txn.clear_feed("changes")
            txn.clear_orthanc_numbers()

        self._write(clear)

    def last_change(self) -> int:
        return self._read(lambda txn: txn.last_change())

    def resource_statistics(self, resource_id: str) -> dict[str, int]:
        """Counts of what is below a resource, and its sizes (attachments included)."""
        return self._read(lambda txn: reads.resource_statistics(txn, resource_id))

    def statistics(self) -> dict[str, int]:
        stats = self._read(reads.statistics)
        stats["IndexDiskSize"] = self._environment.disk_size()
        return stats

    # --- storage limits --------------------------------------------------------------

    def usage(self) -> Usage:
        return self._read(reads.usage)

    def recycling_victims(
        self,
        incoming_size: int,
        limits: Limits,
        *,
        incoming: frozenset[str] = frozenset(),
        spared: frozenset[str] = frozenset(),
    ) -> list[str] | None:
        """The patients to recycle so ``incoming_size`` more bytes and the ``incoming``
        patients fit; ``None`` when nothing can make them fit. Neither the incoming
        patients nor the ``spared`` ones are chosen."""

        def decide(txn: Txn) -> list[str] | None:
            not_here = sum(1 for patient in incoming if txn.resource(patient) is None)
            candidates = reads.recycling_candidates(txn, set(incoming | spared))
            return choose_victims(reads.usage(txn), incoming_size, not_here, limits, candidates)

        return self._read(decide)

    def recycling_order(self, count: int) -> list[tuple[str, int]]:
        """The next ``count`` patients recycling would remove (id, bytes), oldest first."""
        return self._read(lambda txn: reads.recycling_order(txn, count))

    def protected_patients(self) -> list[str]:
        return self._read(reads.protected_patients)

    def patients_of_study(self, study_uid: str) -> set[str]:
        """The patient ids under which this Study Instance UID is indexed."""
        return self._read(lambda txn: reads.patients_of_study(txn, study_uid))

    # --- ingest and removal ----------------------------------------------------------

    @staticmethod
    def ids_of(instance: StoredInstance) -> dict[Level, str]:
        """The resource ids of an instance and its ancestors."""
        return instance_ids(instance)

    @staticmethod
    def ref_of(instance: StoredInstance) -> InstanceRef:
        """The ref an instance of the store has (or will have) in the index."""
        return InstanceRef(
            id=instance_ids(instance)[Level.INSTANCE],
            study_uid=instance.study_uid,
            series_uid=instance.series_uid,
            sop_uid=instance.sop_uid,
            sop_class_uid=json_value(instance.metadata, "SOPClassUID") or "",
            transfer_syntax=json_value(instance.metadata, "AvailableTransferSyntaxUID") or "",
        )

    def add_instances(
        self, items: list[tuple[StoredInstance, dict[Level, str]]], origin: Origin
    ) -> list[AddedInstance]:
        """Index instances (with the ids :meth:`ids_of` gave) and their changes, at once."""
        return self._write(lambda txn: updates.index_instances(txn, items, origin))

    def record_conversions(
        self, converted: list[tuple[StoredInstance, dict[Level, str], str]]
    ) -> int:
        """Received instances are converted: each (instance, ids, its received digest)
        record takes the content digest and the stored sizes, in one write (see
        :func:`hierarchy.record_conversion`); answers how many records were updated."""
        if not converted:
            return 0
        return self._write(lambda txn: sum(record_conversion(txn, *one) for one in converted))

    def remove(
        self, resource_id: str, reason: DeletionReason, *, clear_dirty: Iterable[str] = ()
    ) -> Removed:
        """Remove a resource and the ancestors it leaves empty, logging the deletions;
        in the same transaction, clear the dirty marks of ``clear_dirty``."""
        studies = list(clear_dirty)

        def remove(txn: Txn) -> Removed:
            removed = updates.remove_logged(txn, resource_id, reason)
            for study_uid in studies:
                txn.clear_dirty(study_uid)
            return removed

        return self._write(remove)

    def reconcile_study(
        self,
        study_uid: str,
        unindex: list[str],
        items: list[tuple[StoredInstance, dict[Level, str]]],
        origin: Origin,
    ) -> None:
        """Unindex ``unindex`` and index ``items`` of a study, and clear its dirty mark."""
        self._write(lambda txn: updates.reconcile_study(txn, study_uid, unindex, items, origin))

    def announce_stable(self, study_uid: str) -> None:
        self._write(lambda txn: updates.announce_stable(txn, study_uid))

    # --- studies being changed: recovered at start if a crash interrupts ----------------

    def mark_dirty(self, study_uids: Iterable[str]) -> None:
        uids = list(study_uids)
        self._write(lambda txn: [txn.mark_dirty(uid) for uid in uids])

    def clear_dirty(self, study_uids: Iterable[str]) -> None:
        uids = list(study_uids)
        self._write(lambda txn: [txn.clear_dirty(uid) for uid in uids])

    def dirty_studies(self) -> list[str]:
        return self._read(lambda txn: txn.dirty_studies())

    # --- annotations: metadata, attachments, protection --------------------------------

    def metadata(self, resource_id: str) -> dict[int, str]:
        """Key -> value of the resource's metadata; UnknownResource if it is absent."""
        return self._read(lambda txn: reads.metadata_of(txn, resource_id))

    def metadata_entry(self, resource_id: str, key: int) -> tuple[str, Revision] | None:
        """A metadata value with its revision (None: not set); UnknownResource if absent."""

        def read(txn: Txn) -> tuple[str, Revision] | None:
            reads.existing(txn, resource_id)
            return reads.metadata_entry(txn, resource_id, key)

        return self._read(read)

    def set_metadata(
        self,
        resource_id: str,
        key: int,
        value: str,
        if_match: str | None = None,
        check: bool = False,
    ) -> Revision:
        return self._write(
            lambda txn: updates.set_metadata(txn, resource_id, key, value, if_match, check)
        )

    def delete_metadata(
        self, resource_id: str, key: int, if_match: str | None = None, check: bool = False
    ) -> None:
        self._write(lambda txn: updates.delete_metadata(txn, resource_id, key, if_match, check))

    def attachments(self, resource_id: str) -> dict[int, dict[str, Any]]:
        """Content type -> attachment info; UnknownResource if the resource is absent."""
        return self._read(lambda txn: reads.attachments_of(txn, resource_id))

    def set_attachment(
        self,
        resource_id: str,
        content_type: int,
        info: dict[str, Any],
        if_match: str | None = None,
        check: bool = False,
    ) -> str | None:
        """Attach a stored blob; return the blob id it replaces, to delete."""
        return self._write(
            lambda txn: updates.set_attachment(
                txn, resource_id, content_type, info, if_match, check
            )
        )

    def delete_attachment(
        self,
        resource_id: str,
        content_type: int,
        if_match: str | None = None,
        check: bool = False,
    ) -> str:
        """Detach; return the blob id to delete."""
        return self._write(
            lambda txn: updates.delete_attachment(txn, resource_id, content_type, if_match, check)
        )

    def is_protected(self, patient_id: str) -> bool:
        return self._read(lambda txn: reads.is_protected(txn, patient_id))

    def set_protected(self, patient_id: str, protected: bool) -> None:
        self._write(lambda txn: updates.set_protected(txn, patient_id, protected))

    def study_annotations(self, study_uid: str) -> list[ResourceAnnotations]:
        """Metadata, attachments and protection of a study's resources, in one snapshot."""
        return self._read(lambda txn: reads.study_annotations(txn, study_uid))

    # --- settings changed at run time (Orthanc's /tools/default-encoding, ...) ----------

    def setting(self, name: str) -> str | None:
        return self._read(lambda txn: txn.get_global(_SETTING_PREFIX + name))

    def save_setting(self, name: str, value: str) -> None:
        self._write(lambda txn: txn.set_global(_SETTING_PREFIX + name, value))

    # --- modalities and peers changed over REST -----------------------------------------

    def registry_entries(self) -> dict[tuple[str, str], dict[str, Any] | None]:
        """(kind, name) -> settings (None: deleted), as kept by :meth:`save_registry_entry`."""
        return self._read(reads.registry_entries)

    def save_registry_entry(self, kind: str, name: str, document: dict[str, Any] | None) -> None:
        self._write(lambda txn: updates.save_registry_entry(txn, kind, name, document))

    # --- replication cursors -------------------------------------------------------------

    def cursor(self, name: str) -> int:
        return self._read(lambda txn: txn.counter(_CURSOR_PREFIX + name))

    def save_cursor(self, name: str, value: int) -> None:
        self._write(lambda txn: txn.set_global(_CURSOR_PREFIX + name, str(value)))
