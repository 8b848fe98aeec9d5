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


def study_key(study_uid: str) -> str:
    return f"study:{study_uid}"


def resource_key(resource_id: str) -> str:
    """The key of an index resource (the node holds patients by their id)."""
    return f"resource:{resource_id}"


class KeyedGate:
    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._shared: Counter[str] = Counter()
        self._exclusive: set[str] = set()
        self._waiting: Counter[str] = Counter()

    @contextlib.contextmanager
    def shared(self, keys: Iterable[str]) -> Iterator[None]:
        held = frozenset(keys)
        with self._changed:
            while any(key in self._exclusive or self._waiting[key] for key in held):
                self._changed.wait()
            self._shared.update(held)
        try:
            yield
        finally:
            with self._changed:
                self._shared.subtract(held)
                for key in held:
                    if self._shared[key] <= 0:
                        del self._shared[key]
                self._changed.notify_all()

    @contextlib.contextmanager
    def exclusive(self, keys: Iterable[str]) -> Iterator[None]:
        held = frozenset(keys)
        with self._changed:
            self._waiting.update(held)
            try:
                while any(key in self._exclusive or self._shared[key] for key in held):
                    self._changed.wait()
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
                self._changed.notify_all()

    def is_shared(self, key: str) -> bool:
        """Whether some shared hold has ``key`` (e.g. an ingest between storing and indexing)."""
        with self._changed:
            return self._shared[key] > 0
