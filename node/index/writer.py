"""The index's single writer thread, with group commit.

LMDB allows one write transaction at a time. Senders (DICOM associations,
REST requests, peers) submit jobs; the writer takes every job that is
waiting, runs them in one transaction (each in a nested one, so a failing
job is rolled back alone) and commits once, so concurrent senders share the
fsync. Readers never wait for it.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from pacsnode.node.index.environment import Environment, Txn

T = TypeVar("T")
_MAX_BATCH = 256
_STOP = object()


class IndexWriter:
    def __init__(self, environment: Environment) -> None:
        self._environment = environment
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="index-writer", daemon=True)
        self._thread.start()

    def submit(self, job: Callable[[Txn], T]) -> Future[T]:
        future: Future[T] = Future()
        self._queue.put((job, future))
        return future

    def run(self, job: Callable[[Txn], T]) -> T:
        """Submit ``job`` and wait until its transaction is committed."""
        return self.submit(job).result()

    def close(self) -> None:
        self._queue.put(_STOP)
        self._thread.join()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch = [first]
            stop = False
            while len(batch) < _MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)
            self._commit(batch)
            if stop:
                return

    def _commit(self, batch: list[tuple[Callable[[Txn], Any], Future[Any]]]) -> None:
        try:
            outcomes = self._environment.write_batch([job for job, _ in batch])
        except Exception as exc:  # the commit itself failed: every job failed
            for _, future in batch:
                future.set_exception(exc)
            return
        for (_, future), (ok, value) in zip(batch, outcomes, strict=True):
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
