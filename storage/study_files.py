"""Where a study's files are, and which copy of each instance is current.

An instance lives in its staging file until its study is sealed, then in the
study ZIP, which the storage backend keeps (:mod:`storage.backends`); a study is
*pending* (``pending/{S}``, a durable marker) while it has staging or an
unfinished rewrite. :class:`StudyFiles` answers those questions for
:class:`pacsnode.storage.store.StudyStore`, which owns the locks and the writes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from pacsnode.storage.archive import InstanceSource, open_zip, read_staged
from pacsnode.storage.backends.base import SealedBackend
from pacsnode.storage.durable import remove_durable, write_atomic
from pacsnode.storage.errors import NotFound, StorageError
from pacsnode.storage.layout import (
    check_uid,
    sop_uid_of_staged,
    staged_instance_path,
    staging_dir,
    study_dir,
)
from pacsnode.storage.sealed_cache import SealedCache

_READ_ATTEMPTS = 20


class StudyFiles:
    def __init__(self, root: Path, backend: SealedBackend) -> None:
        self.root = root
        self.sealed = SealedCache(backend)

    def sources(self, study_uid: str) -> dict[str, InstanceSource]:
        """Every instance of the study, staged copies taking precedence over sealed ones.

        Staging is listed before the sealed ZIP is read; if a listed staging file
        has gone when it is opened, a seal finished meanwhile and the ZIP read may
        predate it, so the whole read starts again.
        """
        for _ in range(_READ_ATTEMPTS):
            staged_paths = self.staged_paths(study_uid)
            sealed = self.sealed.get(study_uid)
            sources = dict(sealed.instances) if sealed is not None else {}
            try:
                for path in staged_paths:
                    with open_zip(path) as staged:
                        source = read_staged(staged)
                    sources[source.sop_uid] = source
            except FileNotFoundError:
                continue
            return sources
        raise StorageError(f"study {study_uid} kept changing while being read")

    def staged_paths(self, study_uid: str) -> list[Path]:
        try:
            entries = list(staging_dir(self.root, study_uid).iterdir())
        except FileNotFoundError:
            return []
        return sorted(path for path in entries if sop_uid_of_staged(path) is not None)

    @contextlib.contextmanager
    def instance_source(
        self, study_uid: str, series_uid: str, sop_uid: str
    ) -> Iterator[InstanceSource]:
        """The instance's current copy: its staging file, else the sealed study ZIP."""
        check_uid(series_uid, "SeriesInstanceUID")
        try:
            staged = open_zip(staged_instance_path(self.root, study_uid, sop_uid))
        except FileNotFoundError:
            staged = None  # not staged, or sealed since
        source: InstanceSource | None
        if staged is not None:
            with staged:
                source = read_staged(staged)
                if source.series_uid == series_uid:
                    yield source
                    return
        else:
            sealed = self.sealed.get(study_uid)
            source = sealed.instances.get(sop_uid) if sealed is not None else None
            if source is not None and source.series_uid == series_uid:
                yield source
                return
        raise NotFound(f"no instance {sop_uid} in series {series_uid} of study {study_uid}")

    def existing_digest(self, study_uid: str, sop_uid: str) -> str | None:
        try:
            with open_zip(staged_instance_path(self.root, study_uid, sop_uid)) as staged:
                return read_staged(staged).digest
        except FileNotFoundError:
            sealed = self.sealed.get(study_uid)
            source = sealed.instances.get(sop_uid) if sealed is not None else None
            return source.digest if source is not None else None

    # --- pending markers ---------------------------------------------------------

    def pending_marker(self, study_uid: str) -> Path:
        return self.root / "pending" / check_uid(study_uid, "StudyInstanceUID")

    def mark_pending(self, study_uid: str) -> None:
        marker = self.pending_marker(study_uid)
        if not marker.exists():
            write_atomic(marker, b"")

    def clear_pending(self, study_uid: str) -> None:
        if not self.staged_paths(study_uid):
            remove_durable(self.pending_marker(study_uid))

    def remove_empty_dirs(self, study_uid: str) -> None:
        for directory in (staging_dir(self.root, study_uid), study_dir(self.root, study_uid)):
            with contextlib.suppress(FileNotFoundError, OSError):
                directory.rmdir()
                # Not fsynced: an empty directory that reappears after a crash is harmless.
