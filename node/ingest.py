"""The one ingest component for every way in: DICOM, REST, CLI import, a peer's study
ZIP and an Orthanc peer's files.

Each way in hands over either one instance (:meth:`Ingestor.ingest`) or a study
ZIP from a peer (:meth:`Ingestor.merge_study`); both follow the same steps:

1. **Parse** (validate) what came, and compute each instance's resource ids once.
2. **Make room** by one rule: the incoming bytes and patients must fit the storage
   limits; the oldest unprotected patients that are not among the incoming ones
   are recycled, or (reject mode, or nothing left to recycle) everything is refused.
3. **Store durably** through ``storage``, which marks the study *pending* on disk
   before writing.
4. **Index** in one write transaction with the change entries (shared with
   concurrent senders by the writer's group commit), then acknowledge.

An instance that arrives alone (no other being ingested) and small enough takes a
shorter way when the node converts in the background (``[storage] background_conversion``,
:class:`Receive`): step 1 parses and checks the file whole but converts only the main
tags, step 3 stores the file as it came (``storage/received.py``), and once acknowledged
the instance is converted by :mod:`.conversion`. A copy already stored takes the long
way, which compares converted contents.

One crash protocol covers both: a study stays pending until it is sealed, and the
sealer holds off a study while an ingest of it is between steps 3 and 4
(:meth:`Ingestor.is_busy`), so a crash at any point leaves the study pending and
start-up recovery indexes what was stored. If indexing fails, what was just
stored is taken back, so a refused instance leaves nothing behind.

From step 3 to step 4 an ingest holds its study and patient shared in the store's
gate (:mod:`storage.gates`), which a deletion holds exclusively (:mod:`.deletion`):
a deletion can neither see an instance stored but not yet indexed nor unindex one it
did not delete, so none is ever left stored but unindexed.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO

from pacsnode.node.errors import InstanceConflict, StorageFull
from pacsnode.node.ids import Level
from pacsnode.node.index import Index, Origin
from pacsnode.node.recycling import Limits, StorageMode
from pacsnode.node.settings import ConflictPolicy
from pacsnode.storage.gates import resource_key, study_key
from pacsnode.storage.received import ReceivedInstance
from pacsnode.storage.results import MergeResult, PreparedInstance, PutStatus, StoredInstance
from pacsnode.storage.store import StudyStore

log = logging.getLogger(__name__)


#: the largest instance acknowledged before its conversion: it is held in memory whole
RECEIVED_MAX_BYTES = 64 << 20


@dataclass(frozen=True)
class Receive:
    """How to acknowledge an instance on the minimum (``storage/received.py``)."""

    #: parse and check an arriving file, and read the index's tags only
    parse: Callable[[bytes], ReceivedInstance]
    #: hand a received (stored, indexed) instance over for its conversion
    converted_later: Callable[[StoredInstance, dict[Level, str]], None]


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


class Ingestor:
    def __init__(
        self,
        store: StudyStore,
        index: Index,
        limits: Limits,
        policy: ConflictPolicy,
        recycle: Callable[[str], object],
        prepare: Callable[[bytes | Path | BinaryIO], PreparedInstance] | None = None,
        receive: Receive | None = None,
    ) -> None:
        self._store = store
        # where an arriving instance is parsed (node/preparation.py); by default, here
        self._prepare = prepare or store.prepare_instance
        # acknowledging on the minimum, when the node converts in the background
        self._receive = receive
        self._index = index
        self._limits = limits
        self._policy = policy
        self._recycle = recycle
        # Deciding what to recycle and storing must not interleave between senders,
        # or two of them could each see room for one instance.
        self._room_lock = threading.Lock()
        self._arrivals = 0  # instances being ingested now
        self._arrivals_lock = threading.Lock()

    # --- the crash protocol's side of sealing ------------------------------------------

    def is_busy(self, study_uid: str) -> bool:
        """Whether an instance of the study is stored but not yet indexed."""
        return self._store.gate.is_shared(study_key(study_uid))

    def _storing(self, study_uid: str, patient_ids: Iterable[str]) -> AbstractContextManager[None]:
        """Held from storing to indexing: deletions of the study or patients wait (the
        room lock, when taken, is always taken first)."""
        keys = [study_key(study_uid), *(resource_key(patient) for patient in patient_ids)]
        return self._store.gate.shared(keys)

    @contextlib.contextmanager
    def _room(self) -> Iterator[None]:
        if not self._limits.enabled:
            yield
            return
        with self._room_lock:
            yield

    # --- one instance ----------------------------------------------------------------------

    def ingest(self, source: bytes | Path | BinaryIO, origin: Origin | None = None) -> IngestResult:
        with self._arriving() as alone:
            # Alone, the sender waits for the conversion: it is put off (Receive). With
            # others arriving too, every core already works (the preparer's workers
            # convert them): putting it off would only add the bookkeeping.
            data = _small_enough_bytes(source) if self._receive is not None and alone else None
            if data is not None:
                result = self._ingest_received(data, origin or Origin())
                if result is not None:
                    return result
                source = data  # a copy is stored: compare the converted content
            return self._ingest_converted(source, origin)

    @contextlib.contextmanager
    def _arriving(self) -> Iterator[bool]:
        """Count an arriving instance; say whether it is the only one."""
        with self._arrivals_lock:
            self._arrivals += 1
            alone = self._arrivals == 1
        try:
            yield alone
        finally:
            with self._arrivals_lock:
                self._arrivals -= 1

    def _ingest_converted(
        self, source: bytes | Path | BinaryIO, origin: Origin | None
    ) -> IngestResult:
        prepared = self._prepare(source)
        instance = prepared.instance
        ids = self._index.ids_of(instance)
        known: bool | None = None  # whether the index has it: read at most once, if needed
        with self._room():
            if self._limits.enabled:
                known = self._index.instance_known(ids[Level.INSTANCE])
                if not known:
                    self._make_room(instance.stored_size, {ids[Level.PATIENT]})
            with self._storing(instance.study_uid, [ids[Level.PATIENT]]):
                return self._store_and_index(prepared, ids, known, origin or Origin())

    def _ingest_received(self, data: bytes, origin: Origin) -> IngestResult | None:
        """Acknowledge on the minimum (``storage/received.py``): the bytes durable, the
        main tags indexed, the conversion left to the background. ``None``, having stored
        nothing, when a copy of the instance is already stored or indexed."""
        assert self._receive is not None
        received = self._receive.parse(data)
        instance = received.instance
        ids = self._index.ids_of(instance)
        with self._room():
            if self._limits.enabled:
                if self._index.instance_known(ids[Level.INSTANCE]):
                    return None
                self._make_room(instance.stored_size, {ids[Level.PATIENT]})
            with self._storing(instance.study_uid, [ids[Level.PATIENT]]):
                if self._store.put_received(received) is None:
                    return None
                try:
                    self._index.add_instances([(instance, ids)], origin)
                except Exception:
                    self._store.delete_instances(instance.study_uid, {instance.sop_uid})
                    raise
        self._receive.converted_later(instance, ids)
        return IngestResult(IngestStatus.SUCCESS, ids, instance)

    def _store_and_index(
        self,
        prepared: PreparedInstance,
        ids: dict[Level, str],
        known: bool | None,
        origin: Origin,
    ) -> IngestResult:
        instance = prepared.instance
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
        if put.status is PutStatus.ALREADY_STORED:
            if known is None:
                known = self._index.instance_known(ids[Level.INSTANCE])
            if known:
                # With overwrite, a copy sent again "replaces" the stored one, as Orthanc's
                # OverwriteInstances answers; being identical, nothing needs writing.
                status = (
                    IngestStatus.SUCCESS
                    if self._policy is ConflictPolicy.OVERWRITE
                    else IngestStatus.ALREADY_STORED
                )
                return IngestResult(status, ids, instance)
        try:
            self._index.add_instances([(instance, ids)], origin)
        except Exception:
            # Take back what was just stored (an overwritten copy cannot be restored;
            # recovery re-indexes it at the next start).
            if put.status is PutStatus.STORED and self._policy is not ConflictPolicy.OVERWRITE:
                self._store.delete_instances(instance.study_uid, {instance.sop_uid})
            raise
        return IngestResult(IngestStatus.SUCCESS, ids, instance)

    # --- a study ZIP from a peer -------------------------------------------------------------

    def merge_study(self, path: Path, origin: Origin) -> MergeResult:
        """Validate and merge a peer's study ZIP, then index what it added.

        Instances already here are kept; different content under a known SOP
        Instance UID is reported as a conflict and kept as it is.
        """
        added_ids: dict[str, dict[Level, str]] = {}
        received_patients: set[str] = set()
        with contextlib.ExitStack() as held, self._room():

            def hold(study_uid: str, received: list[StoredInstance]) -> None:
                # Called by the store once the ZIP is valid, before it takes the study's
                # lock: from here until indexed, the study is neither sealed nor deleted.
                received_patients.update(self._index.ids_of(i)[Level.PATIENT] for i in received)
                held.enter_context(self._storing(study_uid, received_patients))

            def admit(added: list[StoredInstance]) -> None:
                # Called by the store under the study's lock, before it writes.
                for instance in added:
                    added_ids[instance.sop_uid] = self._index.ids_of(instance)
                patients = {ids[Level.PATIENT] for ids in added_ids.values()}
                # Patients holding this study under another PatientID, and those this
                # merge holds, are spared too: recycling them would delete what it holds.
                spared = received_patients | self._index.patients_of_study(added[0].study_uid)
                self._make_room(sum(i.stored_size for i in added), patients, spared)

            result = self._store.merge_study_zip(path, admit, hold_pending=True, hold=hold)
            if result.added:
                items = [(i, added_ids[i.sop_uid]) for i in result.added]
                try:
                    self._index.add_instances(items, origin)
                except Exception:
                    added = {i.sop_uid for i in result.added}
                    self._store.delete_instances(result.study_uid, added)
                    raise
        return result

    # --- limits ---------------------------------------------------------------------------

    def _make_room(
        self, incoming_size: int, incoming_patients: set[str], spared: set[str] | None = None
    ) -> None:
        """Recycle until the incoming bytes and patients fit; StorageFull if they cannot.

        The incoming patients (and ``spared``) are never recycled to make room.
        """
        if not self._limits.enabled:
            return
        victims = self._index.recycling_victims(
            incoming_size,
            self._limits,
            incoming=frozenset(incoming_patients),
            spared=frozenset(spared or ()),
        )
        if victims is None:
            raise StorageFull(self._full_message())
        for patient_id in victims:
            log.info("recycling patient %s to make room", patient_id)
            self._recycle(patient_id)

    def _full_message(self) -> str:
        if self._limits.mode is StorageMode.REJECT:
            return "storage full: the configured limit is reached (maximum_storage_mode = reject)"
        return "storage full: no unprotected patient is left to recycle"


def _small_enough_bytes(source: bytes | Path | BinaryIO) -> bytes | None:
    """The instance's bytes, when it is small enough to be taken on the minimum (a file
    or a stream is read into memory then; a larger one is parsed where it lies)."""
    if isinstance(source, bytes):
        return source if len(source) <= RECEIVED_MAX_BYTES else None
    if isinstance(source, Path):
        if source.stat().st_size > RECEIVED_MAX_BYTES:
            return None
        return source.read_bytes()
    position = source.tell()
    data = source.read(RECEIVED_MAX_BYTES + 1)
    source.seek(position)
    return data if len(data) <= RECEIVED_MAX_BYTES else None
