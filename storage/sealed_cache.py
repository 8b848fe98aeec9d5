"""A small cache of opened, parsed sealed study ZIPs.

Parsing a study's metadata (gzip + JSON) costs milliseconds for a large
study; reads of single instances and duplicate checks on every ingest would
pay it again each time. Entries are keyed by the file's identity (inode,
mtime, size), so a rewritten ZIP is never served stale. An evicted ZipFile is
not closed here: readers may still hold it, and it closes when the last
reference goes.
"""

from __future__ import annotations

import threading
import zipfile
from collections import OrderedDict
from pathlib import Path

from pacsnode.storage.archive import InstanceSource, open_zip, read_sealed

_FileKey = tuple[int, int, int]


class SealedStudy:
    """An opened study ZIP and its instances."""

    def __init__(self, archive: zipfile.ZipFile, instances: dict[str, InstanceSource]) -> None:
        self.archive = archive
        self.instances = instances


class SealedCache:
    """At most ``capacity`` studies and ``instance_budget`` instances (~15 KB of parsed
    metadata each), so a node holding huge studies keeps a bounded footprint."""

    def __init__(self, capacity: int = 32, instance_budget: int = 4000) -> None:
        self._capacity = capacity
        self._instance_budget = instance_budget
        self._entries: OrderedDict[Path, tuple[_FileKey, SealedStudy]] = OrderedDict()
        self._guard = threading.Lock()

    def get(self, path: Path, study_uid: str) -> SealedStudy | None:
        """The parsed ZIP at ``path``, or ``None`` if there is none."""
        try:
            stat = path.stat()
        except FileNotFoundError:
            self.forget(path)
            return None
        key = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        with self._guard:
            cached = self._entries.get(path)
            if cached is not None and cached[0] == key:
                self._entries.move_to_end(path)
                return cached[1]
        try:
            archive = open_zip(path)
        except FileNotFoundError:
            return None
        try:
            study = SealedStudy(archive, read_sealed(archive, study_uid))
        except BaseException:
            archive.close()
            raise
        with self._guard:
            self._entries[path] = (key, study)
            self._entries.move_to_end(path)
            while len(self._entries) > 1 and (
                len(self._entries) > self._capacity
                or sum(len(e[1].instances) for e in self._entries.values()) > self._instance_budget
            ):
                self._entries.popitem(last=False)
        return study

    def clear(self) -> None:
        with self._guard:
            self._entries.clear()

    def forget(self, path: Path) -> None:
        with self._guard:
            self._entries.pop(path, None)
