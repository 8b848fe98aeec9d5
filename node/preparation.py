"""Where an arriving instance is parsed and converted: the CPU-bound half of ingest.

One Python process parses one instance at a time (the GIL), however many senders there
are. When several instances arrive at once (four storescu, REST clients, a peer and a
modality), the node parses one in the thread it arrived on and hands the others to
worker processes, so every core works. An instance that arrives alone is parsed where
it arrived: no copy to another process, no wait for one.

A worker is a plain child process (``python -m pacsnode.node.preparation_worker``)
that imports only what parsing needs and answers one request at a time over its stdin
and stdout. Plain pipes rather than ``multiprocessing``: its start methods either fork a
process whose threads may hold locks, or import the node's main module again in every
worker, and its workers outlive a node killed with SIGKILL; a worker here reads EOF and
exits when the node is gone, however it went. Workers start when first needed and stop
after ``idle_s`` without work, so an idle node holds none. A worker that dies (killed,
out of memory) costs its instance a parse in the arriving thread instead.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import queue
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any, BinaryIO

import pydicom.config

from pacsnode.storage.limits import ArchiveLimits
from pacsnode.storage.results import PreparedInstance
from pacsnode.storage.store import prepare_instance

log = logging.getLogger(__name__)

#: the most workers "auto" starts, whatever the cores (each holds pydicom: ~40 MiB)
MAX_AUTO_WORKERS = 4
_LENGTH = struct.Struct("<Q")


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


# --- the wire between the node and a worker: a length, then a pickle --------------------


def send_message(stream: IO[bytes], message: Any) -> None:
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_LENGTH.pack(len(payload)))
    stream.write(payload)
    stream.flush()


def receive_message(stream: IO[bytes]) -> Any:
    """The next message; EOFError when the other side has gone."""
    head = stream.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        raise EOFError("the other side closed the pipe")
    (length,) = _LENGTH.unpack(head)
    payload = stream.read(length)
    if len(payload) < length:
        raise EOFError("the other side closed the pipe mid-message")
    return pickle.loads(payload)


class _WorkerGone(Exception):
    """The worker process died or could not be started."""


class _Worker:
    """One worker process and its two pipes."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pacsnode.node.preparation_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        self.last_used = time.monotonic()

    def prepare(self, source: bytes | Path, limits: ArchiveLimits, level: int | None) -> Any:
        assert self.process.stdin is not None and self.process.stdout is not None
        try:
            send_message(self.process.stdin, (source, limits, level))
            ok, value = receive_message(self.process.stdout)
        except (OSError, EOFError, pickle.UnpicklingError) as exc:
            raise _WorkerGone(str(exc)) from None
        self.last_used = time.monotonic()
        if not ok:
            raise value
        return value

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            if self.process.stdin is not None:
                self.process.stdin.close()  # EOF: the worker exits
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


class Preparer:
    """Parses and converts instances, in the arriving thread or in worker processes."""

    def __init__(
        self, limits: ArchiveLimits, level: int | None, workers: int, idle_s: float = 60.0
    ) -> None:
        self._limits = limits
        self._level = level
        self._most = workers
        self._idle_s = idle_s
        self._lock = threading.Lock()
        self._in_flight = 0
        self._idle: queue.LifoQueue[_Worker] = queue.LifoQueue()
        self._started = 0
        self._closed = False
        self._reaper: threading.Thread | None = None

    def prepare(self, source: bytes | Path | BinaryIO) -> PreparedInstance:
        with self._lock:
            alone = self._in_flight == 0
            self._in_flight += 1
        try:
            if alone or self._most == 0 or not isinstance(source, bytes | Path):
                return prepare_instance(source, self._limits, self._level)
            return self._in_a_worker(source)
        finally:
            with self._lock:
                self._in_flight -= 1

    @property
    def has_workers(self) -> bool:
        """Whether it may start worker processes."""
        return self._most > 0

    def prepare_aside(self, path: Path) -> PreparedInstance:
        """Parse and convert a stored file in a worker process when there is one to take
        (here otherwise): for background work, which should leave this process's GIL to
        the instances arriving."""
        return self._in_a_worker(path)

    def _in_a_worker(self, source: bytes | Path) -> PreparedInstance:
        worker = self._take_worker()
        if worker is None:  # every worker busy: this thread parses, rather than wait
            return prepare_instance(source, self._limits, self._level)
        try:
            prepared: PreparedInstance = worker.prepare(source, self._limits, self._level)
        except _WorkerGone as exc:
            log.warning("an ingest worker process died (%s); parsing in this thread", exc)
            self._forget(worker)
            return prepare_instance(source, self._limits, self._level)
        except BaseException:
            self._give_back(worker)  # a refusal of the instance: the worker is fine
            raise
        self._give_back(worker)
        return prepared

    def _take_worker(self) -> _Worker | None:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            if self._closed or self._started >= self._most:
                return None
            self._started += 1
            if self._reaper is None:
                self._reaper = threading.Thread(target=self._stop_idle_workers, daemon=True)
                self._reaper.start()
        try:
            return _Worker()
        except OSError as exc:
            log.warning("cannot start an ingest worker process: %s", exc)
            with self._lock:
                self._started -= 1
            return None

    def _give_back(self, worker: _Worker) -> None:
        with self._lock:
            closed = self._closed
        if closed:
            self._forget(worker)
        else:
            self._idle.put(worker)

    def _forget(self, worker: _Worker) -> None:
        worker.stop()
        with self._lock:
            self._started -= 1

    def _stop_idle_workers(self) -> None:
        while True:
            time.sleep(min(self._idle_s / 2, 5.0))
            keep = []
            while True:
                try:
                    worker = self._idle.get_nowait()
                except queue.Empty:
                    break
                if time.monotonic() - worker.last_used >= self._idle_s:
                    self._forget(worker)
                else:
                    keep.append(worker)
            for worker in reversed(keep):  # the most recently used on top again
                self._idle.put(worker)
            with self._lock:
                if self._closed:
                    return

    def close(self) -> None:
        with self._lock:
            self._closed = True
        while True:
            try:
                self._forget(self._idle.get_nowait())
            except queue.Empty:
                return
