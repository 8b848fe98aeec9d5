"""The ``example-dir`` storage backend: sealed study ZIPs in a folder of their own.

``{root}/{StudyInstanceUID}.zip``, flat. Each ZIP is replaced the durable way (a temp file
in the same folder, fsync, rename over the old one, fsync of the folder), so a crash leaves
the old ZIP or the new one, and a leftover temp file that :meth:`open` removes. Readers keep
the version they opened: a rename does not touch an open file.

Settings, in ``[plugins.example-dir]``: ``root`` (required; relative to the data
directory, or absolute). Anything else is refused.
"""

from __future__ import annotations

import errno
import io
import os
from collections.abc import Hashable, Iterator, Mapping
from pathlib import Path
from typing import Any

from pacsnode.storage.backends.base import Filler
from pacsnode.storage.errors import StorageFull
from pacsnode.storage.layout import check_uid, is_valid_uid

_TEMP = ".tmp-"


class DirectoryBlob(io.BufferedReader):
    """An open ZIP: a buffered file that also reads at an offset (``os.pread``)."""

    def pread(self, size: int, offset: int) -> bytes:
        return os.pread(self.fileno(), size, offset)

    def reopen(self) -> DirectoryBlob:
        # /proc/self/fd/N opens the same file, even if another was renamed over its path
        blob = DirectoryBlob(io.FileIO(f"/proc/self/fd/{self.fileno()}", "rb"))
        blob.raw.name = self.name  # type: ignore[misc]  # the study's path, for messages
        return blob


class DirectoryBackend:
    """Sealed ZIPs as ``{root}/{study_uid}.zip``."""

    name = "example-dir"

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, study_uid: str) -> Path:
        # a UID is digits and dots, safe as a file name: anything else is refused
        # (InvalidUid), never made a path
        return self.root / f"{check_uid(study_uid, 'Study Instance UID')}.zip"

    def open(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        for leftover in self.root.glob(f"{_TEMP}*"):  # puts a crash interrupted
            leftover.unlink()

    def close(self) -> None:
        pass

    def put(self, study_uid: str, fill: Filler) -> None:
        path = self._path(study_uid)  # checks the UID before it names any file
        temp = self.root / f"{_TEMP}{study_uid}-{os.getpid()}"
        try:
            with open(temp, "wb") as handle:
                fill(handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, path)
        except OSError as exc:
            temp.unlink(missing_ok=True)
            if exc.errno == errno.ENOSPC:
                raise StorageFull(f"no space left in {self.root}") from exc
            raise
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        self._sync_folder()

    def _sync_folder(self) -> None:
        folder = os.open(self.root, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)

    def get(self, study_uid: str) -> DirectoryBlob:
        return DirectoryBlob(io.FileIO(self._path(study_uid), "rb"))

    def read_range(self, study_uid: str, offset: int, size: int) -> bytes:
        with self.get(study_uid) as blob:
            return blob.pread(size, offset)

    def version(self, study_uid: str) -> Hashable | None:
        try:
            stat = self._path(study_uid).stat()
        except FileNotFoundError:
            return None
        return stat.st_ino, stat.st_mtime_ns, stat.st_size

    def size(self, study_uid: str) -> int | None:
        try:
            return self._path(study_uid).stat().st_size
        except FileNotFoundError:
            return None

    def delete(self, study_uid: str) -> bool:
        try:
            self._path(study_uid).unlink()
        except FileNotFoundError:
            return False
        self._sync_folder()
        return True

    def study_uids(self) -> Iterator[str]:
        for path in self.root.glob("*.zip"):
            if is_valid_uid(path.stem):  # not a file someone else left there
                yield path.stem


def directory_backend(settings: Mapping[str, Any], data_dir: Path) -> DirectoryBackend:
    """The entry point: ``root`` from ``[plugins.example-dir]``, relative to ``data_dir``."""
    unknown = set(settings) - {"root"}
    if unknown:
        raise ValueError(f"unknown setting(s) {', '.join(sorted(unknown))}")
    root = settings.get("root")
    if not isinstance(root, str) or not root:
        raise ValueError("'root' (the folder of the study ZIPs) is required")
    return DirectoryBackend(Path(data_dir) / root)
