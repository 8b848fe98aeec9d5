"""A small cache of opened, parsed sealed study ZIPs.

Parsing a study's metadata (gzip + JSON) costs milliseconds for a large
study; reads of single instances and duplicate checks on every ingest would
pay it again each time. Entries are kept with the backend's version of the
ZIP (a local file's inode, mtime and size; an object's ETag), so a rewritten ZIP
is never served stale. An evicted ZipFile is not closed here: readers may still
hold it, and its blob closes when the last reference goes.
"""

from __future__ import annotations

import threading
import zipfile
from collections import OrderedDict
from collections.abc import Hashable

from pacsnode.storage.archive import InstanceSource, open_zip, read_sealed
from pacsnode.storage.backends.base import SealedBackend


class SealedStudy:
    """An opened study ZIP and its instances."""

    def __init__(self, archive: zipfile.ZipFile, instances: dict[str, InstanceSource]) -> None:
        self.archive = archive
        self.instances = instances


class SealedCache:
    """At most ``capacity`` studies and ``instance_budget`` instances (~15 KB of parsed
    metadata each), so a node holding huge studies keeps a bounded footprint."""

    def __init__(
        self, backend: SealedBackend, capacity: int = 32, instance_budget: int = 4000
    ) -> None:
        self._backend = backend
        self._capacity = capacity
        self._instance_budget = instance_budget
        self._entries: OrderedDict[str, tuple[Hashable, SealedStudy]] = OrderedDict()
        self._guard = threading.Lock()

    def get(self, study_uid: str) -> SealedStudy | None:
        """The study's parsed sealed ZIP, or ``None`` if it has none."""
        version = self._backend.version(study_uid)
        if version is None:
            self.forget(study_uid)
            return None
        with self._guard:
            cached = self._entries.get(study_uid)
            if cached is not None and cached[0] == version:
                self._entries.move_to_end(study_uid)
                return cached[1]
        try:
            blob = self._backend.get(study_uid)
        except FileNotFoundError:
            return None
        try:
            archive = open_zip(blob)
            study = SealedStudy(archive, read_sealed(archive, study_uid))
        except BaseException:
            blob.close()
            raise
        with self._guard:
            self._entries[study_uid] = (version, study)
            self._entries.move_to_end(study_uid)
            while len(self._entries) > 1 and (
                len(self._entries) > self._capacity
                or sum(len(e[1].instances) for e in self._entries.values()) > self._instance_budget
            ):
                self._entries.popitem(last=False)
        return study

    def clear(self) -> None:
        with self._guard:
            self._entries.clear()

    def forget(self, study_uid: str) -> None:
        with self._guard:
            self._entries.pop(study_uid, None)
