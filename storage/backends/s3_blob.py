"""A sealed study ZIP in an object store, read by HTTP ranges.

A frame or an instance's metadata is a few ranged GETs (the entry's local header, then
its bytes), not a download of the study: ``zipfile`` reads the central directory through
:class:`S3Blob`'s ``seek``/``read``, and single entries go through ``pread``.

Small reads (the end record, the central directory of most studies, local headers, small
entries) are served from fixed-size blocks kept in a :class:`BlockCache` shared by every
blob of the backend; large reads (a frame) are one GET of exactly their bytes. Every GET
names the version the blob pinned (``If-Match`` on its ETag), so a blob never mixes two
versions. A reader that streams the ZIP (to a peer) gets growing read-ahead.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from pacsnode.storage.backends.s3_client import ObjectClient

#: the unit of the block cache: the end of a typical study ZIP (end record and central
#: directory) fits in one or two, and so do a local header and the entry after it
BLOCK = 64 << 10
#: read-ahead of a blob read sequentially (a ZIP streamed to a peer) grows up to this
MAX_READ_AHEAD = 8 << 20


class ObjectVersion:
    """One stored version of a study's ZIP and the blobs reading it: a replaced version
    is removed from the bucket once the last of them closes."""

    __slots__ = ("etag", "generation", "readers", "retired", "size")

    def __init__(self, generation: int, etag: str, size: int) -> None:
        self.generation = generation
        self.etag = etag
        self.size = size
        self.readers = 0
        #: replaced (or deleted) while blobs still read it
        self.retired = False


class BlockCache:
    """The most recently used blocks of every version read, at most ``capacity`` bytes.
    Blocks are keyed by object key (unique per version: it holds the generation)."""

    def __init__(self, capacity: int) -> None:
        self._capacity = max(capacity, BLOCK)
        self._size = 0
        self._blocks: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._guard = threading.Lock()

    def get(self, key: str, index: int) -> bytes | None:
        with self._guard:
            block = self._blocks.get((key, index))
            if block is not None:
                self._blocks.move_to_end((key, index))
            return block

    def put(self, key: str, index: int, block: bytes) -> None:
        with self._guard:
            old = self._blocks.pop((key, index), None)
            self._size += len(block) - (len(old) if old is not None else 0)
            self._blocks[(key, index)] = block
            while self._size > self._capacity:
                _, evicted = self._blocks.popitem(last=False)
                self._size -= len(evicted)

    def forget(self, key: str) -> None:
        with self._guard:
            for name in [name for name in self._blocks if name[0] == key]:
                self._size -= len(self._blocks.pop(name))


class RangeReader:
    """Positional reads of one object version (shared by the blobs reading it)."""

    def __init__(
        self, client: ObjectClient, blocks: BlockCache, key: str, etag: str, size: int
    ) -> None:
        self.client = client
        self.blocks = blocks
        self.key = key
        self.etag = etag
        self.size = size

    def pread(self, size: int, offset: int) -> bytes:
        end = min(self.size, offset + max(size, 0))
        if offset < 0:
            raise ValueError("negative offset")
        if offset >= end:
            return b""
        if end - offset >= BLOCK:
            return self.fetch(offset, end)
        return b"".join(self._block_slices(offset, end))

    def fetch(self, start: int, end: int) -> bytes:
        return self.client.get_range(self.key, self.etag, start, end)

    def _block_slices(self, start: int, end: int) -> list[bytes]:
        slices = []
        for index in range(start // BLOCK, (end - 1) // BLOCK + 1):
            block = self._block(index)
            base = index * BLOCK
            slices.append(block[max(start - base, 0) : end - base])
        return slices

    def _block(self, index: int) -> bytes:
        block = self.blocks.get(self.key, index)
        if block is None:
            # Two threads may fetch the same block at once; both get the same bytes.
            block = self.fetch(index * BLOCK, min(self.size, (index + 1) * BLOCK))
            self.blocks.put(self.key, index, block)
        return block


class S3Blob(io.BufferedIOBase):
    """A sealed ZIP in the bucket, opened: what ``zipfile`` reads, plus ``pread`` (safe from
    many threads) and ``reopen``. ``release`` is called once when it closes (explicitly
    or when it is collected), so the backend knows who still reads a version."""

    def __init__(
        self,
        name: str,
        reader: RangeReader,
        reopen: Callable[[], S3Blob],
        release: Callable[[], None],
    ) -> None:
        super().__init__()
        self.name = name
        self._reader = reader
        self._reopen = reopen
        self._release: Callable[[], None] | None = release
        self._position = 0
        # read-ahead of sequential reads: (offset, bytes) and the size of the next fetch
        self._ahead: tuple[int, bytes] = (0, b"")
        self._ahead_size = 0  # 0: not streaming
        self._stream_end = -1  # where the last read ended

    # --- what SealedBlob adds to a file -------------------------------------------------

    def pread(self, size: int, offset: int) -> bytes:
        self._check_open()
        return self._reader.pread(size, offset)

    def reopen(self) -> S3Blob:
        self._check_open()
        return self._reopen()

    # --- a read-only, seekable binary file ----------------------------------------------

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        self._check_open()
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET, /) -> int:
        self._check_open()
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._reader.size}
        if whence not in base:
            raise ValueError(f"invalid whence ({whence})")
        position = base[whence] + offset
        if position < 0:
            raise OSError(22, "Invalid argument: negative seek position")
        self._position = position
        return position

    def read(self, size: int | None = -1, /) -> bytes:
        self._check_open()
        total = self._reader.size
        end = total if size is None or size < 0 else min(total, self._position + size)
        if end <= self._position:
            return b""
        data = self._read_at(self._position, end)
        self._position += len(data)
        return data

    def read1(self, size: int = -1, /) -> bytes:
        return self.read(size)

    def readinto(self, buffer: Any, /) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        release, self._release = self._release, None
        self._ahead = (0, b"")
        super().close()
        if release is not None:
            release()

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file")

    def _read_at(self, start: int, end: int) -> bytes:
        """Small reads through the shared blocks, a large one as one GET; a run of reads
        each starting where the last ended, after a large one (the whole ZIP streamed to a
        peer), fetches ahead, doubling up to :data:`MAX_READ_AHEAD`."""
        head = self._from_ahead(start, end)
        start += len(head)
        streaming = self._ahead_size > 0 and start == self._stream_end + len(head)
        if start >= end:
            data = b""
        elif streaming:
            self._ahead_size = min(max(self._ahead_size * 2, end - start), MAX_READ_AHEAD)
            fetched_end = min(self._reader.size, max(end, start + self._ahead_size))
            fetched = self._reader.fetch(start, fetched_end)
            self._ahead = (start, fetched)
            data = fetched[: end - start]
        elif end - start < BLOCK:
            self._ahead_size = 0
            data = self._reader.pread(end - start, start)
        else:
            # Exactly what was asked; the next read may show a stream starting here.
            self._ahead_size = end - start
            data = self._reader.fetch(start, end)
        self._stream_end = end
        return head + data if head else data

    def _from_ahead(self, start: int, end: int) -> bytes:
        """What the read-ahead holds of ``[start, end)`` from ``start`` on; dropped once
        the reads leave it, so an idle blob keeps no more than blocks."""
        ahead_start, ahead = self._ahead
        if not ahead_start <= start < ahead_start + len(ahead):
            self._ahead = (0, b"")
            return b""
        return ahead[start - ahead_start : end - ahead_start]
