"""The ``s3`` storage backend: sealed study ZIPs in an S3-compatible bucket.

One object per study version, ``{prefix}studies/{S}/{generation}.zip``, where the
generation is a 16-hex-digit number that grows with each put of the study (the time in
nanoseconds, or one more than the last). A put uploads a new object and never overwrites
one, so:

- a put that fails leaves the old object as it was, and a blob keeps reading the version
  it opened after the study was replaced (the old object is removed once its last reader
  closes, or at the next start);
- after a crash, the newest generation of each study is its ZIP; older ones are what a
  crash left and are removed when the backend opens.

The node owns its prefix as it owns its data directory, so what the bucket holds is
listed once when the backend opens and kept in memory (study -> generation, ETag, size):
``version``, asked on every read, costs no request. The Study Instance UID is the only
name in the key, so ``pacsnode reindex`` rebuilds an index from the bucket alone.

ZIPs are written to ``{data_dir}/s3-spool/`` (private) by the store, then uploaded (in
parts when large); an optional cache of whole studies lives in ``{data_dir}/s3-cache/``.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Hashable, Iterator, Mapping
from pathlib import Path
from typing import Any

from pacsnode.storage.backends.base import Filler, SealedBlob
from pacsnode.storage.backends.s3_blob import BlockCache, ObjectVersion, RangeReader, S3Blob
from pacsnode.storage.backends.s3_client import ObjectClient, ObjectInfo
from pacsnode.storage.backends.s3_settings import S3Settings, parse_settings
from pacsnode.storage.backends.study_cache import StudyCache
from pacsnode.storage.durable import disk_errors
from pacsnode.storage.errors import BackendUnavailable
from pacsnode.storage.layout import check_uid, is_valid_uid

log = logging.getLogger(__name__)

SPOOL_DIR = "s3-spool"
CACHE_DIR = "s3-cache"
_GENERATION_DIGITS = 16


class S3Backend:
    """Sealed study ZIPs in a bucket, under ``settings.prefix``."""

    name = "s3"

    def __init__(self, settings: S3Settings, data_dir: Path, client: ObjectClient) -> None:
        self.settings = settings
        self.client = client
        self.spool = Path(data_dir) / SPOOL_DIR
        self.cache = StudyCache(Path(data_dir) / CACHE_DIR, settings.cache_mb << 20)
        self.blocks = BlockCache(settings.block_cache_mb << 20)
        self._studies: dict[str, ObjectVersion] = {}
        #: keys of replaced versions to remove once nobody reads them (or now, if nobody does)
        self._doomed: list[str] = []
        self._guard = threading.Lock()

    # --- keys --------------------------------------------------------------------------

    def study_prefix(self, study_uid: str) -> str:
        return f"{self.settings.prefix}studies/{study_uid}/"

    def key(self, study_uid: str, generation: int) -> str:
        return f"{self.study_prefix(study_uid)}{generation:0{_GENERATION_DIGITS}x}.zip"

    def parse_key(self, key: str) -> tuple[str, int] | None:
        """(Study Instance UID, generation) of one of this backend's keys, else ``None``."""
        rest = key.removeprefix(f"{self.settings.prefix}studies/")
        study_uid, _, name = rest.partition("/")
        digits = name.removesuffix(".zip")
        if rest == key or not is_valid_uid(study_uid) or len(digits) != _GENERATION_DIGITS:
            return None
        try:
            return study_uid, int(digits, 16)
        except ValueError:
            return None

    # --- lifecycle ---------------------------------------------------------------------

    def open(self) -> None:
        """List the bucket (the newest generation of each study is its ZIP; older ones,
        left by a crash, are removed), and clear the spool."""
        self._clear_spool()
        newest: dict[str, tuple[int, ObjectInfo]] = {}
        stale: list[str] = []
        for info in self.client.list(f"{self.settings.prefix}studies/"):
            parsed = self.parse_key(info.key)
            if parsed is None:
                continue  # not ours: left alone
            study_uid, generation = parsed
            known = newest.get(study_uid)
            if known is not None and known[0] > generation:
                stale.append(info.key)
                continue
            if known is not None:
                stale.append(known[1].key)
            newest[study_uid] = (generation, info)
        with self._guard:
            self._studies = {
                uid: ObjectVersion(generation, info.etag, info.size)
                for uid, (generation, info) in newest.items()
            }
        for key in stale:
            log.info("s3: removing %s, an older version of a study left by a crash", key)
            self._remove_quietly(key)
        self.cache.open((self.key(uid, v.generation), v.etag) for uid, v in self._studies.items())
        log.info("s3: %d sealed studies in %s", len(self._studies), self._where())

    def close(self) -> None:
        self._remove_doomed()
        self.cache.close()

    # --- writes ------------------------------------------------------------------------

    def put(self, study_uid: str, fill: Filler) -> None:
        check_uid(study_uid, "StudyInstanceUID")
        if self.client.failing:
            # The store retries a failed seal every second or so: while the server is
            # down, one listing says so, rather than a whole ZIP spooled each time.
            self.client.probe(self.study_prefix(study_uid))
        path = self._spooled(fill)
        try:
            with self._guard:
                old = self._studies.get(study_uid)
            # Never below a generation seen: a clock set back must not let an older
            # version win at the next start.
            generation = max(time.time_ns(), old.generation + 1 if old else 0)
            key = self.key(study_uid, generation)
            size = path.stat().st_size
            # If this raises after the server took the object (a lost answer), that object
            # is the study's old ZIP plus what the store still keeps staged: the next put
            # supersedes it, or, after a crash, it wins at open and recovery folds the
            # staged instances in again. No clean-up is needed, nor tried while the
            # server may be down.
            etag = self.client.put_file(key, path)
            with self._guard:
                self._studies[study_uid] = ObjectVersion(generation, etag, size)
                if old is not None:
                    self._retire(study_uid, old)
            if old is not None:
                self.cache.drop(self.key(study_uid, old.generation), old.etag)
            self.cache.admit(key, etag, path)
        finally:
            path.unlink(missing_ok=True)
        self._remove_doomed()

    def delete(self, study_uid: str) -> bool:
        check_uid(study_uid, "StudyInstanceUID")
        # Every generation goes, also those kept for readers: one left behind would bring
        # the study back at the next start. Listed, not only remembered, for the same reason.
        keys = {info.key for info in self.client.list(self.study_prefix(study_uid))}
        for key in keys:
            self.client.delete(key)
        with self._guard:
            old = self._studies.pop(study_uid, None)
            if old is not None:
                old.retired = True
        if old is not None:
            self.cache.drop(self.key(study_uid, old.generation), old.etag)
        self._remove_doomed()
        return old is not None or bool(keys)

    # --- reads -------------------------------------------------------------------------

    def get(self, study_uid: str) -> SealedBlob:
        check_uid(study_uid, "StudyInstanceUID")
        with self._guard:
            version = self._studies.get(study_uid)
            if version is None:
                raise FileNotFoundError(f"no sealed ZIP of study {study_uid} in {self._where()}")
            version.readers += 1
        key = self.key(study_uid, version.generation)
        try:
            cached = self._cached(key, version)
        except BaseException:
            self._release(study_uid, version)
            raise
        if cached is not None:
            self._release(study_uid, version)
            return cached
        return self._blob(study_uid, version, key)

    def read_range(self, study_uid: str, offset: int, size: int) -> bytes:
        with self.get(study_uid) as blob:
            return blob.pread(size, offset)

    def version(self, study_uid: str) -> Hashable | None:
        check_uid(study_uid, "StudyInstanceUID")
        version = self._studies.get(study_uid)
        return None if version is None else (version.generation, version.etag)

    def size(self, study_uid: str) -> int | None:
        check_uid(study_uid, "StudyInstanceUID")
        version = self._studies.get(study_uid)
        return None if version is None else version.size

    def study_uids(self) -> Iterator[str]:
        """The studies in the bucket, listed now (not only those this node remembers)."""
        seen: set[str] = set()
        for info in self.client.list(f"{self.settings.prefix}studies/"):
            parsed = self.parse_key(info.key)
            if parsed is not None and parsed[0] not in seen:
                seen.add(parsed[0])
                yield parsed[0]

    # --- helpers -----------------------------------------------------------------------

    def _where(self) -> str:
        prefix = f", prefix {self.settings.prefix!r}" if self.settings.prefix else ""
        return f"{self.client.describe()}{prefix}"

    def _spooled(self, fill: Filler) -> Path:
        """``fill``'s ZIP in a private temp file on the data disk."""
        self.spool.mkdir(mode=0o700, parents=True, exist_ok=True)
        descriptor, name = tempfile.mkstemp(dir=self.spool, suffix=".zip")  # mode 0o600
        path = Path(name)
        try:
            with disk_errors("a study ZIP to upload"), os.fdopen(descriptor, "wb") as handle:
                fill(handle)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return path

    def _clear_spool(self) -> None:
        """What an interrupted put left in the spool (nothing else is kept there)."""
        shutil.rmtree(self.spool, ignore_errors=True)
        self.spool.mkdir(mode=0o700, parents=True, exist_ok=True)

    def _cached(self, key: str, version: ObjectVersion) -> SealedBlob | None:
        blob = self.cache.lookup(key, version.etag)
        if blob is None and self.cache.wants(version.size):
            self.cache.fill(key, version.etag, lambda h: self.client.download(key, version.etag, h))
            blob = self.cache.lookup(key, version.etag)
        return blob

    def _blob(self, study_uid: str, version: ObjectVersion, key: str) -> S3Blob:
        """A blob on ``version``, which the caller has counted as read once more."""
        reader = RangeReader(self.client, self.blocks, key, version.etag, version.size)

        def reopen() -> S3Blob:
            with self._guard:
                version.readers += 1
            return self._blob(study_uid, version, key)

        return S3Blob(
            f"s3://{self.settings.bucket}/{key}",
            reader,
            reopen,
            lambda: self._release(study_uid, version),
        )

    def _release(self, study_uid: str, version: ObjectVersion) -> None:
        # Called when a blob closes, maybe by the garbage collector on any thread: it only
        # notes what to remove; the removal is a request, made by the next write or close.
        with self._guard:
            version.readers -= 1
            if version.readers == 0 and version.retired:
                self._doomed.append(self.key(study_uid, version.generation))

    def _retire(self, study_uid: str, version: ObjectVersion) -> None:
        """(under the guard) A replaced version: removed now if nobody reads it, else when
        its last reader closes."""
        version.retired = True
        if version.readers == 0:
            self._doomed.append(self.key(study_uid, version.generation))

    def _remove_doomed(self) -> None:
        with self._guard:
            doomed, self._doomed = self._doomed, []
        for key in doomed:
            self.blocks.forget(key)
            if not self._remove_quietly(key):
                with self._guard:
                    self._doomed.append(key)  # tried again later; at worst, at the next start

    def _remove_quietly(self, key: str) -> bool:
        try:
            self.client.delete(key)
        except BackendUnavailable as exc:
            log.warning("s3: could not remove %s (removed later): %s", key, exc)
            return False
        return True


def s3_backend(settings: Mapping[str, Any], data_dir: Path) -> S3Backend:
    """The ``s3`` entry point: ``[plugins.s3]`` settings (see :mod:`.s3_settings`)."""
    parsed = parse_settings(settings)
    return S3Backend(parsed, data_dir, ObjectClient(parsed))
