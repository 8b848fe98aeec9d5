"""Where an arriving instance is parsed and converted: the CPU-bound half of ingest.

One Python process parses one instance at a time (the GIL), however many senders there
are. When several instances arrive at once (four storescu, REST clients, a peer and a
modality), the node parses one in the thread it arrived on and hands the others to
worker processes, so every core works. An instance that arrives alone is parsed where
it arrived: no copy to another process, no wait for one.

Workers are started when first needed and stopped after ``idle_s`` without work, so an
idle node holds none. They come from a fork server that imports nothing of the node
(each worker imports only ``pacsnode.storage``), never from a fork of the node itself,
whose threads (the event loop, DICOM associations, the index writer) may hold locks.
A worker that dies (killed, out of memory) costs the instance it was parsing a parse
in the arriving thread instead, and the next busy moment starts new workers.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import BinaryIO

import pydicom.config

from pacsnode.storage.limits import ArchiveLimits
from pacsnode.storage.results import PreparedInstance
from pacsnode.storage.store import prepare_instance

log = logging.getLogger(__name__)

#: the most workers "auto" starts, whatever the cores (each holds pydicom: ~40 MiB)
MAX_AUTO_WORKERS = 4


def skip_pydicom_value_warnings() -> None:
    """pydicom checks every value it reads against its VR (a regular expression per UID,
    date, name...) only to warn, and the node ignores those warnings: it refuses what it
    cannot store by its own checks. Skipping them saves a tenth of a small instance's
    ingest, and pynetdicom's work on every DIMSE message (its command sets' UIDs). Set
    by the node's core at start, and in each worker process."""
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE


def auto_workers() -> int:
    """One less than the cores this process may use (the arriving thread is the other)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(0, min(MAX_AUTO_WORKERS, cores - 1))


class Preparer:
    """Parses and converts instances, in the arriving thread or in worker processes."""

    def __init__(
        self, limits: ArchiveLimits, level: int | None, workers: int, idle_s: float = 60.0
    ) -> None:
        self._limits = limits
        self._level = level
        self._workers = workers
        self._idle_s = idle_s
        self._lock = threading.Lock()
        self._in_flight = 0
        self._pool: ProcessPoolExecutor | None = None
        self._last_used = 0.0
        self._closed = False

    def prepare(self, source: bytes | Path | BinaryIO) -> PreparedInstance:
        with self._lock:
            alone = self._in_flight == 0
            self._in_flight += 1
        try:
            if alone or self._workers == 0 or not isinstance(source, bytes | Path):
                return prepare_instance(source, self._limits, self._level)
            return self._in_a_worker(source)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _in_a_worker(self, source: bytes | Path) -> PreparedInstance:
        pool = self._running_pool()
        if pool is None:
            return prepare_instance(source, self._limits, self._level)
        try:
            return pool.submit(prepare_instance, source, self._limits, self._level).result()
        except BrokenProcessPool:
            log.warning("an ingest worker process died; parsing in the receiving thread")
            self._drop(pool)
            return prepare_instance(source, self._limits, self._level)

    def _running_pool(self) -> ProcessPoolExecutor | None:
        with self._lock:
            self._last_used = time.monotonic()
            if self._closed:
                return None
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    self._workers,
                    mp_context=_fork_server(),
                    initializer=skip_pydicom_value_warnings,
                )
                threading.Thread(
                    target=self._stop_when_idle, args=(self._pool,), daemon=True
                ).start()
            return self._pool

    def _stop_when_idle(self, pool: ProcessPoolExecutor) -> None:
        while True:
            time.sleep(min(self._idle_s, 5.0))
            with self._lock:
                if self._pool is not pool:
                    return
                if self._in_flight == 0 and time.monotonic() - self._last_used >= self._idle_s:
                    self._pool = None
                    break
        pool.shutdown(wait=True)

    def _drop(self, pool: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is pool:
                self._pool = None
        pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


_fork_server_lock = threading.Lock()


def _fork_server() -> multiprocessing.context.BaseContext:
    """The fork server context, preloading nothing: by default it imports the parent's
    ``__main__`` (here the whole node) into the server and so into every worker."""
    context = multiprocessing.get_context("forkserver")
    with _fork_server_lock:
        context.set_forkserver_preload([])
    return context
