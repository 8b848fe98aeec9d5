"""Streaming a ZIP of regenerated P10 files without holding the study in memory or on disk.

A thread builds the ZIP (``zipfile`` writes to an unseekable stream with data
descriptors) into a bounded queue; the handler sends chunks as they come.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import zipfile
from typing import Any

from aiohttp import web

from pacsnode.node.core import NodeCore
from pacsnode.node.index import InstanceRef

_DONE = object()
_QUEUE_CHUNKS = 16


class _QueueWriter:
    """A write-only file object that hands what it gets to the sending coroutine."""

    def __init__(self, chunks: queue.Queue[Any]) -> None:
        self._chunks = chunks

    def write(self, data: bytes) -> int:
        if data:
            self._chunks.put(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass


def _entry_name(ref: InstanceRef) -> str:
    return f"{ref.study_uid}/{ref.series_uid}/{ref.sop_uid}.dcm"


def _produce(
    core: NodeCore, resource_id: str, chunks: queue.Queue[Any], cancelled: threading.Event
) -> None:
    try:
        refs = core.instances_of([resource_id])
        with zipfile.ZipFile(_QueueWriter(chunks), "w", zipfile.ZIP_STORED) as archive:
            for ref in refs:
                if cancelled.is_set():
                    return
                archive.writestr(_entry_name(ref), core.instance_p10(ref))
    except Exception as exc:  # the client sees a cut response; the log says why
        chunks.put(exc)
    finally:
        chunks.put(_DONE)


async def stream_archive(
    request: web.Request, core: NodeCore, record: dict[str, Any]
) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={
            "Content-Type": "application/zip",
            "Content-Disposition": f'attachment; filename="{record["id"]}.zip"',
        }
    )
    await response.prepare(request)
    chunks: queue.Queue[Any] = queue.Queue(maxsize=_QUEUE_CHUNKS)
    cancelled = threading.Event()
    producer = threading.Thread(
        target=_produce, args=(core, record["id"], chunks, cancelled), daemon=True
    )
    producer.start()
    try:
        while True:
            chunk = await asyncio.to_thread(chunks.get)
            if chunk is _DONE:
                break
            if isinstance(chunk, Exception):
                raise chunk
            await response.write(chunk)
    finally:
        cancelled.set()
        while producer.is_alive():  # unblock a producer waiting on a full queue
            try:
                chunks.get_nowait()
            except queue.Empty:
                await asyncio.sleep(0.01)
    await response.write_eof()
    return response
