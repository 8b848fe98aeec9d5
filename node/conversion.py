"""Converting received instances in the background, off the acknowledgement path.

An instance arriving alone is acknowledged once its bytes are durable and its main tags
indexed (``storage/received.py``, :meth:`Ingestor.ingest`); this converter then turns it
into archive-direct entries, in a worker process when the node has one (another core),
and gives the index its content digest and stored sizes.

One thread takes the instances in the order they arrived, and records what it converted
in the index a batch at a time (one write transaction, one fsync, for up to
:data:`BATCH` instances or :data:`BATCH_S`): a commit per instance would double the
index's fsyncs, which the senders wait for. A record is updated only if it still has
the received digest it was given (a unique token per received file), so an instance
deleted, or deleted and received again, meanwhile is left as it is.

The sealer holds off a study while any of its instances waits here
(:meth:`Converter.is_busy`), although sealing would convert them too: reads convert a
received file they meet (``StudyFiles``), so the converter finding it done is normal,
and it then only updates the index.

A conversion whose staging ZIP cannot be written (a full disk) is tried again later,
waiting longer each time; meanwhile reads serve the instance converted in memory. A crash
or a stop loses only this queue: the files stay durable, and start-up recovery, which
reads every pending study, converts them and records them in the index as converted
(:func:`pacsnode.node.reconcile.reconcile_study`).
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pacsnode.node.ids import Level
from pacsnode.node.index import DeletionReason, Index
from pacsnode.storage.errors import StorageError
from pacsnode.storage.results import PreparedInstance, StoredInstance
from pacsnode.storage.store import StudyStore

log = logging.getLogger(__name__)

#: after a conversion that could not be written (a full disk), the next try waits this
#: long, doubled each time up to the most
FIRST_RETRY_S = 1.0
MOST_RETRY_S = 60.0
#: conversions recorded in the index at once, and the longest one waits to be recorded
BATCH = 64
BATCH_S = 0.1


@dataclass(frozen=True)
class _Received:
    instance: StoredInstance
    ids: dict[Level, str]
    tries: int = 0


@dataclass
class _Batch:
    """Conversions done and not yet recorded in the index."""

    converted: list[tuple[StoredInstance, dict[Level, str], str]] = field(default_factory=list)
    unconvertible: list[tuple[dict[Level, str], str]] = field(default_factory=list)
    studies: list[str] = field(default_factory=list)
    since: float = 0.0

    def __len__(self) -> int:
        return len(self.studies)


class Converter:
    def __init__(
        self,
        store: StudyStore,
        index: Index,
        prepare: Callable[[Path], PreparedInstance],
    ) -> None:
        self._store = store
        self._index = index
        self._prepare = prepare
        self._queue: queue.Queue[_Received | None] = queue.Queue()
        self._lock = threading.Lock()
        #: notified when nothing waits any more
        self._idle = threading.Condition(self._lock)
        #: study -> its instances queued, being converted or not yet recorded
        self._waiting: collections.Counter[str] = collections.Counter()
        self._thread: threading.Thread | None = None
        self._retries: set[threading.Timer] = set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="converter", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Convert what is queued, then stop (what is left of a stop cut short is converted
        at the next start)."""
        if self._thread is None:
            return
        with self._lock:
            retries, self._retries = self._retries, set()
        for timer in retries:
            timer.cancel()
        self._queue.put(None)
        self._thread.join()
        self._thread = None

    def submit(self, instance: StoredInstance, ids: dict[Level, str]) -> None:
        """Convert this received instance when its turn comes."""
        with self._lock:
            self._waiting[instance.study_uid] += 1
        self._queue.put(_Received(instance, ids))

    def is_busy(self, study_uid: str) -> bool:
        """Whether an instance of the study waits for its conversion."""
        with self._lock:
            return self._waiting[study_uid] > 0

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until every instance submitted is converted and recorded (or ``timeout_s``
        has passed); whether it is."""
        with self._idle:
            return self._idle.wait_for(lambda: not self._waiting, timeout_s)

    def backlog(self) -> int:
        """How many instances wait for their conversion."""
        return self._queue.qsize()

    def _run(self) -> None:
        batch = _Batch()
        while True:
            timeout = None if not batch else max(0.0, batch.since + BATCH_S - time.monotonic())
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                batch = self._record(batch)
                continue
            if item is None:
                self._record(batch)
                return
            if not batch:
                batch.since = time.monotonic()
            if not self._convert_one(item, batch):
                self._try_again(item)
            if len(batch) >= BATCH:
                batch = self._record(batch)

    def _convert_one(self, item: _Received, batch: _Batch) -> bool:
        """Convert one received instance into ``batch``; False when it could not be done
        now (its staging ZIP could not be written: a full disk, say)."""
        received = item.instance
        try:
            converted = self._store.convert_received(
                received.study_uid, received.series_uid, received.sop_uid, self._prepare
            )
        except StorageError as exc:
            log.warning("instance %s not converted yet: %s", received.sop_uid, exc.message)
            return False
        except Exception:  # the file stays: try again later
            log.exception("converting instance %s failed", received.sop_uid)
            return False
        if converted is not None:
            batch.converted.append((converted, item.ids, received.digest))
        else:
            batch.unconvertible.append((item.ids, received.digest))
        batch.studies.append(received.study_uid)
        return True

    def _record(self, batch: _Batch) -> _Batch:
        """Record a batch in the index (in one write), then let its studies be sealed.
        A batch the index refuses (a full disk) is dropped: its instances keep their
        received records, which the next start records (reconcile_study)."""
        if not batch:
            return batch
        try:
            self._index.record_conversions(batch.converted)
            for ids, received_digest in batch.unconvertible:
                self._forget_unconvertible(ids, received_digest)
        except Exception:
            log.exception("recording %d converted instances in the index failed", len(batch))
        with self._lock:
            for study_uid in batch.studies:
                self._waiting[study_uid] -= 1
                if self._waiting[study_uid] <= 0:
                    del self._waiting[study_uid]
            if not self._waiting:
                self._idle.notify_all()
        return _Batch()

    def _try_again(self, item: _Received) -> None:
        """Queue the instance again after a while; its study stays busy (not sealed)
        meanwhile. A stop cancels the wait: the next start converts it."""
        delay = min(MOST_RETRY_S, FIRST_RETRY_S * 2**item.tries)
        again = _Received(item.instance, item.ids, item.tries + 1)

        def requeue() -> None:
            with self._lock:
                if timer not in self._retries:
                    return  # stopped meanwhile
                self._retries.discard(timer)
            self._queue.put(again)

        timer = threading.Timer(delay, requeue)
        timer.daemon = True
        with self._lock:
            self._retries.add(timer)
        timer.start()

    def _forget_unconvertible(self, ids: dict[Level, str], received_digest: str) -> None:
        """The store no longer holds the instance. If its record is still the received
        one, it was not deleted: it could not be converted and was moved to quarantine
        (the store logged it), so the index forgets it too."""
        record = self._index.resource(ids[Level.INSTANCE])
        if record is not None and record.get("digest") == received_digest:
            self._index.remove(ids[Level.INSTANCE], DeletionReason.RECONCILE)
