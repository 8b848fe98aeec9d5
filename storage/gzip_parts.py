"""A deflated part file sent as a gzip body, without inflating it.

A frame of a native transfer syntax is stored as a raw deflate stream in the study ZIP. A
gzip member is that same stream between a 10-byte header and a trailer of the CRC-32 and
size of the inflated data, which the ZIP's directory already holds. So a server can answer
``Content-Encoding: gzip`` with the stored bytes as they are: no inflating, no CRC pass,
and fewer bytes on the wire. Only the part's head is inflated, to learn its boundary.
"""

from __future__ import annotations

import struct
import zipfile
import zlib
from dataclasses import dataclass

from pacsnode.storage.inflate import positional_reader, read_raw
from pacsnode.storage.multipart import part_content_type

# ID1 ID2, CM=deflate, no flags, no mtime, XFL=0, OS=unknown (RFC 1952)
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
_HEAD_BYTES = 512  # a part's boundary line and Content-Type header fit well within this


@dataclass(frozen=True)
class DeflatedPart:
    """A stored part file as a gzip body, with what its Content-Type header needs."""

    boundary: str
    media_type: str
    transfer_syntax: str
    gzip_body: bytes

    @property
    def content_type(self) -> str:
        value = f'multipart/related; type="{self.media_type}"; boundary={self.boundary}'
        return f"{value}; transfer-syntax={self.transfer_syntax}" if self.transfer_syntax else value


def gzip_member(raw_deflate: bytes, crc: int, size: int) -> bytes:
    return b"".join((_GZIP_HEADER, raw_deflate, struct.pack("<II", crc, size & 0xFFFFFFFF)))


def parse_head(head: bytes) -> tuple[str, str, str] | None:
    """(boundary, media type, transfer syntax) from the start of a part file."""
    if not head.startswith(b"--") or b"\r\n\r\n" not in head:
        return None  # not a part, or its headers do not end within the head read
    lines = head.split(b"\r\n\r\n", 1)[0].decode("ascii", "replace").split("\r\n")
    media_type, transfer_syntax = part_content_type(lines[1:])
    return lines[0][2:], media_type, transfer_syntax


def read_deflated_part(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> DeflatedPart | None:
    """The entry as a gzip body; ``None`` when it is not deflated, or the archive's file
    no longer holds it where the directory said (rewritten meanwhile): read it as usual."""
    read = positional_reader(archive)
    if info.compress_type != zipfile.ZIP_DEFLATED or read is None:
        return None
    try:
        raw = read_raw(read, info)
    except (OSError, ValueError, zipfile.BadZipFile):
        return None  # rewritten meanwhile, or damaged: the usual read says which
    if len(raw) != info.compress_size:
        return None
    try:
        head = zlib.decompressobj(-15).decompress(raw[: _HEAD_BYTES * 4], _HEAD_BYTES)
    except zlib.error:
        return None
    parsed = parse_head(head)
    if parsed is None:
        return None
    return DeflatedPart(*parsed, gzip_member(raw, info.CRC, info.file_size))
