"""The one ingest pipeline for every way in (DICOM, REST, peers, CLI import).

Parse once; make room (recycling) if a limit would be passed; store durably
via ``storage``; index in one write transaction (shared with concurrent
senders by the writer's group commit) with its changes; then acknowledge.
If indexing fails, the stored copy is removed again, so a refused instance
leaves nothing behind.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO

from pacsnode.node import changes
from pacsnode.node.config import ConflictPolicy
from pacsnode.node.errors import InstanceConflict, StorageFull
from pacsnode.node.hierarchy import TOTAL_SIZE, AddedInstance, Origin, add_instance, count_name
from pacsnode.node.ids import Level, resource_ids
from pacsnode.node.index import Index, Txn, now_string
from pacsnode.node.maintags import json_value
from pacsnode.node.recycling import Limits, StorageMode, Usage, choose_victims, fits
from pacsnode.node.writer import IndexWriter
from pacsnode.storage.results import PreparedInstance, PutStatus, StoredInstance
from pacsnode.storage.store import StudyStore

log = logging.getLogger(__name__)


class IngestStatus(StrEnum):
    SUCCESS = "Success"
    ALREADY_STORED = "AlreadyStored"


@dataclass(frozen=True)
class IngestResult:
    status: IngestStatus
    ids: dict[Level, str]
    instance: StoredInstance
    #: a different instance with this SOP Instance UID was already stored and kept
    conflict: bool = False


def instance_ids(instance: StoredInstance) -> dict[Level, str]:
    patient_key = json_value(instance.metadata, "PatientID") or ""
    return resource_ids(patient_key, instance.study_uid, instance.series_uid, instance.sop_uid)


def index_instance(txn: Txn, instance: StoredInstance, origin: Origin) -> AddedInstance:
    """Add an instance to the index with its change entries (one transaction)."""
    now = now_string()
    added = add_instance(txn, instance, origin, now)
    for level in added.created:
        if level is not Level.INSTANCE:
            changes.append(txn, changes.NEW_CHANGE_OF_LEVEL[level], level, added.ids[level], now)
    changes.append(
        txn, changes.ChangeType.NEW_INSTANCE, Level.INSTANCE, added.ids[Level.INSTANCE], now
    )
    return added


class Ingestor:
    def __init__(
        self,
        store: StudyStore,
        index: Index,
        writer: IndexWriter,
        limits: Limits,
        policy: ConflictPolicy,
        recycle: Callable[[str], object],
    ) -> None:
        self._store = store
        self._index = index
        self._writer = writer
        self._limits = limits
        self._policy = policy
        self._recycle = recycle
        # Deciding what to recycle and storing must not interleave between senders,
        # or two of them could each see room for one instance.
        self._room_lock = threading.Lock()

    def ingest(self, source: bytes | Path | BinaryIO, origin: Origin | None = None) -> IngestResult:
        prepared = self._store.prepare_instance(source)
        origin = origin or Origin()
        if not self._limits.enabled:
            return self._store_and_index(prepared, origin)
        with self._room_lock:
            self._make_room(prepared)
            return self._store_and_index(prepared, origin)

    def _make_room(self, prepared: PreparedInstance) -> None:
        ids = instance_ids(prepared.instance)

        def decide(txn: Txn) -> list[str] | None:
            if txn.resource(ids[Level.INSTANCE]) is not None:
                return []  # already indexed: storing it again adds nothing
            usage = Usage(txn.counter(TOTAL_SIZE), txn.counter(count_name(Level.PATIENT)))
            adds_patient = txn.resource(ids[Level.PATIENT]) is None
            return choose_victims(
                usage,
                prepared.instance.stored_size,
                adds_patient,
                self._limits,
                self._candidates(txn, {ids[Level.PATIENT]}),
            )

        victims = self._index.read(decide)
        if victims is None:
            raise StorageFull(self._full_message())
        for patient_id in victims:
            log.info("recycling patient %s to make room", patient_id)
            self._recycle(patient_id)

    def check_room(self, incoming_size: int) -> None:
        """Before accepting a batch from a peer: refuse it if a reject-mode limit is reached."""
        if not self._limits.enabled or self._limits.mode is not StorageMode.REJECT:
            return

        def usage(txn: Txn) -> Usage:
            return Usage(txn.counter(TOTAL_SIZE), txn.counter(count_name(Level.PATIENT)))

        if not fits(self._index.read(usage), incoming_size, True, self._limits):
            raise StorageFull(self._full_message())

    def enforce_limits(self, keep: set[str]) -> None:
        """After a batch arrived from a peer: recycle others until within the limits.

        The patients in ``keep`` (those just received) are never chosen; when nothing
        else can go, the node stays over its limit and says so rather than drop them.
        """
        if not self._limits.enabled:
            return
        with self._room_lock:

            def decide(txn: Txn) -> list[str] | None:
                usage = Usage(txn.counter(TOTAL_SIZE), txn.counter(count_name(Level.PATIENT)))
                return choose_victims(usage, 0, False, self._limits, self._candidates(txn, keep))

            victims = self._index.read(decide)
            if victims is None:
                log.warning("storage is over its limit and nothing more can be recycled")
                return
            for patient_id in victims:
                log.info("recycling patient %s after a transfer from a peer", patient_id)
                self._recycle(patient_id)

    @staticmethod
    def _candidates(txn: Txn, keep: set[str]) -> Iterator[tuple[str, int]]:
        for patient_id in txn.patients_oldest_first():
            if patient_id in keep or txn.is_protected(patient_id):
                continue
            record = txn.resource(patient_id)
            if record is not None:
                yield patient_id, record["size"]

    def _full_message(self) -> str:
        if self._limits.mode is StorageMode.REJECT:
            return "storage full: the configured limit is reached (maximum_storage_mode = reject)"
        return "storage full: no unprotected patient is left to recycle"

    def _store_and_index(self, prepared: PreparedInstance, origin: Origin) -> IngestResult:
        instance = prepared.instance
        ids = instance_ids(instance)
        put = self._store.put_prepared(prepared, overwrite=self._policy is ConflictPolicy.OVERWRITE)
        if put.status is PutStatus.CONFLICT:
            if self._policy is ConflictPolicy.REJECT:
                raise InstanceConflict(
                    f"instance {instance.sop_uid} is already stored with different content"
                )
            log.warning(
                "instance %s: different content under a known UID; kept the first", instance.sop_uid
            )
            return IngestResult(IngestStatus.ALREADY_STORED, ids, instance, conflict=True)
        if put.status is PutStatus.ALREADY_STORED and self._index.read(
            lambda txn: txn.resource(ids[Level.INSTANCE]) is not None
        ):
            return IngestResult(IngestStatus.ALREADY_STORED, ids, instance)
        try:
            self._writer.run(lambda txn: index_instance(txn, instance, origin))
        except Exception:
            # Take back what was just stored (an overwritten copy cannot be restored;
            # recovery re-indexes it at the next start).
            if put.status is PutStatus.STORED and self._policy is not ConflictPolicy.OVERWRITE:
                self._store.delete_instances(instance.study_uid, {instance.sop_uid})
            raise
        return IngestResult(IngestStatus.SUCCESS, ids, instance)
