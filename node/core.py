"""The node's core, wired together: study store, LMDB index, writer, ingest, deletion.

``NodeCore`` is the composition root the REST app, the DICOM services, the
CLI and the peering interface are given. It owns start-up recovery and the
background loop that seals quiet studies and announces them as stable; the
work itself lives in the modules it wires.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from pacsnode.node import changes
from pacsnode.node.annotations import Annotations
from pacsnode.node.config import CoreSettings
from pacsnode.node.deletion import Deleter
from pacsnode.node.errors import UnknownResource
from pacsnode.node.find import find, parse_query
from pacsnode.node.hierarchy import TOTAL_SIZE, TOTAL_UNCOMPRESSED, Origin, Removed, count_name
from pacsnode.node.ids import Level
from pacsnode.node.index import Index, Txn, now_string
from pacsnode.node.ingest import Ingestor, IngestResult
from pacsnode.node.metadata import MetadataNames
from pacsnode.node.reconcile import ReconcileReport, recover, reindex
from pacsnode.node.writer import IndexWriter
from pacsnode.storage.attachments import AttachmentStore
from pacsnode.storage.store import StudyStore

log = logging.getLogger(__name__)
T = TypeVar("T")
_SEAL_INTERVAL_S = 1.0


class NodeCore:
    def __init__(self, settings: CoreSettings) -> None:
        self.settings = settings
        data_dir = Path(settings.data_dir)
        self.store = StudyStore(
            data_dir,
            compression=settings.compression,
            compression_level=settings.compression_level,
            stable_age_s=settings.stable_age_s,
        )
        self.blobs = AttachmentStore(data_dir, compression_level=settings.compression_level)
        self._data_dir = data_dir
        self.index: Index | None = None
        self._stop = threading.Event()
        self._sealer: threading.Thread | None = None

    # --- lifecycle -----------------------------------------------------------------------

    def open(self, *, background: bool = True) -> ReconcileReport:
        """Recover storage, open the index, reconcile them; start the sealing loop."""
        storage_report = self.store.open()
        self.blobs.recover()
        self.index = Index(self._data_dir / "index")
        self.writer = IndexWriter(self.index)
        self.deleter = Deleter(self.store, self.blobs, self.index, self.writer)
        self.ingestor = Ingestor(
            self.store,
            self.index,
            self.writer,
            self.settings.limits,
            self.settings.conflict_policy,
            lambda patient_id: self.deleter.delete(patient_id, "Recycled"),
        )
        self.annotations = Annotations(
            self.index,
            self.writer,
            self.blobs,
            MetadataNames(self.settings.metadata_names),
            self.settings.attachment_types,
        )
        report = recover(self.store, self.index, self.writer, storage_report.pending)
        if background:
            self._sealer = threading.Thread(target=self._seal_loop, name="sealer", daemon=True)
            self._sealer.start()
        return report

    def close(self) -> None:
        self._stop.set()
        if self._sealer is not None:
            self._sealer.join()
        if self.index is not None:
            self.writer.close()
            self.index.close()
            self.index = None
        self.store.close()

    def __enter__(self) -> NodeCore:
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def _index(self) -> Index:
        if self.index is None:
            raise RuntimeError("the node core is not open")
        return self.index

    # --- stability -----------------------------------------------------------------------

    def _seal_loop(self) -> None:
        while not self._stop.wait(_SEAL_INTERVAL_S):
            try:
                self.seal_quiet_studies()
            except Exception:  # keep sealing other studies on the next tick
                log.exception("sealing quiet studies failed")

    def seal_quiet_studies(self, now: float | None = None) -> list[str]:
        """Seal studies quiet for ``stable_age_s`` and log StableSeries/StableStudy."""
        sealed = self.store.seal_quiet(now)
        for study_uid in sealed:
            self.writer.run(lambda txn, uid=study_uid: self._announce_stable(txn, uid))
        return sealed

    @staticmethod
    def _announce_stable(txn: Txn, study_uid: str) -> None:
        now = now_string()
        for study_id in txn.lookup_exact(Level.STUDY, "StudyInstanceUID", study_uid):
            for series_id in txn.children(study_id):
                changes.append(txn, changes.ChangeType.STABLE_SERIES, Level.SERIES, series_id, now)
            changes.append(txn, changes.ChangeType.STABLE_STUDY, Level.STUDY, study_id, now)

    # --- writes --------------------------------------------------------------------------

    def ingest(self, source: bytes | Path | BinaryIO, origin: Origin | None = None) -> IngestResult:
        return self.ingestor.ingest(source, origin)

    def delete(self, resource_id: str) -> Removed:
        return self.deleter.delete(resource_id)

    def reindex(self) -> ReconcileReport:
        return reindex(self.store, self._index, self.writer)

    # --- reads ---------------------------------------------------------------------------

    def read(self, fn: Callable[[Txn], T]) -> T:
        """Run ``fn`` in a read snapshot of the index."""
        return self._index.read(fn)

    def resource(self, resource_id: str, level: Level | None = None) -> dict[str, Any]:
        """The resource's record with its children ids."""

        def read(txn: Txn) -> dict[str, Any]:
            record = txn.resource(resource_id)
            if record is None or (level is not None and record["level"] != level.value):
                raise UnknownResource(f"no {(level or 'resource').lower()} {resource_id}")
            return {**record, "children": txn.children(resource_id)}

        return self._index.read(read)

    def list_ids(self, level: Level, since: int = 0, limit: int | None = None) -> list[str]:
        return self._index.read(lambda txn: find(txn, level, [], since=since, limit=limit))

    def find(
        self,
        level: Level,
        query: dict[str, Any],
        *,
        case_sensitive: bool = False,
        since: int = 0,
        limit: int | None = None,
    ) -> list[str]:
        constraints = parse_query(query, case_sensitive)
        return self._index.read(lambda txn: find(txn, level, constraints, since=since, limit=limit))

    def changes(self, since: int = 0, limit: int = 100) -> changes.ChangePage:
        return self._index.read(lambda txn: changes.page_after(txn, since, limit))

    def statistics(self) -> dict[str, int]:
        def read(txn: Txn) -> dict[str, int]:
            counts = {
                f"Count{level.plural.capitalize()}": txn.counter(count_name(level))
                for level in Level
            }
            return {
                **counts,
                "TotalDiskSize": txn.counter(TOTAL_SIZE),
                "TotalUncompressedSize": txn.counter(TOTAL_UNCOMPRESSED),
                "LastChange": txn.last_change(),
            }

        stats = self._index.read(read)
        stats["IndexDiskSize"] = self._index.disk_size()
        return stats
