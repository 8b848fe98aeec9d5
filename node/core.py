"""The node's orchestrator: the study store, the index, ingest, deletion, annotations.

``NodeCore`` is what every edge is given (REST, DICOM, peering, CLI). It owns
start-up recovery and the background loop that seals quiet studies, and it
answers the edges' needs with named methods, so no edge reaches into the
store, the index or the components it wires. The work itself lives in those
components: :mod:`.ingest` (every way in), :mod:`.deletion`,
:mod:`.annotations`, :mod:`.reconcile`, and the index package.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from pydicom.dataset import Dataset

from pacsnode.node import plugins
from pacsnode.node.annotations import Annotations
from pacsnode.node.conversion import Converter
from pacsnode.node.deletion import Deleter
from pacsnode.node.errors import ConfigError, SearchUnavailable, UnknownResource
from pacsnode.node.ids import Level
from pacsnode.node.index import ChangePage, DeletionReason, Index, InstanceRef, Origin, Removed
from pacsnode.node.index.annotation_keys import MetadataNames
from pacsnode.node.index.maintags import INDEXED_TAGS
from pacsnode.node.index_plugins.finder import Finder
from pacsnode.node.index_plugins.loading import IndexPlugins
from pacsnode.node.index_plugins.planning import instance_matches, on_instances
from pacsnode.node.ingest import Ingestor, IngestResult, Receive
from pacsnode.node.preparation import Preparer, auto_workers, skip_pydicom_value_warnings
from pacsnode.node.query import Constraint, parse_query
from pacsnode.node.reconcile import ReconcileReport, recover, reindex
from pacsnode.node.search import feeder
from pacsnode.node.search.engine import SearchIndex
from pacsnode.node.search.query_language import parse as parse_search
from pacsnode.node.settings import CoreSettings
from pacsnode.storage.attachments import AttachmentStore
from pacsnode.storage.backends.base import SealedBackend
from pacsnode.storage.gzip_parts import DeflatedPart
from pacsnode.storage.migration import MigrationReport, Moved, migrate
from pacsnode.storage.multipart import Part
from pacsnode.storage.received import is_received_digest, receive_instance
from pacsnode.storage.results import MergeResult
from pacsnode.storage.store import StudyStore

log = logging.getLogger(__name__)
_SEAL_INTERVAL_S = 1.0
#: the longest a request for sizes waits for the conversions in flight
SIZES_WAIT_S = 5.0
#: how many sealed studies the start looks for in the storage backend
STORAGE_CHECK_SAMPLE = 8


def storage_backend(settings: CoreSettings, name: str | None = None) -> SealedBackend:
    """The ``[storage] backend`` plugin (or the one named), built from its
    ``[plugins.NAME]`` settings."""
    name = name or settings.plugins.storage_backend
    own = settings.plugins.settings_of(name)
    backend = plugins.build(
        plugins.PluginKind.STORAGE, name, lambda factory: factory(own, Path(settings.data_dir))
    )
    if not isinstance(backend, SealedBackend):  # the methods are there; their behaviour is
        # what the contract suite checks
        raise plugins.refused(
            plugins.PluginKind.STORAGE, name, "made no storage backend (see SealedBackend)"
        )
    return backend


class NodeCore:
    def __init__(self, settings: CoreSettings) -> None:
        skip_pydicom_value_warnings()
        self.settings = settings
        data_dir = Path(settings.data_dir)
        self._store = StudyStore(
            data_dir,
            compression=settings.compression,
            compression_level=settings.compression_level,
            stable_age_s=settings.stable_age_s,
            archive_limits=settings.archive_limits,
            backend=storage_backend(settings),
        )
        self._blobs = AttachmentStore(data_dir, compression_level=settings.compression_level)
        self._data_dir = data_dir
        self._opened: Index | None = None
        self._stop = threading.Event()
        self._sealer: threading.Thread | None = None
        self._preparer: Preparer | None = None
        self._converter: Converter | None = None
        self._plugins: IndexPlugins | None = None
        self._finder: Finder | None = None

    # --- lifecycle -----------------------------------------------------------------------

    def open(
        self, *, background: bool = True, search: bool | None = None, check_storage: bool = True
    ) -> ReconcileReport:
        """Recover storage, open the index, reconcile them; start the sealing loop and the
        index plugins: the main tags always, the search index (``[search] enabled``) and
        ``[index] plugins`` when ``search`` says (whatever ``background`` says, unless
        given). A broken plugin stops the start before anything is opened; a storage
        backend that holds none of the sealed studies the index knows stops it too
        (``check_storage``; ConfigError)."""
        index_plugins = IndexPlugins.configured(
            self.settings, background if search is None else search
        )
        storage_report = self._store.open()
        self._blobs.recover()
        self._opened = index = Index(self._data_dir / "index")
        self._deleter = Deleter(self._store, self._blobs, index)
        workers = self.settings.ingest_workers
        self._preparer = Preparer(
            self.settings.archive_limits,
            self._store.level,
            auto_workers() if workers is None else workers,
        )
        self._ingestor = Ingestor(
            self._store,
            index,
            self.settings.limits,
            self.settings.conflict_policy,
            lambda patient_id: self._deleter.delete(patient_id, DeletionReason.RECYCLED),
            self._preparer.prepare,
            self._receive(index, self._preparer) if background else None,
        )
        self.annotations = Annotations(
            index,
            self._blobs,
            MetadataNames(self.settings.metadata_names),
            self.settings.attachment_types,
        )
        if check_storage:
            try:
                self._check_storage(index, {*storage_report.pending, *index.dirty_studies()})
            except BaseException:
                self.close()  # nothing stays half-open, as for a plugin that does not start
                raise
        report = recover(self._store, index, storage_report.pending)
        if self._converter is not None:
            self._converter.start()
        if background:
            self._sealer = threading.Thread(target=self._seal_loop, name="sealer", daemon=True)
            self._sealer.start()
        try:
            index_plugins.start(self)
        except BaseException:
            self.close()  # a plugin that does not start leaves nothing half-open
            raise
        self._plugins = index_plugins
        self._finder = index_plugins.finder(self)
        return report

    def _receive(self, index: Index, preparer: Preparer) -> Receive | None:
        """Acknowledging on the minimum, with a converter behind it (``[storage]
        background_conversion``); ``None`` when instances are converted before. Also
        ``None`` without worker processes (one core, or ``ingest_workers = 0``): converting
        in this process after the answer costs the same CPU plus the bookkeeping (one core:
        300 CT slices 73 inst/s put off, 99 converted first)."""
        if not self.settings.background_conversion or not preparer.has_workers:
            return None
        limits = self.settings.archive_limits
        self._converter = Converter(self._store, index, preparer.prepare_aside)
        return Receive(
            parse=lambda data: receive_instance(data, limits, INDEXED_TAGS),
            converted_later=self._converter.submit,
        )

    def _busy(self, study_uid: str) -> bool:
        """Whether the study must not be sealed yet: an instance of it is stored but not
        indexed, or waits for its conversion."""
        if self._ingestor.is_busy(study_uid):
            return True
        return self._converter is not None and self._converter.is_busy(study_uid)

    def close(self) -> None:
        self._stop.set()
        if self._sealer is not None:
            self._sealer.join()
        if self._converter is not None:
            self._converter.stop()
            self._converter = None
        if self._plugins is not None:  # before the index they read
            self._plugins.stop()
            self._plugins = None
        if self._preparer is not None:
            self._preparer.close()
            self._preparer = None
        if self._opened is not None:
            self._opened.close()
            self._opened = None
        self._store.close()

    @property
    def is_open(self) -> bool:
        return self._opened is not None

    def __enter__(self) -> NodeCore:
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def index(self) -> Index:
        """The index's front door (named queries and updates, no transactions)."""
        if self._opened is None:
            raise RuntimeError("the node core is not open")
        return self._opened

    # --- stability -----------------------------------------------------------------------

    def _seal_loop(self) -> None:
        while not self._stop.wait(_SEAL_INTERVAL_S):
            try:
                self.seal_quiet_studies()
            except Exception:  # keep sealing other studies on the next tick
                log.exception("sealing quiet studies failed")

    def seal_quiet_studies(self, now: float | None = None) -> list[str]:
        """Seal studies quiet for ``stable_age_s`` and log StableSeries/StableStudy."""
        sealed = self._store.seal_quiet(now, busy=self._busy)
        for study_uid in sealed:
            self.index.announce_stable(study_uid)
        return sealed

    def pending_studies(self) -> set[str]:
        """Studies still receiving (not sealed yet): not "stable" in Orthanc's terms."""
        return set(self._store.pending_studies())

    # --- ways in, and out ------------------------------------------------------------------

    def ingest(self, source: bytes | Path | BinaryIO, origin: Origin | None = None) -> IngestResult:
        """Store and index one DICOM instance (every way in but a peer's study ZIP)."""
        return self._ingestor.ingest(source, origin)

    def merge_study_zip(self, path: Path, origin: Origin) -> MergeResult:
        """Store and index a study ZIP received from a peer (validated whole first)."""
        return self._ingestor.merge_study(path, origin)

    def delete(self, resource_id: str, reason: DeletionReason = DeletionReason.REQUEST) -> Removed:
        return self._deleter.delete(resource_id, reason)

    def reindex(self) -> ReconcileReport:
        return reindex(self._store, self.index)

    def migrate_storage(
        self,
        source: str,
        *,
        remove_source: bool = False,
        progress: Callable[[str, Moved], None] | None = None,
    ) -> MigrationReport:
        """Move the sealed studies the storage backend ``source`` holds into the configured
        one (:mod:`pacsnode.storage.migration`). Only with the node's background work
        stopped (``open(background=False, check_storage=False)``): nothing else seals."""
        if self._sealer is not None:
            raise RuntimeError("the node is serving: stop it to migrate its storage")
        if source == self.settings.plugins.storage_backend:
            raise ConfigError(
                f"--from names the configured [storage] backend {source!r}: set [storage] "
                "backend to the new one first, then migrate from the old one"
            )
        old = storage_backend(self.settings, source)
        old.open()
        try:
            return migrate(self._store, old, remove_source=remove_source, progress=progress)
        finally:
            old.close()

    def _check_storage(self, index: Index, pending: set[str]) -> None:
        """Refuse to start on a storage backend that holds none of the sealed studies the
        index knows (a sample of them): ``[storage] backend`` was changed without moving
        the studies, and serving (or a reindex) would treat every study as lost."""
        sealed = sorted(index.indexed_study_uids() - pending)
        if not sealed:
            return
        sample = sealed[:: max(1, len(sealed) // STORAGE_CHECK_SAMPLE)][:STORAGE_CHECK_SAMPLE]
        if any(self._store.backend.version(uid) is not None for uid in sample):
            return
        name = self.settings.plugins.storage_backend
        raise ConfigError(
            f"the storage backend {name!r} holds none of the sealed studies the index "
            f"knows ({len(sample)} of {len(sealed)} looked for): if [storage] backend was "
            "changed, move the studies first with 'pacsnode migrate-storage --from OLD' "
            "(the node stopped); if they are lost, 'pacsnode reindex --drop-missing' "
            "removes them from the index"
        )

    # --- search over every attribute -------------------------------------------------------

    @property
    def _search_path(self) -> Path:
        return self._data_dir / "search"

    def search(self, query: str, level: Level, limit: int, offset: int = 0) -> list[str]:
        """Ids at ``level`` of the resources with an instance matching ``query`` (the
        search language, :mod:`.search.query_language`), in id order; BadRequest for a
        query that does not parse."""
        plugin = self._plugins.search if self._plugins is not None else None
        if plugin is None:
            raise SearchUnavailable("search over every attribute is off ([search] enabled)")
        return plugin.search(parse_search(query), level, limit, offset)

    def search_lag(self) -> int | None:
        """Changes the search index has not taken in yet; None when search is off."""
        plugin = self._plugins.search if self._plugins is not None else None
        return None if plugin is None else plugin.lag()

    def index_lags(self) -> dict[str, int | None]:
        """Changes each index plugin beyond the main tags (the search index first) has not
        taken in yet; None for one whose lag() raises (a plugin's bug: logged, the
        statistics still answered)."""
        lags: dict[str, int | None] = {}
        for name, plugin in self._plugins.others if self._plugins is not None else []:
            try:
                lags[name] = plugin.lag()
            except Exception:
                log.exception("index plugin %r failed to tell its lag", name)
                lags[name] = None
        return lags

    def rebuild_search(self) -> int:
        """Rebuild the search index from the archive (the node's feeder not running)."""
        if self._plugins is not None and self._plugins.search is not None:
            raise RuntimeError("the search feeder is running; stop the node first")
        index = SearchIndex(self._search_path)
        try:
            return feeder.rebuild(index, self)
        finally:
            index.close()

    # --- resources -------------------------------------------------------------------------

    def resource(self, resource_id: str, level: Level | None = None) -> dict[str, Any]:
        """The resource's record with its children ids; UnknownResource if absent."""
        return self.index.resource_with_children(resource_id, level)

    def records(self, resource_ids: Iterable[str]) -> list[dict[str, Any] | None]:
        """Many resources' records (no children) read at once; ``None`` for those absent."""
        return self.index.resources(resource_ids)

    def exists(self, resource_id: str) -> bool:
        return self.index.resource(resource_id) is not None

    def ancestors(self, record: dict[str, Any]) -> list[dict[str, Any]]:
        """The records above a resource, nearest first."""
        return self.index.ancestors(record)

    def instances_of(self, resource_ids: Iterable[str]) -> list[InstanceRef]:
        """The instances below (or at) each resource; UnknownResource for an unknown id."""
        return self.index.instances_of(resource_ids)

    def list_ids(self, level: Level, since: int = 0, limit: int | None = None) -> list[str]:
        return self.index.find(level, [], since=since, limit=limit)

    def find(
        self,
        level: Level,
        query: dict[str, Any],
        *,
        case_sensitive: bool = False,
        since: int = 0,
        limit: int | None = None,
        fold_identifiers: bool = False,
    ) -> list[str]:
        """Ids matching the query (``fold_identifiers``: see ``query.parse_constraint``)."""
        constraints = parse_query(query, case_sensitive, fold_identifiers=fold_identifiers)
        return self.find_constraints(level, constraints, offset=since, limit=limit)

    def find_constraints(
        self,
        level: Level,
        constraints: list[Constraint],
        *,
        offset: int = 0,
        limit: int | None = None,
    ) -> list[str]:
        """Ids matching parsed constraints on any attribute: main tags from the index,
        others through the index plugins (:mod:`.index_plugins.planning`)."""
        if self._finder is None:
            raise RuntimeError("the node core is not open")
        return self._finder.find(level, constraints, offset, limit)

    def find_main_tags(
        self, level: Level, constraints: Sequence[Constraint], offset: int, limit: int | None
    ) -> list[str]:
        """Ids matching constraints on main tags, from the index alone (what the built-in
        ``maintags`` index plugin answers)."""
        return self.index.find(level, list(constraints), since=offset, limit=limit)

    def find_is_narrow(
        self,
        level: Level,
        query: dict[str, Any],
        *,
        case_sensitive: bool = False,
        fold_identifiers: bool = False,
    ) -> bool:
        """Whether :meth:`find` reads only a few keys of the index for this query (it looks
        up given values rather than scanning), so it may run where a scan should not."""
        constraints = parse_query(query, case_sensitive, fold_identifiers=fold_identifiers)
        return self.index.find_is_narrow(level, constraints)

    def ids_in_order(self, level: Level, keyword: str) -> list[str]:
        """Every id of ``level`` ascending by an indexed keyword (those without it last),
        from the index's lookup alone: what a sorted, paged listing pages through."""
        return self.index.ids_in_order(level, keyword)

    def query_answer(self, resource_id: str) -> tuple[dict[str, str], dict[str, int]]:
        """A C-FIND match's tags and related-object counts (empty if deleted meanwhile)."""
        return self.index.query_answer(resource_id)

    def first_instance(self, resource_id: str) -> InstanceRef | None:
        """One instance below (or at) a resource (for attributes the index does not keep);
        None when it was deleted meanwhile."""
        return self.index.first_instance(resource_id)

    def matching_instance_json(
        self,
        resource_id: str,
        level: Level,
        constraints: Sequence[Constraint],
        accept: Callable[[dict[str, Any]], bool] | None = None,
    ) -> dict[str, Any] | None:
        """The DICOM JSON of an instance below a resource that matches the query's
        constraints its main tags do not decide, so that an answer shows the values that
        matched (a study found by BodyPartExamined=ABDOMEN answers ABDOMEN, whichever
        series comes first); the first instance when nothing is asked of instances or
        none matches any more. None when the resource was deleted meanwhile, and, with
        ``accept`` (a further test an instance must pass), when no instance passes it."""
        asked = on_instances(level, constraints)
        if asked or accept is not None:
            try:
                refs = self.instances_of([resource_id])
            except UnknownResource:
                return None
            for ref in refs:
                metadata = self.instance_json(ref)
                if instance_matches(asked, metadata) and (accept is None or accept(metadata)):
                    return metadata
            if accept is not None:
                return None
        ref = self.first_instance(resource_id)
        return self.instance_json(ref) if ref is not None else None

    def changes(self, since: int = 0, limit: int = 100) -> ChangePage:
        return self.index.changes(since, limit)

    def last_change(self) -> int:
        return self.index.last_change()

    def last_change_page(self) -> ChangePage:
        """Only the newest change."""
        return self.index.last_change_page()

    def orthanc_changes(
        self, since: int = 0, limit: int = 100, *, last: bool = False
    ) -> ChangePage:
        """The feed as Orthanc shows it (``/changes``): a resource's changes go when it is
        deleted, and deletions are not listed. ``last``: only the newest such change."""
        if last:
            return self.index.last_visible_change_page()
        return self.index.visible_changes(since, limit)

    # --- settings changed at run time ----------------------------------------------------

    def setting(self, name: str, default: str) -> str:
        """A setting changed over REST (kept across restarts), or ``default``."""
        value = self.index.setting(name)
        return default if value is None else value

    def save_setting(self, name: str, value: str) -> None:
        self.index.save_setting(name, value)

    # --- exports log -------------------------------------------------------------------------

    def log_exports(self, resource_ids: Iterable[str], remote: str) -> None:
        """Log resources sent to modality or peer ``remote`` (``/exports``)."""
        self.index.log_exports(resource_ids, remote)

    def exports(self, since: int = 0, limit: int = 100) -> ChangePage:
        return self.index.exports(since, limit)

    def last_export_page(self) -> ChangePage:
        return self.index.last_export_page()

    def clear_exports(self) -> None:
        self.index.clear_exports()

    def clear_changes(self) -> None:
        """Forget the change feed so far; numbering goes on, so peers' cursors stay valid."""
        self.index.clear_changes()

    def sizes_settled(self, timeout_s: float = SIZES_WAIT_S) -> None:
        """Let the conversions in flight finish (``node/conversion.py``), so that sizes read
        next are the stored ones: an instance acknowledged before its conversion counts
        the file as received until then, and scripts (Orthanc's tests among them) compare
        sizes read one after the other."""
        if self._converter is not None:
            self._converter.wait_idle(timeout_s)

    def statistics(self) -> dict[str, int]:
        self.sizes_settled()
        return self.index.statistics()

    def recycling_order(self, count: int) -> list[tuple[str, int]]:
        """The next ``count`` patients recycling would remove (id, bytes), oldest first."""
        return self.index.recycling_order(count)

    def protected_patients(self) -> list[str]:
        return self.index.protected_patients()

    def metadata_of(self, resource_id: str) -> dict[int, str]:
        """A resource's metadata by key (core keys: origin, reception date...)."""
        return self.index.metadata(resource_id)

    def resource_statistics(self, resource_id: str, level: Level) -> dict[str, int]:
        """Counts below a resource and its sizes; UnknownResource if absent at ``level``."""
        self.resource(resource_id, level)
        self.sizes_settled()
        return self.index.resource_statistics(resource_id)

    # --- instance content ------------------------------------------------------------------

    def instance_ref(self, instance_id: str) -> InstanceRef:
        """An instance's place in the store; UnknownResource if it is not an instance."""
        self.resource(instance_id, Level.INSTANCE)
        return self.index.instances_of([instance_id])[0]

    def instance_p10(self, ref: InstanceRef) -> bytes:
        """The instance as a DICOM P10 file, regenerated from the study ZIP."""
        return self._store.instance_p10(ref.study_uid, ref.series_uid, ref.sop_uid)

    def instance_dataset(self, ref: InstanceRef) -> Dataset:
        return self._store.instance_dataset(ref.study_uid, ref.series_uid, ref.sop_uid)

    def instance_json(self, ref: InstanceRef) -> dict[str, Any]:
        """The instance's DICOM JSON (bulk data as ``BulkDataURI`` references)."""
        return self._store.instance_metadata(ref.study_uid, ref.series_uid, ref.sop_uid)

    def converting(self, instance_id: str) -> bool:
        """Whether the instance was acknowledged before its conversion and waits for it
        (``node/conversion.py``): its metadata is there, but reading it now converts it."""
        record = self.index.resource(instance_id)
        return record is not None and is_received_digest(record.get("digest"))

    def instance_json_as_sent(self, ref: InstanceRef) -> dict[str, Any]:
        """:meth:`instance_json` with DS and IS values as the file wrote them (text)."""
        return self._store.instance_metadata_as_sent(ref.study_uid, ref.series_uid, ref.sop_uid)

    def instance_frames(self, ref: InstanceRef) -> list[Part]:
        return self._store.frames(ref.study_uid, ref.series_uid, ref.sop_uid)

    def instance_frame(self, ref: InstanceRef, number: int) -> Part:
        """Frame ``number`` (from 1) as stored, in its own transfer syntax."""
        return self._store.frame(ref.study_uid, ref.series_uid, ref.sop_uid, number)

    def instance_frame_gzip(self, ref: InstanceRef, number: int) -> DeflatedPart | None:
        """Frame ``number`` as a gzip body of its stored bytes (no inflating), or ``None``
        when it is not stored deflated."""
        return self._store.frame_deflated(ref.study_uid, ref.series_uid, ref.sop_uid, number)

    def instance_bulk(self, ref: InstanceRef, key: str) -> Part:
        """A bulk data element as stored, by the key its ``BulkDataURI`` names."""
        return self._store.bulk(ref.study_uid, ref.series_uid, ref.sop_uid, key)

    def study_metadata(self, study_uid: str) -> list[dict[str, Any]]:
        """The DICOM JSON of every instance of a study, staged and sealed alike."""
        return self._store.study_metadata(study_uid)

    def study_metadata_gzip(self, study_uid: str) -> bytes:
        """The study metadata as gzip: the stored entry itself once the study is sealed."""
        return self._store.study_metadata_gzip(study_uid)

    def refs_by_uid(self, level: Level, uid: str) -> list[InstanceRef]:
        """The instances below (or at) the studies, series or instances with this UID."""
        keyword = {
            Level.STUDY: "StudyInstanceUID",
            Level.SERIES: "SeriesInstanceUID",
            Level.INSTANCE: "SOPInstanceUID",
        }[level]
        return self.index.instances_of(self.find(level, {keyword: uid}))

    # --- studies as a whole (what peers exchange) --------------------------------------------

    def study_inventory(self, study_uid: str) -> dict[str, str]:
        """SOP Instance UID -> content digest of what the store holds of a study."""
        return self._store.inventory(study_uid)

    def stored_instances(self, study_uid: str) -> list[InstanceRef]:
        """What the store holds of a study (indexed or not yet), as instance refs."""
        return [self.index.ref_of(instance) for instance in self._store.instances(study_uid)]

    def open_study_zip(self, study_uid: str, sop_uids: set[str] | None) -> BinaryIO:
        """The study (or those instances) as an open archive-direct ZIP; caller closes it."""
        return self._store.open_study_zip(study_uid, sop_uids)

    def write_study_zip(self, study_uid: str, sop_uids: set[str] | None, handle: BinaryIO) -> int:
        """Write the study (or those instances) as an archive-direct ZIP; return the count."""
        return self._store.write_study_subset(study_uid, sop_uids, handle)

    # --- verification --------------------------------------------------------------------

    def study_uids_on_disk(self) -> list[str]:
        return list(self._store.study_uids())

    def check_stored_study(self, study_uid: str) -> tuple[list[str], dict[str, str]]:
        """(problems found in the study's files, SOP UID -> digest of what they hold)."""
        return self._store.check_study(study_uid)
