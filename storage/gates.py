"""Shared and exclusive holds on named keys (a study, a patient), taken all at once.

Storing an instance and indexing it are two steps; deleting takes both back. An ingest
holds its study (and patient) *shared* from storing to indexing, so senders of one study
still store in parallel; a deletion holds what it deletes *exclusively* from reading
what to delete to unindexing it. So a deletion never sees an instance stored but not yet
indexed, and never unindexes one it did not delete from storage: the interleaving that
left an instance stored but unindexed cannot happen.

Every hold takes all its keys at once (nobody holds some keys while waiting for others
in one call), and a waiting exclusive hold keeps new shared ones of its keys out, so a
deletion is not starved by a study that keeps receiving.
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager


def study_key(study_uid: str) -> str:
    return f"study:{study_uid}"


def resource_key(resource_id: str) -> str:
    """The key of an index resource (the node holds patients by their id)."""
    return f"resource:{resource_id}"


class KeyedGate:
    def __init__(self) -> None:
        self._changed = threading.Condition(threading.Lock())
        self._shared: dict[str, int] = {}
        self._exclusive: set[str] = set()
        self._waiting: Counter[str] = Counter()
        self._sleepers = 0  # threads waiting: a release wakes them only when there are any

    def shared(self, keys: Iterable[str]) -> AbstractContextManager[None]:
        """Held by every ingest: a plain class, not a generator, as it is on the hot path."""
        return _SharedHold(self, tuple(keys))

    def _enter_shared(self, keys: tuple[str, ...]) -> None:
        with self._changed:
            while any(key in self._exclusive or key in self._waiting for key in keys):
                self._wait()
            for key in keys:
                self._shared[key] = self._shared.get(key, 0) + 1

    def _leave_shared(self, keys: tuple[str, ...]) -> None:
        with self._changed:
            for key in keys:
                count = self._shared[key] - 1
                if count:
                    self._shared[key] = count
                else:
                    del self._shared[key]
            if self._sleepers:
                self._changed.notify_all()

    @contextlib.contextmanager
    def exclusive(self, keys: Iterable[str]) -> Iterator[None]:
        held = frozenset(keys)
        with self._changed:
            self._waiting.update(held)
            try:
                while any(key in self._exclusive or key in self._shared for key in held):
                    self._wait()
            finally:
                self._waiting.subtract(held)
                for key in held:
                    if self._waiting[key] <= 0:
                        del self._waiting[key]
            self._exclusive |= held
        try:
            yield
        finally:
            with self._changed:
                self._exclusive -= held
                if self._sleepers:
                    self._changed.notify_all()

    def _wait(self) -> None:
        self._sleepers += 1
        try:
            self._changed.wait()
        finally:
            self._sleepers -= 1

    def is_shared(self, key: str) -> bool:
        """Whether some shared hold has ``key`` (e.g. an ingest between storing and indexing)."""
        with self._changed:
            return key in self._shared


class _SharedHold:
    __slots__ = ("_gate", "_keys")

    def __init__(self, gate: KeyedGate, keys: tuple[str, ...]) -> None:
        self._gate = gate
        self._keys = keys

    def __enter__(self) -> None:
        self._gate._enter_shared(self._keys)

    def __exit__(self, *exc_info: object) -> None:
        self._gate._leave_shared(self._keys)
