"""How far a received ZIP may inflate: checked before inflating, and while inflating.

A ZIP's directory declares each entry's inflated size; a hostile one declares a
1 GiB member in a 1 MB file, or a study metadata gzip that inflates to 1 GiB of
whitespace. Declared sizes are checked against :class:`ArchiveLimits` before
anything is inflated (so a refused archive stores nothing), and inflating stops
past the limit whatever was declared (:func:`read_bounded`, :func:`gunzip_bounded`).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO

from pacsnode.storage.errors import ArchiveTooLarge

_MiB = 1 << 20
#: Below this inflated size the ratio is not checked: a small blank image deflates ~1000:1
#: and is harmless; the ratio only matters where inflating costs real memory or disk.
RATIO_FLOOR = 16 * _MiB
CHUNK = 1 * _MiB


@dataclass(frozen=True)
class ArchiveLimits:
    """Limits on what one received ZIP may inflate to (``[storage]`` settings)."""

    #: the largest instance (one file of an upload, or one instance's entries from a peer)
    max_instance_bytes: int = 2048 * _MiB
    #: the largest study metadata JSON a peer may send, inflated
    max_metadata_bytes: int = 256 * _MiB
    #: inflated bytes per compressed byte, above RATIO_FLOOR (deflate tops out near 1032)
    max_ratio: int = 200


def size_problem(what: str, declared: int, compressed: int, limit: int, ratio: int) -> str | None:
    """Why an entry (or a whole archive) that inflates ``compressed`` bytes into
    ``declared`` ones is refused, or ``None``."""
    if declared > limit:
        return f"{what} inflates to {declared} bytes, more than the limit of {limit}"
    if declared > RATIO_FLOOR and declared > ratio * max(compressed, 1):
        return (
            f"{what} inflates {declared // max(compressed, 1)} times its compressed size, "
            f"more than the limit of {ratio}"
        )
    return None


def check_sizes(
    entries: Iterable[tuple[str, int, int]],
    limit: int,
    ratio: int,
    total_limit: int | None,
    total_name: str = "the archive",
) -> None:
    """ArchiveTooLarge unless every (name, declared, compressed) entry fits ``limit`` and
    ``ratio``, and all of them together fit ``total_limit`` (none when ``None``) and
    ``ratio``: many entries just under the ratio's floor must not add up to a bomb."""
    total = compressed_total = 0
    for name, declared, compressed in entries:
        problem = size_problem(name, declared, compressed, limit, ratio)
        if problem is not None:
            raise ArchiveTooLarge(problem)
        total += declared
        compressed_total += compressed
    everything = total_limit if total_limit is not None else total
    problem = size_problem(total_name, total, compressed_total, everything, ratio)
    if problem is not None:
        raise ArchiveTooLarge(problem)


def read_bounded(stream: IO[bytes], limit: int, what: str) -> Iterator[bytes]:
    """The stream's bytes in chunks; ArchiveTooLarge as soon as more than ``limit`` come
    (a declared size can lie: the count is what holds)."""
    count = 0
    while chunk := stream.read(CHUNK):
        count += len(chunk)
        if count > limit:
            raise ArchiveTooLarge(f"{what} inflates past the limit of {limit} bytes")
        yield chunk


def gunzip_bounded(data: bytes, limit: int, what: str) -> bytes:
    """Inflate gzip ``data`` (one or more members), refusing past ``limit`` bytes: the
    inflater is asked for at most what is still allowed, so memory never exceeds it."""
    out: list[bytes] = []
    size = 0
    pending = data
    while pending:
        inflater = zlib.decompressobj(wbits=31)
        while not inflater.eof:
            chunk = inflater.decompress(pending, min(CHUNK, limit - size + 1))
            pending = inflater.unconsumed_tail
            size += len(chunk)
            if size > limit:
                raise ArchiveTooLarge(f"{what} inflates past the limit of {limit} bytes")
            out.append(chunk)
            if not chunk and not pending:
                raise EOFError("the gzip stream ends early")
        pending = inflater.unused_data
    return b"".join(out)
