"""Crash-safe file writes: temp file, fsync, rename, fsync of the directory.

After any of these functions returns, the written file and its directory
entry survive a power cut; if they raise, the old file (if any) is intact.
A full disk is reported as :class:`StorageFull`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from pacsnode.storage.errors import StorageFull
from pacsnode.storage.layout import TEMP_SUFFIX


def fsync_dir(path: Path) -> None:
    """Make the directory entries of ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# Held while directories are created and fsynced, so that a thread finding a
# directory already there knows its entry is durable too.
_MKDIR_LOCK = threading.Lock()


def make_dirs_durable(path: Path, stop_at: Path) -> None:
    """Create ``path`` (and parents up to ``stop_at``) with every new entry fsynced."""
    if path.is_dir():
        with _MKDIR_LOCK:  # wait for a creator that may still be fsyncing
            return
    with _MKDIR_LOCK:
        missing: list[Path] = []
        current = path
        while not current.exists() and current != stop_at and current.parent != current:
            missing.append(current)
            current = current.parent
        for directory in reversed(missing):
            with disk_errors(directory.name):
                directory.mkdir(exist_ok=True)
                fsync_dir(directory.parent)


def temp_path_for(target: Path) -> Path:
    """A temp name beside ``target`` that recovery recognises by its suffix."""
    return target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}{TEMP_SUFFIX}")


@contextlib.contextmanager
def disk_errors(what: str) -> Iterator[None]:
    """A full disk (ENOSPC, EDQUOT) met while writing ``what`` as :class:`StorageFull`
    (507, DIMSE 0xA700); other errors as they are. Also for scratch files on the data
    disk (upload spools), whose writes would otherwise surface as a bare OSError."""
    try:
        yield
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StorageFull(f"disk full while writing {what}") from exc
        raise


@contextlib.contextmanager
def atomic_file(target: Path, *, durable: bool = True) -> Iterator[BinaryIO]:
    """Open a temp file beside ``target``; on clean exit make it durable as ``target``
    (with ``durable=False``, only whole or absent for readers: after a crash it may be
    neither, so only for what a durable file elsewhere can give again).

    On error the temp file is removed and ``target`` is untouched.
    """
    temp = temp_path_for(target)
    with disk_errors(target.name):
        try:
            with open(temp, "wb") as handle:
                yield handle
                handle.flush()
                if durable:
                    os.fsync(handle.fileno())
            os.replace(temp, target)
            if durable:
                fsync_dir(target.parent)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
            raise


def write_atomic(target: Path, data: bytes, *, durable: bool = True) -> None:
    """Write ``data`` to ``target`` crash-safely (see :func:`atomic_file`)."""
    with atomic_file(target, durable=durable) as handle:
        handle.write(data)


def write_atomic_with(target: Path, writer: Callable[[BinaryIO], None]) -> None:
    """Let ``writer`` fill a temp file that then becomes ``target`` crash-safely."""
    with atomic_file(target) as handle:
        writer(handle)


def remove_durable(path: Path) -> bool:
    """Remove a file and fsync its directory; return whether it existed."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    fsync_dir(path.parent)
    return True


def remove_tree_durable(path: Path) -> bool:
    """Remove a directory tree so that a crash never leaves half of it visible.

    The tree is first renamed to a temp name (atomic), which recovery deletes
    if the removal itself is interrupted.
    """
    if not path.exists():
        return False
    doomed = temp_path_for(path)
    os.replace(path, doomed)
    fsync_dir(path.parent)
    shutil.rmtree(doomed, ignore_errors=True)
    return True


def is_temp(path: Path) -> bool:
    return path.name.startswith(".") and path.name.endswith(TEMP_SUFFIX)


def remove_leftover(path: Path) -> None:
    """Delete a temp file or tree left behind by a crash."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


__all__ = [
    "atomic_file",
    "disk_errors",
    "fsync_dir",
    "is_temp",
    "make_dirs_durable",
    "remove_durable",
    "remove_leftover",
    "remove_tree_durable",
    "write_atomic",
    "write_atomic_with",
]
