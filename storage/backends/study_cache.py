"""A local cache of whole sealed study ZIPs kept elsewhere (an object store), on the data
disk, at most ``limit`` bytes, least recently used out first.

A file is named after the object version it copies (key and ETag), so a replaced study is
never served from an old copy. The files are a cache, not a store: they are written
without fsync, and a node that did not close cleanly (no ``clean`` marker) throws them all
away at start rather than trust a file a power cut may have left half-written.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO

from pacsnode.storage.backends.local import LocalBlob, open_blob
from pacsnode.storage.durable import disk_errors

log = logging.getLogger(__name__)

_CLEAN = "clean"
_SUFFIX = ".zip"


def cache_name(key: str, etag: str) -> str:
    return hashlib.sha256(f"{key}\0{etag}".encode()).hexdigest()[:40] + _SUFFIX


class StudyCache:
    """Copies of object versions under ``directory`` (private to the node)."""

    def __init__(self, directory: Path, limit: int) -> None:
        self.directory = directory
        self.limit = limit
        self._files: OrderedDict[str, int] = OrderedDict()  # name -> size, LRU first
        self._size = 0
        self._guard = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.limit > 0

    def wants(self, size: int) -> bool:
        """Whether a version of ``size`` bytes read by ranges is worth copying whole: small
        against the cache, so one study cannot sweep it."""
        return self.enabled and size <= self.limit // 8

    def open(self, current: Iterable[tuple[str, str]]) -> None:
        """Keep the copies of ``current`` (key, ETag) versions, if the last close was clean."""
        if not self.enabled:
            shutil.rmtree(self.directory, ignore_errors=True)
            return
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        marker = self.directory / _CLEAN
        clean = marker.exists()
        marker.unlink(missing_ok=True)
        wanted = {cache_name(key, etag) for key, etag in current} if clean else set()
        kept = []
        for path in self.directory.iterdir():
            if path.name in wanted:
                kept.append((path.stat().st_mtime_ns, path.name, path.stat().st_size))
            else:
                _remove(path)
        for _, name, size in sorted(kept):
            self._files[name] = size
            self._size += size
        self._evict()

    def close(self) -> None:
        if self.enabled and self.directory.is_dir():
            (self.directory / _CLEAN).touch()

    def lookup(self, key: str, etag: str) -> LocalBlob | None:
        name = cache_name(key, etag)
        with self._guard:
            if name not in self._files:
                return None
            self._files.move_to_end(name)
        try:
            return open_blob(self.directory / name)
        except FileNotFoundError:  # evicted meanwhile
            return None

    def admit(self, key: str, etag: str, path: Path) -> bool:
        """Take the file at ``path`` (on the same disk) as the copy of a version; whether
        it was taken (else the caller still owns it)."""
        size = path.stat().st_size
        if not self.enabled or size > self.limit:
            return False
        name = cache_name(key, etag)
        os.replace(path, self.directory / name)
        with self._guard:
            self._size += size - self._files.pop(name, 0)
            self._files[name] = size
        self._evict()
        return True

    def fill(self, key: str, etag: str, write: Callable[[BinaryIO], None]) -> None:
        """Copy a version with ``write`` (a download), then admit it."""
        handle = tempfile.NamedTemporaryFile(dir=self.directory, suffix=".part", delete=False)
        path = Path(handle.name)
        try:
            with handle, disk_errors("the study cache"):
                write(handle)
            if not self.admit(key, etag, path):
                path.unlink()
        except BaseException:
            path.unlink(missing_ok=True)
            raise

    def drop(self, key: str, etag: str) -> None:
        name = cache_name(key, etag)
        with self._guard:
            size = self._files.pop(name, None)
            if size is None:
                return
            self._size -= size
        _remove(self.directory / name)

    def _evict(self) -> None:
        # An evicted file that a reader has open stays readable until it closes it.
        while True:
            with self._guard:
                if self._size <= self.limit or not self._files:
                    return
                name, size = self._files.popitem(last=False)
                self._size -= size
            _remove(self.directory / name)


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    log.debug("study cache: removed %s", path.name)
