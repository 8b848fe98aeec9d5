"""Reading a deflated ZIP entry with the fastest inflater there is (:mod:`storage.codec`).

Every ``/file``, C-GET and WADO-RS frame of a native image inflates its frames: that is the
price of storing them deflated (half the disk), and with zlib most of the cost of serving
such a file.

The entry's bytes are read with ``os.pread`` from the archive's file descriptor, or with
the ``pread`` of a storage backend's blob: a ``ZipFile`` may be shared by threads (the
sealed-ZIP cache), and a positional read moves no file position, so no lock is needed.
The CRC-32 and size the ZIP directory gives are checked, as ``ZipFile.read`` does.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable

from pacsnode.storage.codec import crc32, inflate
from pacsnode.storage.zipwriter import LOCAL_HEADER_SIZE, data_offset

PositionalRead = Callable[[int, int], bytes]


def positional_reader(archive: zipfile.ZipFile) -> PositionalRead | None:
    """``read(size, offset)`` on the archive's file without moving its position: the
    blob's own ``pread`` (a backend's sealed ZIP), else ``os.pread`` on its descriptor;
    ``None`` for an archive in memory."""
    handle = archive.fp
    if handle is None:
        return None
    pread = getattr(handle, "pread", None)
    if pread is not None:
        return pread  # type: ignore[no-any-return]
    try:
        descriptor = handle.fileno()
    except (AttributeError, OSError, ValueError):  # an archive in memory
        return None
    return lambda size, offset: os.pread(descriptor, size, offset)


def read_exactly(read: PositionalRead, size: int, offset: int) -> bytes:
    data = read(size, offset)
    if len(data) != size:
        raise zipfile.BadZipFile("the archive ends inside an entry")
    return data


def read_raw(read: PositionalRead, info: zipfile.ZipInfo) -> bytes | memoryview:
    """The entry's stored (compressed) bytes, after checking that its local header is
    there and names it, as zipfile does (BadZipFile otherwise)."""
    name = info.filename.encode("utf-8" if info.flag_bits & 0x800 else "cp437")
    # One read for the local header and the data, guessing the local extra field is the
    # central directory's (it is in the ZIPs pacsnode writes): a blob in an object store
    # pays a request a read. A second read only when the guess was wrong.
    before_data = LOCAL_HEADER_SIZE + len(name) + len(info.extra)
    chunk = read_exactly(read, before_data + info.compress_size, info.header_offset)
    if chunk[LOCAL_HEADER_SIZE : LOCAL_HEADER_SIZE + len(name)] != name:
        raise zipfile.BadZipFile(f"{info.filename}: the local header names another file")
    try:
        start = data_offset(info, chunk[:LOCAL_HEADER_SIZE])
    except ValueError as exc:
        raise zipfile.BadZipFile(str(exc)) from None
    if start == info.header_offset + before_data:
        return memoryview(chunk)[before_data:]
    return read_exactly(read, info.compress_size, start)


def read_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """The entry's bytes, as ``archive.read(info)`` gives them (same checks), faster when
    the entry is deflated and the archive is a file."""
    read = positional_reader(archive)
    if info.compress_type != zipfile.ZIP_DEFLATED or read is None:
        return archive.read(info)
    raw = read_raw(read, info)
    try:
        data = inflate(raw, info.file_size)
    except ValueError as exc:
        raise zipfile.BadZipFile(f"{info.filename}: {exc}") from None
    if len(data) != info.file_size or crc32(data) != info.CRC:
        raise zipfile.BadZipFile(f"Bad CRC-32 for file {info.filename!r}")
    return data
