"""A P10 file in the Deflated Explicit VR Little Endian syntax is a small bomb in waiting:
pydicom inflates its whole data set in one call, so 1 MB can become 1 GiB in memory.
Before it is parsed, its inflated size is counted chunk by chunk (nothing kept) against
the same limits as a ZIP member (:class:`storage.limits.ArchiveLimits`).

Any other file costs a look at its file meta (a few hundred bytes).
"""

from __future__ import annotations

import contextlib
import io
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from pacsnode.storage.errors import InstanceTooLarge
from pacsnode.storage.limits import CHUNK, RATIO_FLOOR, ArchiveLimits

DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1.99"
_PREFIX = 132  # the preamble and "DICM"
_HEAD = 2048  # a file meta group is a few hundred bytes...
_META_MAX = 64 * 1024  # ...and never this long
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT"}
_TRANSFER_SYNTAX = 0x0010


def deflated_body_offset(head: bytes) -> int | None:
    """Where the data set starts when the file meta at the start of ``head`` names the
    deflated syntax; ``None`` for any other file (or no file meta)."""
    offset, syntax, _ = _scan_meta(head)
    if syntax.rstrip(b"\0 ").decode("ascii", "replace") != DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
        return None
    return offset


def _scan_meta(head: bytes) -> tuple[int, bytes, bool]:
    """(end of the file meta, its transfer syntax, whether ``head`` held all of it)."""
    if head[128:_PREFIX] != b"DICM":
        return 0, b"", True
    offset, syntax = _PREFIX, b""
    while offset + 12 <= len(head):
        group, element = struct.unpack_from("<HH", head, offset)
        if group != 2:
            return offset, syntax, True
        if head[offset + 4 : offset + 6] in _LONG_VRS:
            length, value_at = struct.unpack_from("<I", head, offset + 8)[0], offset + 12
        else:
            length, value_at = struct.unpack_from("<H", head, offset + 6)[0], offset + 8
        if element == _TRANSFER_SYNTAX:
            syntax = head[value_at : value_at + length]
        offset = value_at + length
    return offset, syntax, False


def check_inflated_size(source: bytes | Path | BinaryIO, limits: ArchiveLimits) -> None:
    """InstanceTooLarge when ``source`` is a deflated P10 file that inflates past the
    instance limit, or past the ratio above its floor; its position is kept."""
    with _opened(source) as handle:
        start = handle.tell()
        try:
            head = handle.read(_HEAD)
            if not _scan_meta(head)[2]:  # a long file meta: read on, up to a bound
                head += handle.read(_META_MAX - len(head))
            body = deflated_body_offset(head)
            if body is None:
                return
            end = handle.seek(0, io.SEEK_END)
            handle.seek(start + body)
            compressed = end - start - body
            limit = min(limits.max_instance_bytes, max(RATIO_FLOOR, limits.max_ratio * compressed))
            if _inflates_past(handle, limit):
                raise InstanceTooLarge(
                    f"the deflated data set inflates past {limit} bytes (from {compressed})"
                )
        finally:
            handle.seek(start)


def _inflates_past(handle: BinaryIO, limit: int) -> bool:
    """Whether the raw deflate stream from ``handle`` inflates past ``limit`` bytes; a
    damaged stream is left to the parser to refuse."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    size = 0
    try:
        while not inflater.eof and (chunk := handle.read(CHUNK)):
            pending = chunk
            while pending:
                size += len(inflater.decompress(pending, CHUNK))
                if size > limit:
                    return True
                pending = inflater.unconsumed_tail
            while not inflater.eof and (out := inflater.decompress(b"", CHUNK)):
                size += len(out)  # what zlib still holds from input already given
                if size > limit:
                    return True
    except zlib.error:
        return False
    return False


@contextlib.contextmanager
def _opened(source: bytes | Path | BinaryIO) -> Iterator[BinaryIO]:
    if isinstance(source, bytes):
        yield io.BytesIO(source)
    elif isinstance(source, Path):
        with open(source, "rb") as handle:
            yield handle
    else:
        yield source
