"""Multipart MIME part files, the form every frame and bulk element is stored in.

A part file is one ``multipart/related`` body with a single part, exactly what
WADO-RS answers for one frame, so a server can send it untouched once it has
put the part's boundary in its ``Content-Type`` header.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from pacsnode.storage.errors import StorageError

OCTET_STREAM = "application/octet-stream"

# PS3.18 Table 8.7.3-5: media types of frames per transfer syntax.
_MEDIA_TYPES = {
    "1.2.840.10008.1.2.4.50": "image/jpeg",
    "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg",
    "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls",
    "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2",
    "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.4.92": "image/jpx",
    "1.2.840.10008.1.2.4.93": "image/jpx",
    "1.2.840.10008.1.2.4.201": "image/jphc",
    "1.2.840.10008.1.2.4.202": "image/jphc",
    "1.2.840.10008.1.2.4.203": "image/jphc",
    "1.2.840.10008.1.2.5": "image/dicom-rle",
    "1.2.840.10008.1.2.4.100": "video/mpeg",
    "1.2.840.10008.1.2.4.100.1": "video/mpeg",
    "1.2.840.10008.1.2.4.101": "video/mpeg",
    "1.2.840.10008.1.2.4.101.1": "video/mpeg",
    "1.2.840.10008.1.2.4.102": "video/mp4",
    "1.2.840.10008.1.2.4.102.1": "video/mp4",
    "1.2.840.10008.1.2.4.103": "video/mp4",
    "1.2.840.10008.1.2.4.103.1": "video/mp4",
    "1.2.840.10008.1.2.4.104": "video/mp4",
    "1.2.840.10008.1.2.4.104.1": "video/mp4",
    "1.2.840.10008.1.2.4.105": "video/mp4",
    "1.2.840.10008.1.2.4.105.1": "video/mp4",
    "1.2.840.10008.1.2.4.106": "video/mp4",
    "1.2.840.10008.1.2.4.106.1": "video/mp4",
    "1.2.840.10008.1.2.4.107": "video/H265",
    "1.2.840.10008.1.2.4.108": "video/H265",
}


def frame_media_type(transfer_syntax: str, encapsulated: bool) -> str:
    """The media type of a frame stored in ``transfer_syntax``."""
    if not encapsulated:
        return OCTET_STREAM
    return _MEDIA_TYPES.get(transfer_syntax, OCTET_STREAM)


@dataclass(frozen=True)
class Part:
    """One stored part: the file as kept on disk and where its payload lies in it."""

    wrapped: bytes
    boundary: str
    media_type: str
    transfer_syntax: str
    payload_start: int
    payload_end: int

    @property
    def payload(self) -> bytes:
        return self.wrapped[self.payload_start : self.payload_end]

    @property
    def content_type(self) -> str:
        """The header a server sends with :attr:`wrapped` as its body."""
        return f'multipart/related; type="{self.media_type}"; boundary={self.boundary}'


def _boundary_for(payload: bytes) -> str:
    # Derived from the content, so the same frame gives the same bytes (and CRC)
    # on every node; lengthened in the astronomically rare case it occurs in the data.
    seed = f"{zlib.crc32(payload):08x}{len(payload):x}"
    boundary = f"pacsnode-{seed}"
    salt = 0
    while f"--{boundary}".encode("ascii") in payload:
        salt += 1
        boundary = f"pacsnode-{seed}-{salt}"
    return boundary


def wrap(payload: bytes, media_type: str, transfer_syntax: str) -> bytes:
    """Wrap ``payload`` as a single-part multipart body with its own boundary."""
    boundary = _boundary_for(payload)
    head = (
        f"--{boundary}\r\nContent-Type: {media_type}; transfer-syntax={transfer_syntax}\r\n\r\n"
    ).encode("ascii")
    tail = f"\r\n--{boundary}--\r\n".encode("ascii")
    return b"".join((head, payload, tail))


def part_content_type(header_lines: list[str]) -> tuple[str, str]:
    """(media type, transfer syntax) from a part's header lines (octet-stream when none)."""
    media_type, transfer_syntax = OCTET_STREAM, ""
    for line in header_lines:
        name, _, value = line.partition(":")
        if name.strip().lower() != "content-type":
            continue
        fields = [field.strip() for field in value.split(";")]
        media_type = fields[0]
        for field in fields[1:]:
            key, _, parameter = field.partition("=")
            if key.strip().lower() == "transfer-syntax":
                transfer_syntax = parameter.strip().strip('"')
    return media_type, transfer_syntax


def unwrap(wrapped: bytes) -> Part:
    """Parse a part file written by :func:`wrap`."""
    try:
        first_end = wrapped.index(b"\r\n")
        header_end = wrapped.index(b"\r\n\r\n", first_end)
    except ValueError:
        raise StorageError("stored part has no multipart header") from None
    boundary_line = wrapped[:first_end].decode("ascii", "replace")
    if not boundary_line.startswith("--"):
        raise StorageError("stored part does not start with a boundary")
    boundary = boundary_line[2:]
    header_lines = wrapped[first_end + 2 : header_end].decode("ascii", "replace").split("\r\n")
    media_type, transfer_syntax = part_content_type(header_lines)
    tail = f"\r\n--{boundary}--\r\n".encode("ascii")
    if not wrapped.endswith(tail):
        raise StorageError("stored part does not end with its closing boundary")
    return Part(
        wrapped, boundary, media_type, transfer_syntax, header_end + 4, len(wrapped) - len(tail)
    )
