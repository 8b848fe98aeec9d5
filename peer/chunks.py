"""A ZIP moved as byte ranges over several connections at once.

One TCP connection cannot fill a long link (its window grows slowly and stays
capped), so a transfer is cut into chunks that up to ``PARALLEL`` workers move
side by side, each on its own connection ("channel").
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import IO

from pacsnode.peer.errors import PeerError
from pacsnode.peer.ranges import Range, split_range
from pacsnode.peer.throttle import Throttle

PARALLEL = 4  # connections per transfer
_LARGEST_CHUNK = 16 << 20
_SMALLEST_PARALLEL_CHUNK = 1 << 20

#: ``work(channel, start, end)`` moves ``[start, end)`` over connection ``channel``
Work = Callable[[int, int, int], None]


def plan_chunks(missing: list[Range], size: int, throttle: Throttle) -> list[Range]:
    """The chunks that move the ``missing`` ranges of a ``size``-byte file."""
    if throttle.limited:
        chunk = throttle.chunk_size(_LARGEST_CHUNK)
    else:  # about two chunks per connection, so a slow one does not hold the end back
        share = -(-size // (2 * PARALLEL))
        chunk = min(_LARGEST_CHUNK, max(_SMALLEST_PARALLEL_CHUNK, share))
    return [piece for gap in missing for piece in split_range(*gap, chunk)]


def width_for(chunks: list[Range], throttle: Throttle) -> int:
    """How many connections move these chunks (one under a bandwidth cap)."""
    return 1 if throttle.limited else min(PARALLEL, len(chunks))


def run_chunks(chunks: list[Range], width: int, work: Work) -> None:
    """``work`` for every chunk, on channels ``0..width-1``; the first failure is
    raised once the other workers have stopped taking chunks."""
    pending: queue.SimpleQueue[Range] = queue.SimpleQueue()
    for chunk in chunks:
        pending.put(chunk)
    failures: list[PeerError] = []

    def worker(channel: int) -> None:
        while not failures:
            try:
                start, end = pending.get_nowait()
            except queue.Empty:
                return
            try:
                work(channel, start, end)
            except PeerError as exc:
                failures.append(exc)

    if width <= 1:
        worker(0)
    else:
        with ThreadPoolExecutor(width, thread_name_prefix="peer-transfer") as workers:
            list(workers.map(worker, range(width)))
    if failures:
        raise failures[0]


def range_reader(archive: IO[bytes]) -> Callable[[int, int], bytes]:
    """Read ``[start, end)`` of ``archive`` from any thread."""
    try:
        descriptor = archive.fileno()
    except (OSError, ValueError):  # in memory: one reader at a time
        lock = threading.Lock()

        def read_locked(start: int, end: int) -> bytes:
            with lock:
                archive.seek(start)
                return archive.read(end - start)

        return read_locked
    return lambda start, end: os.pread(descriptor, end - start, start)
