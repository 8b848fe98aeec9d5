"""Reading a deflated ZIP entry with the fastest inflater there is.

Every ``/file``, C-GET and WADO-RS frame of a native image inflates its frames: that is the
price of storing them deflated (half the disk). zlib inflates a CT slice at ~120 MB/s here;
ISA-L's inflater (``isal``, made for this: a zlib-compatible binding of Intel's
Intelligent Storage Acceleration Library) at ~310 MB/s, which is most of the cost of
serving such a file. Inflating gives the same bytes whatever the inflater, so what is
stored (and its digests) does not depend on it; without ``isal`` zlib does the work.

The entry's bytes are read with ``os.pread`` from the archive's file descriptor: a
``ZipFile`` may be shared by threads (the sealed-ZIP cache), and pread moves no file
position, so no lock is needed. The CRC-32 and size the ZIP directory gives are checked,
as ``ZipFile.read`` does.
"""

from __future__ import annotations

import os
import struct
import zipfile
import zlib
from collections.abc import Callable
from types import ModuleType

#: a local file header: signature, versions, flags, method, time, date, CRC, sizes, and the
#: lengths of the name and the extra field that come between it and the entry's bytes
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")
_NAME_LENGTH, _EXTRA_LENGTH = 10, 11
_LOCAL_SIGNATURE = b"PK\003\004"
_inflater: ModuleType | None = None


def _fastest_zlib() -> ModuleType:
    """``isal_zlib`` when installed, else ``zlib`` (imported on first use: it costs RSS)."""
    global _inflater
    if _inflater is None:
        try:
            from isal import isal_zlib

            _inflater = isal_zlib
        except ImportError:
            _inflater = zlib
    return _inflater


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
    header = _LOCAL_HEADER.unpack(_read_at(descriptor, _LOCAL_HEADER.size, info.header_offset))
    if header[0] != _LOCAL_SIGNATURE:
        raise zipfile.BadZipFile(f"bad local header for {info.filename}")
    start = info.header_offset + _LOCAL_HEADER.size + header[_NAME_LENGTH] + header[_EXTRA_LENGTH]
    raw = _read_at(descriptor, info.compress_size, start)
    inflater = _fastest_zlib()
    try:
        data = _inflate(inflater.decompressobj, raw, info.file_size)
    except (zlib.error, inflater.error) as exc:
        raise zipfile.BadZipFile(f"{info.filename}: {exc}") from None
    if len(data) != info.file_size or inflater.crc32(data) != info.CRC:
        raise zipfile.BadZipFile(f"Bad CRC-32 for file {info.filename!r}")
    return data


def _inflate(decompressobj: Callable[[int], object], raw: bytes, size: int) -> bytes:
    """Inflate a raw deflate stream, never past ``size`` bytes (what the directory says:
    a damaged stream cannot grow without bound)."""
    inflating = decompressobj(-15)
    data: bytes = inflating.decompress(raw, size + 1)  # type: ignore[attr-defined]
    return data
