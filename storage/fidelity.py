"""The P10 layout of an instance: what it takes to give back the file exactly as it came.

The archive keeps values (metadata JSON), frames and bulk data; a P10 file
regenerated from them has the same elements and values but not always the same
bytes: the file meta is pacsnode's, DS/IS text is reformatted from JSON numbers,
padding and sequence lengths follow pydicom's writer, fragments are re-cut.
Clients compare files by MD5 and size (Orthanc's own suite does), so each
instance may carry one more entry, ``.../instances/{I}/p10-layout``: the
original file as a list of segments, each either literal bytes kept in the
layout or a slice of a frame or bulk payload already in the ZIP. Only the bytes
that are not frames or bulk data (file meta, element headers, small values) are
stored twice, a few KiB per instance, deflated.

Every reference is checked when the layout is built (it names bytes equal to the
original's) and again when it is read (it lies inside its payload), so a layout
can make a file bigger on disk but never a wrong one. An instance without a
layout (from an older node, or when matching found too little) is regenerated.

Payload: ``PNL1``, a 4-byte little-endian length, that many bytes of JSON
``{"size": n, "pixel_data_offset": n | null, "segments": [...]}``, then the
literal bytes one after the other. A segment is ``["L", length]``,
``["F", frame_number, offset, length]`` or ``["B", bulk_key, offset, length]``.
"""

from __future__ import annotations

import json
import logging
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from pacsnode.storage.errors import StorageError

log = logging.getLogger(__name__)
_MAGIC = b"PNL1"
_HEADER_LENGTH = struct.Struct("<I")
# A probe this long that matches is almost surely the payload, not a look-alike.
_PROBE = 256
# Where a payload continues after a fragment's end: past one item header (8 bytes).
_CONTINUATION_WINDOW = 64
# Payload bytes that matching could not place stay literal, i.e. stored twice;
# past this much the layout is not worth keeping and the file is regenerated instead.
_MAX_UNPLACED = 64 * 1024
_COMPARE_CHUNK = 1 << 16

Buffer = bytes | bytearray | memoryview
FrameReader = Callable[[], list[bytes]]
BulkReader = Callable[[str], bytes]


@dataclass(frozen=True)
class Layout:
    """A file as segments: literal bytes (kept here, in order) or slices of payloads."""

    size: int
    pixel_data_offset: int | None
    segments: list[list[Any]]
    literals: bytes

    def encode(self) -> bytes:
        facts = {"size": self.size, "pixel_data_offset": self.pixel_data_offset}
        header = json.dumps({**facts, "segments": self.segments}, separators=(",", ":")).encode()
        return b"".join((_MAGIC, _HEADER_LENGTH.pack(len(header)), header, self.literals))


# --- building ---------------------------------------------------------------------


def build_layout(
    original: Any,
    frames: list[bytes],
    bulk: dict[str, bytes],
    pixel_data_offset: int | None,
) -> Layout | None:
    """The layout of ``original`` (bytes or mmap) against its payloads; ``None`` when
    too much of the payloads could not be found in it (see ``_MAX_UNPLACED``), or
    when it is not a Part 10 file: a bare data set is given back as one, regenerated
    with a preamble and file meta, which is what readers of ``/file`` expect."""
    if original[128:132] != b"DICM":
        return None
    builder = _Builder(original)
    for ref, payload in _pieces_in_file_order(frames, bulk):
        builder.place(ref, payload)
    layout = builder.finish(pixel_data_offset)
    total = sum(len(p) for p in frames) + sum(len(p) for p in bulk.values())
    if total - builder.placed > _MAX_UNPLACED:
        return None
    return layout


def _bulk_order(key: str) -> tuple[int, ...]:
    # "SEQ.ITEM.TAG" paths compare as numbers in the order a file holds them
    return tuple(int(part, 16) if len(part) == 8 else int(part) for part in key.split("."))


def _pieces_in_file_order(
    frames: list[bytes], bulk: dict[str, bytes]
) -> Iterator[tuple[list[Any], bytes]]:
    pixel_data = (0x7FE00010,)
    keys = sorted(bulk, key=_bulk_order)
    for key in (k for k in keys if _bulk_order(k) < pixel_data):
        yield ["B", key], bulk[key]
    for number, frame in enumerate(frames, start=1):
        yield ["F", number], frame
    for key in (k for k in keys if _bulk_order(k) >= pixel_data):
        yield ["B", key], bulk[key]


class _Builder:
    def __init__(self, original: Any) -> None:
        self.original = original
        self.position = 0  # everything before is described by segments
        self.segments: list[list[Any]] = []
        self.literals: list[bytes] = []
        self.placed = 0

    def place(self, ref: list[Any], payload: bytes) -> None:
        """Describe as much of ``payload`` as follows ``position`` in order by reference."""
        offset, window = 0, None
        while offset < len(payload):
            probe = payload[offset : offset + _PROBE]
            end = len(self.original)
            if window is not None:
                end = min(end, self.position + window + len(probe))
            at = self.original.find(probe, self.position, end)
            if at < 0:
                return
            matched = _common_length(self.original, at, payload, offset)
            self._literal(at)
            self.segments.append([*ref, offset, matched])
            self.position = at + matched
            self.placed += matched
            offset += matched
            window = _CONTINUATION_WINDOW

    def _literal(self, end: int) -> None:
        if end > self.position:
            self.literals.append(bytes(self.original[self.position : end]))
            self.segments.append(["L", end - self.position])
            self.position = end

    def finish(self, pixel_data_offset: int | None) -> Layout:
        self._literal(len(self.original))
        return Layout(len(self.original), pixel_data_offset, self.segments, b"".join(self.literals))


def _common_length(original: Any, start: int, payload: bytes, offset: int) -> int:
    """How many bytes of ``payload[offset:]`` equal ``original[start:]``."""
    limit = min(len(payload) - offset, len(original) - start)
    matched = 0
    while matched < limit:
        size = min(_COMPARE_CHUNK, limit - matched)
        ours = original[start + matched : start + matched + size]
        theirs = payload[offset + matched : offset + matched + size]
        if ours == theirs:
            matched += size
            continue
        return matched + _first_difference(ours, theirs)
    return matched


def _first_difference(ours: bytes, theirs: bytes) -> int:
    # bisection with slice compares (memcmp), not a Python loop over up to 64 KiB
    low, high = 0, len(ours)  # equal before low; a difference in [low, high)
    while high - low > 1:
        middle = (low + high) // 2
        if ours[low:middle] == theirs[low:middle]:
            low = middle
        else:
            high = middle
    return low


# --- reading ----------------------------------------------------------------------


def decode_layout(data: bytes) -> Layout:
    """Parse a layout payload; anything malformed is a :class:`StorageError`."""
    if data[:4] != _MAGIC or len(data) < 8:
        raise StorageError("the P10 layout has no PNL1 header")
    (length,) = _HEADER_LENGTH.unpack_from(data, 4)
    try:
        header = json.loads(data[8 : 8 + length])
        layout = Layout(
            int(header["size"]),
            None if header["pixel_data_offset"] is None else int(header["pixel_data_offset"]),
            list(header["segments"]),
            data[8 + length :],
        )
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("a P10 layout is malformed: %s: %s", type(exc).__name__, exc)
        raise StorageError("the P10 layout is malformed") from exc
    _check_segments(layout)
    return layout


def _check_segments(layout: Layout) -> None:
    literal_total, total = 0, 0
    for segment in layout.segments:
        if not isinstance(segment, list) or not segment or segment[0] not in ("L", "F", "B"):
            raise StorageError("the P10 layout has a malformed segment")
        shape = (int,) if segment[0] == "L" else (int if segment[0] == "F" else str, int, int)
        if len(segment) != 1 + len(shape) or not all(
            isinstance(value, kind) and (kind is str or value >= 0)
            for value, kind in zip(segment[1:], shape, strict=True)
        ):
            raise StorageError("the P10 layout has a malformed segment")
        total += segment[-1]
        literal_total += segment[1] if segment[0] == "L" else 0
    if literal_total != len(layout.literals) or total != layout.size:
        raise StorageError("the P10 layout's sizes do not add up")


def assemble(
    layout: Layout, frames: FrameReader, bulk: BulkReader, end: int | None = None
) -> bytes:
    """The original file from its layout and the instance's payloads (its first ``end``
    bytes only, when given: payloads past them are not read)."""
    loaded_frames: list[bytes] | None = None
    loaded_bulk: dict[str, bytes] = {}
    pieces: list[Buffer] = []
    literal, position = 0, 0
    view = memoryview(layout.literals)
    for segment in layout.segments:
        if end is not None and position >= end:
            break
        position += segment[-1]
        if segment[0] == "L":
            pieces.append(view[literal : literal + segment[1]])
            literal += segment[1]
            continue
        if segment[0] == "F":
            if loaded_frames is None:
                loaded_frames = frames()
            number = segment[1]
            if not 1 <= number <= len(loaded_frames):
                raise StorageError(f"the P10 layout names frame {number}, which is not stored")
            payload = loaded_frames[number - 1]
        else:
            if segment[1] not in loaded_bulk:
                loaded_bulk[segment[1]] = bulk(segment[1])
            payload = loaded_bulk[segment[1]]
        offset, length = segment[2], segment[3]
        if offset + length > len(payload):
            raise StorageError("the P10 layout names bytes past the end of a payload")
        pieces.append(memoryview(payload)[offset : offset + length])
    whole = b"".join(pieces)
    return whole if end is None else whole[:end]
