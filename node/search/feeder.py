"""The search index's feeder: a thread that follows the node's change feed.

Ingest never waits for search: it appends NewInstance to the change feed as it always
did, and this thread reads the feed from the search index's ``last_change`` on, adds
each new instance's document and removes what was deleted. Writes are committed in
batches (every ``commit_interval_s`` or :data:`COMMIT_CHANGES` changes), each commit
recording the feed position it covers, so a restart resumes there and replays at most
one batch (adding and deleting are idempotent).

The archive, not the feed, is the source of truth: a fresh index (first start, or one
of another format), one ahead of the feed (an index rebuilt from scratch), or one behind
a cleared feed (``DELETE /changes``) is rebuilt from the stored studies. An instance that
cannot be read (deleted meanwhile, damaged) is logged and skipped; nothing stops the
thread but :meth:`Feeder.stop`.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

from pacsnode.node.errors import DomainError, UnknownResource
from pacsnode.node.ids import Level
from pacsnode.node.index import ChangePage, InstanceRef
from pacsnode.node.index.changes import ChangeType
from pacsnode.node.search.documents import Document, flatten, level_ids
from pacsnode.node.search.engine import SearchIndex

log = logging.getLogger(__name__)

#: changes read from the feed at once
#: while instances keep arriving, the feeder sleeps this many times what it spent on a
#: page: it takes at most a tenth of the one interpreter lock that ingest needs too
YIELD_WHILE_INGESTING = 9.0
PAGE = 500
#: uncommitted changes that make a commit without waiting for the interval
COMMIT_CHANGES = 5000
#: how often an idle feeder looks at the feed (one LMDB read)
POLL_S = 0.2
#: the pause when the next instance waits for its background conversion
CONVERSION_WAIT_S = 0.1
#: the pause after an unexpected error before following the feed again
RETRY_S = 2.0


class FeedSource(Protocol):
    """What the feeder reads of the node (``NodeCore`` answers all of it)."""

    def changes(self, since: int = 0, limit: int = 100) -> ChangePage: ...

    def last_change(self) -> int: ...

    def instance_ref(self, instance_id: str) -> InstanceRef: ...

    def instance_json(self, ref: InstanceRef) -> dict[str, Any]: ...

    def converting(self, instance_id: str) -> bool:
        """Whether the instance waits for its background conversion (node/conversion.py):
        reading its metadata now would convert it a second time, in this process."""
        ...

    def study_uids_on_disk(self) -> list[str]: ...

    def study_metadata(self, study_uid: str) -> list[dict[str, Any]]: ...


def open_index(path: Path) -> SearchIndex:
    """The index at ``path``; one that does not open (damaged files) is thrown away and
    made anew, to be rebuilt from the archive: it holds nothing the archive does not."""
    try:
        return SearchIndex(path)
    except Exception:
        log.exception("search index: %s does not open; rebuilding it", path)
        shutil.rmtree(path, ignore_errors=True)
        return SearchIndex(path)


def document_of(dataset: dict[str, Any]) -> Document:
    return flatten(dataset, level_ids(dataset))


class RebuildStopped(Exception):
    """The node is stopping: a rebuild gives up, leaving the index to be rebuilt at the
    next start (its position is still 0, so a partial index never passes for whole)."""


def archive_documents(
    source: FeedSource, stopped: Callable[[], bool] = lambda: False
) -> Iterator[Document]:
    """A document per stored instance, read a study at a time (one metadata read each)."""
    for study_uid in source.study_uids_on_disk():
        if stopped():
            raise RebuildStopped
        try:
            datasets = source.study_metadata(study_uid)
        except Exception:  # a damaged or vanished study must not stop the rest
            log.exception("search index: cannot read study %s; left out", study_uid)
            continue
        for dataset in datasets:
            try:
                yield document_of(dataset)
            except Exception:
                log.exception("search index: cannot index an instance of study %s", study_uid)


def rebuild(
    index: SearchIndex, source: FeedSource, stopped: Callable[[], bool] = lambda: False
) -> int:
    """Replace the index with the archive's instances; the number indexed.

    The feed position is read first: what changes while the studies are read is after
    it, so following the feed from there replays it (idempotently). ``stopped`` is asked
    between studies: a large archive takes minutes, and a node stopping must not wait."""
    position = source.last_change()
    count = index.rebuild(archive_documents(source, stopped), position)
    log.info("search index rebuilt: %d instances, up to change %d", count, position)
    return count


def needs_rebuild(index_position: int, feed_position: int) -> bool:
    """A fresh index is filled from the archive, faster than replaying every change (and
    the feed may have been cleared); one ahead of the feed belongs to another index."""
    fresh = index_position == 0 and feed_position > 0
    return fresh or index_position > feed_position


def feed_was_cleared(page: ChangePage, position: int, feed_position: int) -> bool:
    """Whether changes after ``position`` are gone (numbers are contiguous until cleared).

    ``feed_position`` is read before the page: an entry appended in between is no gap."""
    if page.changes:
        return int(page.changes[0]["Seq"]) > position + 1
    return feed_position > position


class Feeder:
    """The thread that keeps ``index`` up to date with ``source``'s change feed."""

    def __init__(
        self, index: SearchIndex, source: FeedSource, commit_interval_s: float = 1.0
    ) -> None:
        self.index = index
        self._source = source
        self._interval = commit_interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # What searches see: the index records its position before it reloads its
        # reader, so the lag counts from here, set once a commit has returned.
        self._visible = index.last_change

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="search-feeder", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread; what it had not committed is replayed at the next start."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.index.close()

    def lag(self) -> int:
        """Changes of the feed that searches do not see yet."""
        return max(0, self._source.last_change() - self._visible)

    def _run(self) -> None:
        waiting_out: str | None = None  # a condition already said (a full disk lasts)
        while not self._stop.is_set():
            try:
                self._follow()
            except RebuildStopped:
                return
            except DomainError as exc:  # e.g. a full disk: said once, retried quietly
                if exc.message != waiting_out:
                    log.warning("search index: %s; retrying", exc.message)
                waiting_out = exc.message
                self._stop.wait(RETRY_S)
            except Exception:  # the index or the feed failed: try again, never give up
                log.exception("search index: following the change feed failed; retrying")
                self._stop.wait(RETRY_S)

    def _follow(self) -> None:
        if needs_rebuild(self.index.last_change, self._source.last_change()):
            self._rebuild()
        position = self.index.last_change
        batch = _Batch()
        while not self._stop.is_set():
            feed_position = self._source.last_change()
            page = self._source.changes(position, PAGE)
            if feed_was_cleared(page, position, feed_position):
                log.warning("search index: the change feed was cleared past it; rebuilding")
                self._rebuild()
                position, batch = self.index.last_change, _Batch()
                continue
            started = time.monotonic()
            applied = self._apply_converted(page.changes)
            if self._source.last_change() > feed_position:
                # Instances kept arriving while this page was indexed: yield the GIL
                # to ingest, which must not slow down for search (the lag grows, and
                # shrinks once arrivals pause).
                self._stop.wait((time.monotonic() - started) * YIELD_WHILE_INGESTING)
            if applied:
                position = int(page.changes[applied - 1]["Seq"])
                batch.grow(applied)
            if batch.due(self._interval):
                self.index.commit(position)
                self._visible, batch = position, _Batch()
            if applied < len(page.changes):
                self._stop.wait(CONVERSION_WAIT_S)
            elif page.done:
                self._stop.wait(batch.wait(self._interval, POLL_S))
        if batch.started is not None:  # stopping: keep what was indexed, not replay it
            self.index.commit(position)

    def _rebuild(self) -> None:
        self._visible = 0  # the index is emptied first: searches see nothing until it ends
        rebuild(self.index, self._source, self._stop.is_set)
        self._visible = self.index.last_change

    def _apply_converted(self, changes: list[dict[str, Any]]) -> int:
        """Apply changes in order up to the first instance still waiting for its
        conversion; answer how many were applied."""
        for applied, entry in enumerate(changes):
            waits = entry.get("ChangeType") == ChangeType.NEW_INSTANCE and (
                self._source.converting(entry["ID"])
            )
            if waits:
                return applied
            self._apply(entry)
        return len(changes)

    def _apply(self, entry: dict[str, Any]) -> None:
        change = entry.get("ChangeType")
        if change == ChangeType.DELETED:
            self.index.delete(Level(entry["ResourceType"]), entry["ID"])
        elif change == ChangeType.NEW_INSTANCE:
            self._add(entry["ID"])

    def _add(self, instance_id: str) -> None:
        try:
            ref = self._source.instance_ref(instance_id)
        except UnknownResource:
            return  # deleted since: its Deleted change follows
        try:
            document = document_of(self._source.instance_json(ref))
        except (DomainError, OSError) as exc:  # deleted meanwhile, damaged ZIP...
            log.warning("search index: instance %s left out: %s", instance_id, exc)
            return
        except Exception:  # unexpected, but one instance must not stop the feed for all
            log.exception("search index: instance %s left out", instance_id)
            return
        # A failure of the index itself is not the instance's: the batch is retried
        # from the last commit (by _run).
        self.index.add(document)


class _Batch:
    """Changes applied since the last commit, and since when."""

    def __init__(self) -> None:
        self.changes = 0
        self.started: float | None = None

    def grow(self, changes: int) -> None:
        if self.started is None:
            self.started = time.monotonic()
        self.changes += changes

    def due(self, interval: float) -> bool:
        if self.started is None:
            return False
        waited = time.monotonic() - self.started
        return self.changes >= COMMIT_CHANGES or waited >= interval

    def wait(self, interval: float, poll: float) -> float:
        """How long an idle feeder sleeps: a poll, or until this batch is due."""
        if self.started is None:
            return poll
        return max(0.0, min(poll, self.started + interval - time.monotonic()))
