"""Reading a deflated ZIP entry with the fastest inflater there is (:mod:`storage.codec`).

Every ``/file``, C-GET and WADO-RS frame of a native image inflates its frames: that is the
price of storing them deflated (half the disk), and with zlib most of the cost of serving
such a file.

The entry's bytes are read with ``os.pread`` from the archive's file descriptor: a
``ZipFile`` may be shared by threads (the sealed-ZIP cache), and pread moves no file
position, so no lock is needed. The CRC-32 and size the ZIP directory gives are checked,
as ``ZipFile.read`` does.
"""

from __future__ import annotations

import os
import zipfile

from pacsnode.storage.codec import crc32, inflate
from pacsnode.storage.zipwriter import LOCAL_HEADER_SIZE, data_offset


def _read_at(descriptor: int, size: int, offset: int) -> bytes:
    data = os.pread(descriptor, size, offset)
    if len(data) != size:
        raise zipfile.BadZipFile("the archive ends inside an entry")
    return data


def _descriptor(archive: zipfile.ZipFile) -> int | None:
    try:
        return archive.fp.fileno() if archive.fp is not None else None
    except (AttributeError, OSError, ValueError):  # an archive in memory
        return None


def read_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """The entry's bytes, as ``archive.read(info)`` gives them (same checks), faster when
    the entry is deflated and the archive is a file."""
    descriptor = _descriptor(archive)
    if info.compress_type != zipfile.ZIP_DEFLATED or descriptor is None:
        return archive.read(info)
    try:
        start = data_offset(info, _read_at(descriptor, LOCAL_HEADER_SIZE, info.header_offset))
    except ValueError as exc:
        raise zipfile.BadZipFile(str(exc)) from None
    raw = _read_at(descriptor, info.compress_size, start)
    try:
        data = inflate(raw, info.file_size)
    except ValueError as exc:
        raise zipfile.BadZipFile(f"{info.filename}: {exc}") from None
    if len(data) != info.file_size or crc32(data) != info.CRC:
        raise zipfile.BadZipFile(f"Bad CRC-32 for file {info.filename!r}")
    return data
