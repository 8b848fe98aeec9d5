"""The study store: one archive-direct ZIP per study, with a staging area in front.

Writes to a study are serialised by a per-study lock; reads take no lock and
see staged and sealed instances alike. One process owns a data directory at a
time (an exclusive ``flock`` on ``.lock``).

Layout under ``root``::

    studies/{xx}/{S}/study.zip          the sealed study (with the default, local backend)
    studies/{xx}/{S}/staging/{I}.zip    one durable file per instance not yet sealed
    studies/{xx}/{S}/staging/{I}.dcm    an instance as received, not yet converted into
                                        its staging ZIP (:mod:`storage.received`)
    pending/{S}                         marker: the study has staging or may have leftovers

Sealed study ZIPs are kept by a storage backend (:mod:`storage.backends`): on the data
disk by default, or elsewhere (an S3 bucket); staging and markers stay on the data disk.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import logging
import mmap
import os
import tempfile
import threading
import time
import weakref
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from pydicom.dataset import Dataset

from pacsnode.storage import recovery
from pacsnode.storage.archive import (
    InstanceSource,
    build_staged,
    canonical_json,
    open_zip,
    read_staged,
    study_metadata_gzip,
    write_study_zip,
)
from pacsnode.storage.backends.base import SealedBackend
from pacsnode.storage.backends.local import LocalBackend
from pacsnode.storage.convert import read_p10_located, split_dataset
from pacsnode.storage.deflated import check_inflated_size
from pacsnode.storage.durable import (
    fsync_dir,
    make_dirs_durable,
    remove_durable,
    remove_tree_durable,
    write_atomic,
)
from pacsnode.storage.errors import InvalidDicom, NotFound, StorageError
from pacsnode.storage.fidelity import build_layout
from pacsnode.storage.gates import KeyedGate
from pacsnode.storage.gzip_parts import DeflatedPart, read_deflated_part
from pacsnode.storage.layout import (
    RECEIVED_SUFFIX,
    bulk_entry,
    check_uid,
    frame_entry,
    is_valid_uid,
    metadata_entry,
    received_instance_path,
    staged_instance_path,
    study_dir,
)
from pacsnode.storage.limits import ArchiveLimits
from pacsnode.storage.multipart import Part
from pacsnode.storage.received import ReceivedInstance
from pacsnode.storage.received_zip import validate_study_zip
from pacsnode.storage.regeneration import (
    dataset_of,
    frame_infos,
    metadata_as_sent,
    p10_of,
    read_part_entry,
)
from pacsnode.storage.results import (
    MergeResult,
    PreparedInstance,
    PutResult,
    PutStatus,
    StoredInstance,
    StudySize,
    stored_instance,
)
from pacsnode.storage.study_files import StudyFiles

# zlib level 3 deflates a CT frame about 3x faster than 6 for ~2 % more bytes.
DEFAULT_COMPRESSION_LEVEL = 3
# how often a conversion starts again when its received file changed under it
_READ_ATTEMPTS = 5
log = logging.getLogger(__name__)


class StudyStore:
    """Archive-direct study ZIPs under ``root``; see the module docstring."""

    def __init__(
        self,
        root: Path,
        *,
        compression: bool = True,
        compression_level: int = DEFAULT_COMPRESSION_LEVEL,
        stable_age_s: float = 60.0,
        archive_limits: ArchiveLimits | None = None,
        backend: SealedBackend | None = None,
    ) -> None:
        self.root = Path(root)
        #: where sealed study ZIPs are kept (the data disk unless a plugin says otherwise)
        self.backend: SealedBackend = backend if backend is not None else LocalBackend(self.root)
        #: how far a peer's study ZIP may inflate (checked before anything is merged)
        self.archive_limits = archive_limits or ArchiveLimits()
        self.level: int | None = compression_level if compression else None
        self.stable_age_s = stable_age_s
        # Re-entrant: a read under the lock (a deletion listing the study) converts the
        # study's received files, which takes the lock again.
        self._locks: weakref.WeakValueDictionary[str, threading.RLock] = (
            weakref.WeakValueDictionary()
        )
        self._locks_guard = threading.Lock()
        #: held shared from storing an instance to indexing it, exclusive to delete
        #: (:mod:`storage.gates`); taken before a study's lock, never inside it
        self.gate = KeyedGate()
        self._last_write: dict[str, float] = {}
        #: study -> the message of its last failed seal, said once (see seal_quiet)
        self._seal_failures: dict[str, str] = {}
        self._lock_file: BinaryIO | None = None
        self._files = StudyFiles(self.root, self.backend, self._convert_on_read)

    # --- lifecycle ---------------------------------------------------------------

    def open(self) -> recovery.RecoveryReport:
        """Take the data directory and recover from any crash; return what recovery did."""
        self.root.mkdir(parents=True, exist_ok=True)
        for directory in (self.root / "studies", self.root / "pending"):
            make_dirs_durable(directory, self.root.parent)
        handle = open(self.root / ".lock", "wb")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise StorageError(f"{self.root} is in use by another pacsnode process") from None
        self._lock_file = handle
        try:
            self.backend.open()
            report = recovery.recover(self.root, self.backend)
        except BaseException:
            self.close()
            raise
        now = time.monotonic()
        for study_uid in report.pending:
            self._last_write[study_uid] = now
        return report

    def close(self) -> None:
        self._files.sealed.clear()
        self.backend.close()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def __enter__(self) -> StudyStore:
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _study_lock(self, study_uid: str) -> threading.RLock:
        with self._locks_guard:
            lock = self._locks.get(study_uid)
            if lock is None:
                lock = threading.RLock()
                self._locks[study_uid] = lock
            return lock

    # --- ingest ------------------------------------------------------------------

    def prepare_instance(self, source: bytes | Path | BinaryIO) -> PreparedInstance:
        """Parse and convert an instance without writing anything (the CPU-bound half)."""
        return prepare_instance(source, self.archive_limits, self.level)

    def put_instance(
        self, source: bytes | Path | BinaryIO, *, overwrite: bool = False
    ) -> PutResult:
        """Store one DICOM instance durably (staged until its study is sealed)."""
        return self.put_prepared(self.prepare_instance(source), overwrite=overwrite)

    def put_prepared(self, prepared: PreparedInstance, *, overwrite: bool = False) -> PutResult:
        """Store a prepared instance durably.

        An identical copy already stored gives ``ALREADY_STORED`` and writes
        nothing; a different copy under the same SOP Instance UID gives
        ``CONFLICT`` and writes nothing unless ``overwrite``.
        """
        instance = prepared.instance
        with self._study_lock(instance.study_uid):
            existing = self._files.existing_digest(instance.study_uid, instance.sop_uid)
            if existing == instance.digest:
                return PutResult(PutStatus.ALREADY_STORED, instance, prepared.source_size)
            if existing is not None and not overwrite:
                return PutResult(PutStatus.CONFLICT, instance, prepared.source_size, existing)
            self._files.mark_pending(instance.study_uid)
            target = staged_instance_path(self.root, instance.study_uid, instance.sop_uid)
            make_dirs_durable(target.parent, self.root)
            write_atomic(target, prepared.staged_bytes)
            # an overwritten copy's received file, which recovery would take over the new ZIP
            remove_durable(received_instance_path(self.root, instance.study_uid, instance.sop_uid))
            self._last_write[instance.study_uid] = time.monotonic()
        return PutResult(PutStatus.STORED, instance, prepared.source_size)

    # --- ingest on the minimum (storage/received.py) ---------------------------------

    def put_received(self, received: ReceivedInstance) -> PutResult | None:
        """Store an instance as it was received, durably, to be converted later.

        ``None`` (nothing written) when a copy of the instance is already stored: telling
        an identical copy from a different one takes the converted content, so the caller
        stores it the converting way (:meth:`put_prepared`).
        """
        instance = received.instance
        with self._study_lock(instance.study_uid):
            if self._files.holds(instance.study_uid, instance.sop_uid):
                return None
            self._files.mark_pending(instance.study_uid)
            target = received_instance_path(self.root, instance.study_uid, instance.sop_uid)
            make_dirs_durable(target.parent, self.root)
            write_atomic(target, received.data)
            self._last_write[instance.study_uid] = time.monotonic()
        return PutResult(PutStatus.STORED, instance, len(received.data))

    def received_instances(self) -> list[tuple[str, str]]:
        """(study, SOP Instance UID) of every instance received and not yet converted."""
        return [
            (study_uid, sop_uid)
            for study_uid in self.pending_studies()
            for sop_uid in self._files.received_sop_uids(study_uid)
        ]

    def convert_received(
        self,
        study_uid: str,
        series_uid: str,
        sop_uid: str,
        prepare: Callable[[Path], PreparedInstance] | None = None,
    ) -> StoredInstance | None:
        """Convert the instance's received file into its staging ZIP (with ``prepare``,
        which may run elsewhere; by default here) and answer the instance as it is now
        stored, converted by this call or before; ``None`` when the store does not hold it
        (deleted, or moved to ``quarantine/`` because it could not be converted)."""
        try:
            prepared = self._convert(study_uid, sop_uid, prepare or self.prepare_instance)
        except InvalidDicom:
            return None
        except _NotWritten as exc:
            raise exc.reason from None
        if prepared is not None:  # as written just now: no need to read it back
            return prepared.instance
        try:
            with self._files.instance_source(study_uid, series_uid, sop_uid) as source:
                return stored_instance(source)
        except NotFound:
            return None

    def _convert_on_read(self, study_uid: str, sop_uid: str) -> InstanceSource | None:
        """A reader met a received file: convert it here and now. A file that cannot be
        converted is moved aside and logged, and the read goes on without it; one whose
        staging ZIP cannot be written (a full disk) is answered converted in memory, so
        that what was acknowledged stays readable."""
        try:
            self._convert(study_uid, sop_uid, self.prepare_instance)
        except InvalidDicom:
            pass
        except _NotWritten as exc:
            log.warning(
                "instance %s of study %s stays as received for now: %s",
                sop_uid,
                study_uid,
                exc.reason.message,
            )
            return read_staged(zipfile.ZipFile(io.BytesIO(exc.prepared.staged_bytes)))
        return None

    def _convert(
        self, study_uid: str, sop_uid: str, prepare: Callable[[Path], PreparedInstance]
    ) -> PreparedInstance | None:
        """Write the received file's staging ZIP beside it: parsed and converted without
        the study's lock, written under it if the file is still the one converted.

        The ZIP is not fsynced (the fsyncs would double an ingest's): the received file,
        durable, stays until the seal has put the instance in the study ZIP, and recovery
        converts again a received file found with its ZIP (which a crash may have left
        anyhow). Answers what it wrote (``None``: nothing to convert, or converted before);
        InvalidDicom, after moving the file to ``quarantine/``, when it cannot be
        converted."""
        path = received_instance_path(self.root, study_uid, sop_uid)
        target = staged_instance_path(self.root, study_uid, sop_uid)
        for _ in range(_READ_ATTEMPTS):
            before = _file_identity(path)
            if before is None or target.exists():
                return None
            try:
                prepared = prepare(path)
            except FileNotFoundError:
                continue  # converted or deleted meanwhile: look again
            except InvalidDicom as exc:
                with self._study_lock(study_uid):
                    if _file_identity(path) == before:
                        moved = recovery.quarantine(self.root, path)
                        log.error(
                            "instance %s of study %s was received but cannot be converted "
                            "(%s); moved to %s",
                            sop_uid,
                            study_uid,
                            exc.message,
                            moved,
                        )
                raise
            with self._study_lock(study_uid):
                if _file_identity(path) != before:
                    continue
                if target.exists():
                    return None
                try:
                    write_atomic(target, prepared.staged_bytes, durable=False)
                except StorageError as exc:
                    raise _NotWritten(prepared, exc) from exc
            return prepared
        raise StorageError(f"instance {sop_uid} kept changing while being converted")

    def merge_study_zip(
        self,
        path: Path | BinaryIO,
        admit: Callable[[list[StoredInstance]], None] | None = None,
        *,
        hold_pending: bool = False,
        hold: Callable[[str, list[StoredInstance]], None] | None = None,
    ) -> MergeResult:
        """Merge a study ZIP made by another node: union of instances by SOP Instance UID.

        The ZIP is validated whole first (:func:`validate_study_zip`); an instance
        present here with different content is reported as a conflict and kept as it is.
        ``admit`` sees the instances about to be added before anything is written and
        may refuse them all by raising. ``hold_pending`` leaves the study pending (so
        recovered at the next start), like a put does, until it is next sealed: for a
        caller that indexes what was merged afterwards. ``hold(study_uid, instances)`` is
        called once the ZIP is valid and before the study's lock is taken, with every
        instance received: for a caller that holds the study in :attr:`gate` until it has
        indexed them (the gate is always taken before a study's lock, never inside it).
        """
        with open_zip(path) as incoming:
            study_uid, received = validate_study_zip(incoming, self.archive_limits)
            if hold is not None:
                hold(study_uid, [stored_instance(source) for source in received.values()])
            result = MergeResult(study_uid)
            with self._study_lock(study_uid):
                current = self._files.sources(study_uid)
                for sop_uid, source in received.items():
                    here = current.get(sop_uid)
                    if here is None:
                        result.added.append(stored_instance(source))
                        current[sop_uid] = source
                    elif here.digest == source.digest:
                        result.already_stored.append(sop_uid)
                    else:
                        result.conflicts.append(sop_uid)
                if result.added:
                    if admit is not None:
                        admit(result.added)
                    self._files.mark_pending(study_uid)
                    self._rewrite(study_uid, list(current.values()), keep_pending=hold_pending)
                    if hold_pending:
                        self._last_write[study_uid] = time.monotonic()
        return result

    # --- sealing -----------------------------------------------------------------

    def pending_studies(self) -> list[str]:
        """Studies with staged instances or an unfinished rewrite."""
        return sorted(
            entry.name for entry in (self.root / "pending").iterdir() if is_valid_uid(entry.name)
        )

    def seal(self, study_uid: str, busy: Callable[[str], bool] | None = None) -> bool:
        """Fold the study's staged instances into its ZIP; return whether anything was sealed.

        ``busy(study_uid)``, asked under the study's lock, may hold the seal off: a study
        whose last write is not yet indexed must stay pending, so a crash recovers it.
        """
        return bool(self._seal(study_uid, busy))

    def _seal(self, study_uid: str, busy: Callable[[str], bool] | None) -> bool | None:
        """:meth:`seal`, answering ``None`` when ``busy`` held it off."""
        check_uid(study_uid, "StudyInstanceUID")
        with self._study_lock(study_uid):
            if busy is not None and busy(study_uid):
                return None
            staged = self._files.staged_paths(study_uid)
            if self._files.received_sop_uids(study_uid):
                # (a full disk, most likely: the seal needs room too)
                raise StorageError(f"study {study_uid} has instances not converted yet")
            if not staged:
                self._files.clear_pending(study_uid)
                return False
            self._rewrite(study_uid, list(self._files.sources(study_uid).values()))
            return True

    def seal_quiet(
        self, now: float | None = None, busy: Callable[[str], bool] | None = None
    ) -> list[str]:
        """Seal every pending study that has received nothing for ``stable_age_s``
        (and is not ``busy``, see :meth:`seal`)."""
        now = time.monotonic() if now is None else now
        sealed = []
        for study_uid in self.pending_studies():
            last = self._last_write.get(study_uid)
            if last is None or now - last >= self.stable_age_s:
                try:
                    if self._seal(study_uid, busy) is None:
                        continue  # held off: sealed on a later round
                except StorageError as exc:  # the others still get sealed
                    self._seal_failed(study_uid, exc.message)
                    continue
                if self._seal_failures.pop(study_uid, None) is not None:
                    log.info("study %s sealed after all", study_uid)
                if self._last_write.get(study_uid) == last:
                    self._last_write.pop(study_uid, None)
                sealed.append(study_uid)
        return sealed

    def _seal_failed(self, study_uid: str, message: str) -> None:
        """Say a failed seal once (it is retried every round: a storage backend that is
        down fails each time the same way until it is back)."""
        if self._seal_failures.get(study_uid) != message:
            log.error("sealing study %s failed: %s; retrying", study_uid, message)
        else:
            log.debug("sealing study %s failed again: %s", study_uid, message)
        self._seal_failures[study_uid] = message

    def _rewrite(
        self, study_uid: str, sources: list[InstanceSource], *, keep_pending: bool = False
    ) -> None:
        """Replace the study ZIP by one holding exactly ``sources``; drop its staging.

        The caller holds the study lock and has marked the study pending, so a
        crash at any point leaves the old or new ZIP plus leftovers recovery resolves.
        """
        staged = self._files.staged_paths(study_uid)
        self._files.sealed.forget(study_uid)
        if sources:
            self.backend.put(study_uid, lambda handle: write_study_zip(handle, study_uid, sources))
        else:
            self.backend.delete(study_uid)
        # each staging ZIP, then the file it was converted from (if any): a crash between
        # the two leaves a received file whose instance the sealed ZIP holds, which
        # recovery removes
        for path in staged:
            for leftover in (path, path.with_suffix(RECEIVED_SUFFIX)):
                with contextlib.suppress(FileNotFoundError):
                    leftover.unlink()
        if staged:
            fsync_dir(staged[0].parent)  # once for all of them
        self._files.remove_empty_dirs(study_uid)
        if not keep_pending:
            self._files.clear_pending(study_uid)

    # --- reads -------------------------------------------------------------------

    def check_study(self, study_uid: str) -> tuple[list[str], dict[str, str]]:
        """Read every entry of the study's ZIP (CRCs checked) and its inventory, without
        changing anything: (problems found, SOP Instance UID -> digest)."""
        problems: list[str] = []
        try:
            with self.backend.get(study_uid) as blob, zipfile.ZipFile(blob) as archive:
                bad = archive.testzip()
            if bad is not None:
                problems.append(f"study {study_uid}: damaged entry {bad}")
        except FileNotFoundError:
            pass  # nothing sealed yet
        except (zipfile.BadZipFile, OSError) as exc:
            return [f"study {study_uid}: unreadable ZIP: {exc}"], {}
        try:
            return problems, self.inventory(study_uid)
        except StorageError as exc:
            return [*problems, f"study {study_uid}: {exc.message}"], {}

    def study_exists(self, study_uid: str) -> bool:
        if study_dir(self.root, study_uid).is_dir():
            return True
        return self.backend.version(study_uid) is not None

    def study_uids(self) -> Iterator[str]:
        """Every study stored (sealed or staged), in no particular order."""
        sealed: set[str] = set()
        for study_uid in self.backend.study_uids():
            sealed.add(study_uid)
            yield study_uid
        # A study with staging is pending (marked before its first staging file is
        # written), so the pending markers, not another walk of the tree, name the rest.
        # A marker alone is not a study: a deletion cut by a crash leaves one, kept for
        # the node to reconcile, with nothing left behind it.
        for study_uid in self.pending_studies():
            if study_uid not in sealed and study_dir(self.root, study_uid).is_dir():
                yield study_uid

    def instances(self, study_uid: str) -> list[StoredInstance]:
        check_uid(study_uid, "StudyInstanceUID")
        sources = self._files.sources(study_uid)
        if not sources:
            raise NotFound(f"no study {study_uid}")
        ordered = sorted(sources.values(), key=InstanceSource.sort_key)
        return [stored_instance(source) for source in ordered]

    def inventory(self, study_uid: str) -> dict[str, str]:
        """SOP Instance UID -> content digest, for peers comparing what each side holds."""
        return {instance.sop_uid: instance.digest for instance in self.instances(study_uid)}

    def study_metadata(self, study_uid: str) -> list[dict[str, Any]]:
        return [instance.metadata for instance in self.instances(study_uid)]

    def study_metadata_gzip(self, study_uid: str) -> bytes:
        """The study metadata as gzip bytes: the stored entry itself once sealed."""
        check_uid(study_uid, "StudyInstanceUID")
        if not self._files.staged_paths(study_uid):
            # The entry alone, read from the ZIP's directory: parsing the whole study (what
            # the sealed cache holds) is what this answer avoids.
            with contextlib.suppress(FileNotFoundError, KeyError):
                with self.backend.get(study_uid) as blob, open_zip(blob) as archive:
                    return archive.read(metadata_entry(study_uid))
        return study_metadata_gzip(self.study_metadata(study_uid))

    def instance_metadata(self, study_uid: str, series_uid: str, sop_uid: str) -> dict[str, Any]:
        with self._files.instance_source(study_uid, series_uid, sop_uid) as source:
            return source.metadata

    def instance_metadata_as_sent(
        self, study_uid: str, series_uid: str, sop_uid: str
    ) -> dict[str, Any]:
        """:meth:`instance_metadata` with DS and IS values as text, as the file wrote them
        (for views that show values as text; DICOMweb wants the numbers)."""
        with self._files.instance_source(study_uid, series_uid, sop_uid) as source:
            return metadata_as_sent(source)

    def frame(self, study_uid: str, series_uid: str, sop_uid: str, number: int) -> Part:
        """One frame (1-based) as its stored part, with media type and boundary."""
        name = frame_entry(study_uid, series_uid, sop_uid, number)
        return self._read_part(study_uid, series_uid, sop_uid, name)

    def frame_deflated(
        self, study_uid: str, series_uid: str, sop_uid: str, number: int
    ) -> DeflatedPart | None:
        """Frame ``number`` as a gzip body of its stored deflate stream; ``None`` when it is
        not stored deflated (or moved meanwhile): :meth:`frame` then."""
        name = frame_entry(study_uid, series_uid, sop_uid, number)
        with self._files.instance_source(study_uid, series_uid, sop_uid) as source:
            info = next((i for i in source.entries if i.filename == name), None)
            if info is None:
                raise NotFound(f"no {name}")
            return read_deflated_part(source.archive, info)

    def frames(self, study_uid: str, series_uid: str, sop_uid: str) -> list[Part]:
        """Every frame of the instance, in order (none for an instance without pixels)."""
        with self._files.instance_source(study_uid, series_uid, sop_uid) as source:
            return [read_part_entry(source.archive, info) for info in frame_infos(source)]

    def bulk(self, study_uid: str, series_uid: str, sop_uid: str, key: str) -> Part:
        name = bulk_entry(study_uid, series_uid, sop_uid, key)
        return self._read_part(study_uid, series_uid, sop_uid, name)

    def _read_part(self, study_uid: str, series_uid: str, sop_uid: str, name: str) -> Part:
        with self._files.instance_source(study_uid, series_uid, sop_uid) as source:
            for info in source.entries:
                if info.filename == name:
                    return read_part_entry(source.archive, info)
        raise NotFound(f"no {name}")

    def instance_p10(self, study_uid: str, series_uid: str, sop_uid: str) -> bytes:
        """The instance regenerated as DICOM P10."""
        with self._files.instance_source(study_uid, series_uid, sop_uid) as source:
            return p10_of(source)

    def instance_dataset(self, study_uid: str, series_uid: str, sop_uid: str) -> Dataset:
        """The instance as a pydicom Dataset (with file meta), for senders that encode it."""
        with self._files.instance_source(study_uid, series_uid, sop_uid) as source:
            return dataset_of(source)

    def iter_p10(
        self, study_uid: str, series_uid: str | None = None
    ) -> Iterator[tuple[StoredInstance, bytes]]:
        """Each instance of a study (or one series) as P10, one at a time."""
        check_uid(study_uid, "StudyInstanceUID")
        sources = self._files.sources(study_uid)
        selected = [s for s in sources.values() if series_uid is None or s.series_uid == series_uid]
        if not selected:
            raise NotFound(f"no instances in study {study_uid}")
        for source in sorted(selected, key=InstanceSource.sort_key):
            try:
                data = p10_of(source)
            except FileNotFoundError:  # its staging file was sealed meanwhile
                data = self.instance_p10(study_uid, source.series_uid, source.sop_uid)
            yield stored_instance(source), data

    def study_zip(self, study_uid: str) -> Path:
        """The sealed study ZIP's path (sealing staged instances first), for tools and
        tests on the local backend; :meth:`open_study_zip` works with any backend."""
        self.seal(study_uid)
        if not isinstance(self.backend, LocalBackend):
            raise StorageError("the study ZIP is not a local file with this storage backend")
        path = self.backend.path(study_uid)
        if not path.exists():
            raise NotFound(f"no study {study_uid}")
        return path

    def open_study_zip(self, study_uid: str, sop_uids: set[str] | None) -> BinaryIO:
        """An open study ZIP holding ``sop_uids`` (all when ``None``); the caller closes it.

        When they are the whole study and it is sealed, its own ZIP is opened rather
        than copied: the backend's blob keeps reading the version it opened, even if
        a rewrite replaces it. Otherwise the subset is written to a temp file.
        """
        check_uid(study_uid, "StudyInstanceUID")
        if not self._files.staged_paths(study_uid):
            sources = self._files.sources(study_uid)
            if sources and (sop_uids is None or sop_uids >= sources.keys()):
                with contextlib.suppress(FileNotFoundError):
                    return self.backend.get(study_uid)  # type: ignore[return-value]
        # In the data directory: patient data stays on the data disk, private to the node.
        handle = tempfile.TemporaryFile(dir=self.root)
        try:
            self.write_study_subset(study_uid, sop_uids, handle)
            handle.seek(0)
        except BaseException:
            handle.close()
            raise
        return handle  # type: ignore[return-value]

    def write_study_subset(
        self, study_uid: str, sop_uids: set[str] | None, handle: BinaryIO
    ) -> int:
        """Write a study ZIP holding only ``sop_uids`` (all when ``None``) to ``handle``.

        What a peer lacks is sent without sealing or rewriting anything here;
        returns how many instances were written.
        """
        check_uid(study_uid, "StudyInstanceUID")
        sources = self._files.sources(study_uid)
        if not sources:
            raise NotFound(f"no study {study_uid}")
        chosen = [s for uid, s in sources.items() if sop_uids is None or uid in sop_uids]
        try:
            write_study_zip(handle, study_uid, chosen)
        except FileNotFoundError:  # a staging file was sealed meanwhile: read again
            handle.seek(0)
            handle.truncate()
            return self.write_study_subset(study_uid, sop_uids, handle)
        return len(chosen)

    def study_size(self, study_uid: str) -> StudySize:
        check_uid(study_uid, "StudyInstanceUID")
        staged = self._files.staged_paths(study_uid)
        disk = sum(_file_size(path) for path in staged)
        disk += sum(_file_size(path) for path in self._files.received_paths(study_uid))
        disk += self.backend.size(study_uid) or 0
        sources = self._files.sources(study_uid)
        if not sources:
            raise NotFound(f"no study {study_uid}")
        uncompressed = sum(
            source.uncompressed_size + len(canonical_json(source.metadata))
            for source in sources.values()
        )
        return StudySize(disk, uncompressed, len(sources), len(staged))

    # --- deletion ----------------------------------------------------------------

    def delete_instances(self, study_uid: str, sop_uids: set[str]) -> list[str]:
        """Delete the given instances of a study; return those that existed."""
        with self._study_lock(study_uid):
            # A received file is its instance's only copy (a copy stored before it would
            # have been converted instead): removing it is that instance's whole deletion,
            # and needs no conversion first (nor room for one, on a full disk).
            received = [
                sop_uid
                for sop_uid in sorted(sop_uids)
                if is_valid_uid(sop_uid) and self._remove_received(study_uid, sop_uid)
            ]
            sources = self._files.sources(study_uid)
            doomed = sorted(sop_uids & sources.keys())
            if received:
                self._files.remove_empty_dirs(study_uid)
                self._files.clear_pending(study_uid)
            if not doomed:
                return received
            if self._only_staged(study_uid, doomed):
                # Their staging files are their only copies: removing them is the whole
                # deletion. No rewrite, so taking back an instance the index refused (a
                # full disk) needs no room for a new study ZIP.
                for sop_uid in doomed:
                    remove_durable(staged_instance_path(self.root, study_uid, sop_uid))
                self._files.remove_empty_dirs(study_uid)
                self._files.clear_pending(study_uid)
                return sorted({*doomed, *received})
            self._files.mark_pending(study_uid)
            for sop_uid in doomed:
                del sources[sop_uid]
            # The new ZIP comes first: staged files go only once it no longer needs them,
            # so a crash in between never brings back an older copy.
            self._rewrite(study_uid, list(sources.values()))
        return sorted({*doomed, *received})

    def _remove_received(self, study_uid: str, sop_uid: str) -> bool:
        """Remove the instance's received file and its conversion, if it has one; the
        conversion first, so a crash between leaves the instance whole (recovery converts
        it again)."""
        path = received_instance_path(self.root, study_uid, sop_uid)
        if not path.exists():
            return False
        with contextlib.suppress(FileNotFoundError):
            staged_instance_path(self.root, study_uid, sop_uid).unlink()
        return remove_durable(path)

    def _only_staged(self, study_uid: str, sop_uids: list[str]) -> bool:
        """Whether none of ``sop_uids`` is in the sealed study ZIP (an older copy there
        would come back if only the staged one were removed)."""
        sealed = self._files.sealed.get(study_uid)
        return sealed is None or not set(sop_uids) & sealed.instances.keys()

    def delete_instance(self, study_uid: str, series_uid: str, sop_uid: str) -> bool:
        check_uid(series_uid, "SeriesInstanceUID")
        return bool(self.delete_instances(study_uid, {check_uid(sop_uid, "SOPInstanceUID")}))

    def delete_series(self, study_uid: str, series_uid: str) -> list[str]:
        sources = self._files.sources(study_uid)
        members = {uid for uid, s in sources.items() if s.series_uid == series_uid}
        return self.delete_instances(study_uid, members)

    def delete_study(self, study_uid: str) -> bool:
        check_uid(study_uid, "StudyInstanceUID")
        with self._study_lock(study_uid):
            self._files.sealed.forget(study_uid)
            # Marked first: a crash before the end leaves the study pending, so recovery
            # and the node's reconcile see what is left of it.
            self._files.mark_pending(study_uid)
            removed = self.backend.delete(study_uid)
            removed = remove_tree_durable(study_dir(self.root, study_uid)) or removed
            self._files.clear_pending(study_uid)
            self._last_write.pop(study_uid, None)
            return removed


def prepare_instance(
    source: bytes | Path | BinaryIO, limits: ArchiveLimits, level: int | None
) -> PreparedInstance:
    """Parse and convert an instance in memory, writing nothing: a plain function of its
    arguments, so that another process can run it (``node/preparation.py``)."""
    source_size = _size_of(source)
    check_inflated_size(source, limits)  # before pydicom inflates it whole
    with _original_bytes(source) as original:
        dataset, pixel_data_offset = read_p10_located(source)
        split = split_dataset(dataset)
        split.p10_layout = build_layout(original, split.frames, split.bulk, pixel_data_offset)
    try:
        staged_bytes, staged = build_staged(split, level)
    except ValueError as exc:  # e.g. NaN or infinity, which DICOM JSON cannot carry
        raise InvalidDicom(f"cannot store as DICOM JSON: {exc}") from exc
    return PreparedInstance(stored_instance(staged), staged_bytes, source_size)


def _size_of(source: bytes | Path | BinaryIO) -> int:
    if isinstance(source, bytes):
        return len(source)
    if isinstance(source, Path):
        return source.stat().st_size
    position = source.tell()
    size = source.seek(0, os.SEEK_END) - position
    source.seek(position)
    return size


@contextlib.contextmanager
def _original_bytes(source: bytes | Path | BinaryIO) -> Iterator[Any]:
    """The file's bytes as they came, for its P10 layout: a file is mapped, not read
    (pydicom already holds its values in memory; a second copy could be large)."""
    if isinstance(source, bytes):
        yield source
        return
    if isinstance(source, Path):
        with open(source, "rb") as handle, _mapped(handle, 0) as mapped:
            yield mapped
        return
    position = source.tell()
    try:
        with _mapped(source, position) as mapped:
            yield mapped
    finally:
        source.seek(position)


@contextlib.contextmanager
def _mapped(handle: BinaryIO, start: int) -> Iterator[Any]:
    # Only a plain file is mapped: asking a spooled temporary file for its fileno
    # would write it out to disk first.
    if start or not isinstance(handle, io.BufferedReader | io.BufferedRandom | io.FileIO):
        handle.seek(start)
        data = handle.read()
        handle.seek(start)
        yield data
        return
    with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        yield mapped


class _NotWritten(Exception):
    """A received instance was converted, but its staging ZIP could not be written."""

    def __init__(self, prepared: PreparedInstance, reason: StorageError) -> None:
        super().__init__(reason.message)
        self.prepared = prepared
        self.reason = reason


def _file_identity(path: Path) -> tuple[int, int, int] | None:
    """What tells one version of a file from another (``None``: no file)."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
