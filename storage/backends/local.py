"""The default storage backend: sealed study ZIPs on the data disk.

``{data_dir}/studies/{xx}/{S}/study.zip``, beside the study's staging directory (the
layout of :mod:`pacsnode.storage.layout`, unchanged from before backends existed). A ZIP is
replaced by writing a temp file, fsyncing it and renaming it over the old one; a reader
that opened the old one keeps reading it.
"""

from __future__ import annotations

import io
import os
from collections.abc import Hashable, Iterator, Mapping
from pathlib import Path
from typing import Any

from pacsnode.storage.backends.base import Filler
from pacsnode.storage.durable import (
    make_dirs_durable,
    remove_durable,
    write_atomic_with,
)
from pacsnode.storage.layout import STUDY_ZIP_NAME, is_valid_uid, study_zip_path


class LocalBlob(io.BufferedReader):
    """A sealed ZIP on disk: a buffered file that also reads with ``os.pread``."""

    def pread(self, size: int, offset: int) -> bytes:
        return os.pread(self.fileno(), size, offset)

    def reopen(self) -> LocalBlob:
        # The same file even if a rewrite renamed another over its path meanwhile.
        blob = open_blob(Path(f"/proc/self/fd/{self.fileno()}"))
        blob_name = self.name
        blob.raw.name = blob_name  # type: ignore[misc]
        return blob


def open_blob(path: Path) -> LocalBlob:
    return LocalBlob(io.FileIO(path, "rb"))


class LocalBackend:
    """Sealed ZIPs under ``root`` (the data directory)."""

    name = "local"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def open(self) -> None:
        # Temp files of an interrupted put are in pending studies' directories, which
        # the store's recovery cleans.
        (self.root / "studies").mkdir(parents=True, exist_ok=True)

    def close(self) -> None:
        pass

    def path(self, study_uid: str) -> Path:
        return study_zip_path(self.root, study_uid)

    def put(self, study_uid: str, fill: Filler) -> None:
        path = self.path(study_uid)
        make_dirs_durable(path.parent, self.root)
        write_atomic_with(path, fill)

    def get(self, study_uid: str) -> LocalBlob:
        return open_blob(self.path(study_uid))

    def read_range(self, study_uid: str, offset: int, size: int) -> bytes:
        with self.get(study_uid) as blob:
            return blob.pread(size, offset)

    def version(self, study_uid: str) -> Hashable | None:
        try:
            stat = self.path(study_uid).stat()
        except FileNotFoundError:
            return None
        return stat.st_ino, stat.st_mtime_ns, stat.st_size

    def size(self, study_uid: str) -> int | None:
        try:
            return self.path(study_uid).stat().st_size
        except FileNotFoundError:
            return None

    def delete(self, study_uid: str) -> bool:
        return remove_durable(self.path(study_uid))

    def study_uids(self) -> Iterator[str]:
        for bucket in (self.root / "studies").iterdir():
            if not bucket.is_dir():
                continue
            for entry in bucket.iterdir():
                if is_valid_uid(entry.name) and (entry / STUDY_ZIP_NAME).is_file():
                    yield entry.name


def local_backend(settings: Mapping[str, Any], data_dir: Path) -> LocalBackend:
    """The ``local`` entry point: no settings of its own."""
    if settings:
        raise ValueError(f"takes no settings (got {', '.join(sorted(settings))})")
    return LocalBackend(data_dir)
