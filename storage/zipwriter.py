"""A streaming ZIP writer that can copy already-compressed entries verbatim.

Python's :mod:`zipfile` reads ZIPs well, and we use it for every read, but it
can only write an entry by compressing it again. Sealing a study appends new
instances to a ZIP that may hold gigabytes of deflated frames; recompressing
them every time would make appends cost as much as the whole study. This
writer emits the ZIP structures itself (PKWARE APPNOTE 6.3: local headers,
central directory, ZIP64 records when sizes, offsets or entry counts need
them) so entries can be copied raw, with their stored CRC and sizes.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO
from zipfile import ZIP_DEFLATED, ZIP_STORED, ZipInfo

from pacsnode.storage.codec import crc32, deflate

_LOCAL_HEADER = struct.Struct("<IHHHHHIIIHH")
LOCAL_HEADER_SIZE = _LOCAL_HEADER.size
_CENTRAL_HEADER = struct.Struct("<IHHHHHHIIIHHHHHII")
_END_RECORD = struct.Struct("<IHHHHIIH")
_END_RECORD64 = struct.Struct("<IQHHIIQQQQ")
_END_LOCATOR64 = struct.Struct("<IIQI")
_LOCAL_SIGNATURE = 0x04034B50
_CENTRAL_SIGNATURE = 0x02014B50
_END_SIGNATURE = 0x06054B50
_END64_SIGNATURE = 0x06064B50
_LOCATOR64_SIGNATURE = 0x07064B50
_ZIP64_EXTRA_ID = 0x0001
_LIMIT32 = 0xFFFFFFFF
_LIMIT16 = 0xFFFF
_VERSION_DEFAULT = 20
_VERSION_ZIP64 = 45
_MADE_BY_UNIX = 3 << 8
_FILE_MODE = 0o100644 << 16
# Entries carry a fixed time (1980-01-01 00:00) so that the same study gives the
# same bytes on every node.
_DOS_TIME = 0
_DOS_DATE = (0 << 9) | (1 << 5) | 1
_COPY_CHUNK = 1 << 20


@dataclass(frozen=True)
class WrittenEntry:
    """What the central directory needs to know about one entry."""

    name: str
    method: int
    crc: int
    compressed_size: int
    file_size: int
    header_offset: int
    comment: bytes = b""


def data_offset(info: ZipInfo, local_header: bytes) -> int:
    """Offset of an entry's compressed bytes, from its local header's first
    ``LOCAL_HEADER_SIZE`` bytes (ValueError when they are no local header)."""
    fields = _LOCAL_HEADER.unpack(local_header)
    if fields[0] != _LOCAL_SIGNATURE:
        raise ValueError(f"bad local header for {info.filename}")
    name_length, extra_length = fields[9], fields[10]
    return info.header_offset + _LOCAL_HEADER.size + name_length + extra_length


def raw_data_offset(source: BinaryIO, info: ZipInfo) -> int:
    """Offset of an entry's compressed bytes, read from its local header."""
    source.seek(info.header_offset)
    return data_offset(info, source.read(LOCAL_HEADER_SIZE))


def iter_raw_bytes(source: BinaryIO, info: ZipInfo) -> Iterator[bytes]:
    """The entry's bytes as stored (compressed), in chunks.

    ``source`` must be a handle of the caller's own: seeking a ZipFile's shared
    handle would race with other threads reading through it.
    """
    offset = raw_data_offset(source, info)
    remaining = info.compress_size
    while remaining:
        source.seek(offset)
        chunk = source.read(min(remaining, _COPY_CHUNK))
        if not chunk:
            raise ValueError(f"{info.filename} is truncated")
        offset += len(chunk)
        remaining -= len(chunk)
        yield chunk


class ZipWriter:
    """Writes entries one at a time to ``handle``; :meth:`close` writes the directory."""

    def __init__(self, handle: BinaryIO) -> None:
        self._handle = handle
        self._offset = 0
        self._entries: list[WrittenEntry] = []
        self._names: set[str] = set()

    @property
    def names(self) -> set[str]:
        return self._names

    def add(
        self, name: str, payload: bytes, level: int | None, comment: bytes = b""
    ) -> WrittenEntry:
        """Add ``payload``; deflate it at ``level`` when that makes it smaller."""
        crc = crc32(payload)
        if level is not None and payload:
            compressed = deflate(payload, level)
            if len(compressed) < len(payload):
                return self._write(
                    name, ZIP_DEFLATED, crc, len(payload), [compressed], comment=comment
                )
        return self._write(name, ZIP_STORED, crc, len(payload), [payload], comment=comment)

    def copy(self, source: BinaryIO, info: ZipInfo, name: str | None = None) -> WrittenEntry:
        """Copy an entry of the ZIP open as ``source`` without decompressing it."""
        if info.compress_type not in (ZIP_STORED, ZIP_DEFLATED):
            raise ValueError(f"{info.filename}: unsupported compression {info.compress_type}")
        return self._write(
            name or info.filename,
            info.compress_type,
            info.CRC,
            info.file_size,
            iter_raw_bytes(source, info),
            compressed_size=info.compress_size,
            comment=info.comment,
        )

    def _write(
        self,
        name: str,
        method: int,
        crc: int,
        file_size: int,
        chunks: Iterable[bytes],
        compressed_size: int | None = None,
        comment: bytes = b"",
    ) -> WrittenEntry:
        if name in self._names:
            raise ValueError(f"duplicate ZIP entry {name}")
        if compressed_size is None:
            chunks = list(chunks)
            compressed_size = sum(len(chunk) for chunk in chunks)
        encoded_name = name.encode("ascii")
        needs_zip64 = compressed_size >= _LIMIT32 or file_size >= _LIMIT32
        extra = b""
        if needs_zip64:
            extra = struct.pack("<HHQQ", _ZIP64_EXTRA_ID, 16, file_size, compressed_size)
        header = _LOCAL_HEADER.pack(
            _LOCAL_SIGNATURE,
            _VERSION_ZIP64 if needs_zip64 else _VERSION_DEFAULT,
            0,
            method,
            _DOS_TIME,
            _DOS_DATE,
            crc,
            _LIMIT32 if needs_zip64 else compressed_size,
            _LIMIT32 if needs_zip64 else file_size,
            len(encoded_name),
            len(extra),
        )
        entry = WrittenEntry(
            name, method, crc, compressed_size, file_size, self._offset, comment[: _LIMIT16 - 1]
        )
        self._emit(header + encoded_name + extra)
        written = 0
        for chunk in chunks:
            self._emit(chunk)
            written += len(chunk)
        if written != compressed_size:
            raise ValueError(f"{name}: wrote {written} bytes, expected {compressed_size}")
        self._entries.append(entry)
        self._names.add(name)
        return entry

    def _emit(self, data: bytes) -> None:
        self._handle.write(data)
        self._offset += len(data)

    def close(self) -> None:
        """Write the central directory and the end records."""
        directory_offset = self._offset
        for entry in self._entries:
            self._emit(_central_header(entry))
        directory_size = self._offset - directory_offset
        count = len(self._entries)
        if count >= _LIMIT16 or directory_offset >= _LIMIT32 or directory_size >= _LIMIT32:
            end64_offset = self._offset
            self._emit(
                _END_RECORD64.pack(
                    _END64_SIGNATURE,
                    44,
                    _MADE_BY_UNIX | _VERSION_ZIP64,
                    _VERSION_ZIP64,
                    0,
                    0,
                    count,
                    count,
                    directory_size,
                    directory_offset,
                )
            )
            self._emit(_END_LOCATOR64.pack(_LOCATOR64_SIGNATURE, 0, end64_offset, 1))
        self._emit(
            _END_RECORD.pack(
                _END_SIGNATURE,
                0,
                0,
                min(count, _LIMIT16),
                min(count, _LIMIT16),
                min(directory_size, _LIMIT32),
                min(directory_offset, _LIMIT32),
                0,
            )
        )


def _central_header(entry: WrittenEntry) -> bytes:
    zip64_fields: list[int] = []
    file_size, compressed_size, offset = entry.file_size, entry.compressed_size, entry.header_offset
    if file_size >= _LIMIT32:
        zip64_fields.append(file_size)
        file_size = _LIMIT32
    if compressed_size >= _LIMIT32:
        zip64_fields.append(compressed_size)
        compressed_size = _LIMIT32
    if offset >= _LIMIT32:
        zip64_fields.append(offset)
        offset = _LIMIT32
    extra = b""
    if zip64_fields:
        extra = struct.pack(
            f"<HH{len(zip64_fields)}Q", _ZIP64_EXTRA_ID, 8 * len(zip64_fields), *zip64_fields
        )
    version = _VERSION_ZIP64 if zip64_fields else _VERSION_DEFAULT
    encoded_name = entry.name.encode("ascii")
    header = _CENTRAL_HEADER.pack(
        _CENTRAL_SIGNATURE,
        _MADE_BY_UNIX | version,
        version,
        0,
        entry.method,
        _DOS_TIME,
        _DOS_DATE,
        entry.crc,
        compressed_size,
        file_size,
        len(encoded_name),
        len(extra),
        len(entry.comment),
        0,
        0,
        _FILE_MODE,
        offset,
    )
    return header + encoded_name + extra + entry.comment
