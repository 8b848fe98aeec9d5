"""ZIP archives of regenerated P10 files: streamed to the client, or written to a file.

A thread builds the ZIP (``zipfile`` writes to an unseekable stream with data
descriptors) into a bounded queue; the handler sends chunks as they come, so a
study is never held in memory or on disk. Entries are named as Orthanc names them,
``{PatientID} {PatientName}/{Accession} {StudyDescription}/{Modality} {SeriesDescription}/
{MO}{n}.dcm``, so scripts that unpack Orthanc's archives find the same folders. DICOM media
is Orthanc's layout too: ``IMAGES/IM0``, ``IMAGES/IM1``... and a ``DICOMDIR`` written last.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import re
import threading
import zipfile
from collections.abc import Callable, Iterable, Iterator
from enum import Enum
from typing import IO, Any

from aiohttp import web

from pacsnode.node.core import NodeCore
from pacsnode.node.index import InstanceRef
from pacsnode.storage.dicomdir import DicomDir, read_header

_DONE = object()
_QUEUE_CHUNKS = 16
_UNSAFE = re.compile(r"[\x00-\x1f/\\:*?\"<>|]+")

log = logging.getLogger(__name__)


class _QueueWriter:
    """A write-only file object that hands what it gets to the sending coroutine."""

    def __init__(self, chunks: queue.Queue[Any]) -> None:
        self._chunks = chunks
        self._abandoned = False

    def write(self, data: bytes) -> int:
        if data and not self._abandoned:
            self._chunks.put(bytes(data))
        return len(data)

    def abandon(self) -> None:
        """Drop what comes next: the end records a ZipFile writes as it closes on an
        error would start an answer that can only fail."""
        self._abandoned = True

    def flush(self) -> None:
        pass


def instances_of_all(core: NodeCore, resource_ids: Iterable[str]) -> list[InstanceRef]:
    """The instances below the resources, each once (a patient and its study overlap)."""
    seen: dict[str, InstanceRef] = {}
    for ref in core.instances_of(resource_ids):
        seen.setdefault(ref.id, ref)
    return list(seen.values())


def _part(*values: str) -> str:
    text = " ".join(v.strip() for v in values if v and v.strip())
    return _UNSAFE.sub("_", text).strip(" .") or "Unknown"


class _Namer:
    """Orthanc's folder names, from the index records of each instance's ancestors."""

    def __init__(self, core: NodeCore) -> None:
        self._core = core
        self._records: dict[str, dict[str, Any]] = {}
        self._counts: dict[str, int] = {}

    def _record(self, resource_id: str) -> dict[str, Any]:
        if resource_id not in self._records:
            self._records[resource_id] = self._core.resource(resource_id)
        return self._records[resource_id]

    def name(self, ref: InstanceRef) -> str:
        series = self._record(self._record(ref.id)["parent"])
        study = self._record(series["parent"])
        patient = self._record(study["parent"])
        tags, study_tags, patient_tags = series["tags"], study["tags"], patient["tags"]
        modality = tags.get("Modality", "")
        number = self._counts[series["id"]] = self._counts.get(series["id"], 0) + 1
        prefix = (modality[:2] or "IM").upper()
        return "/".join(
            (
                _part(patient_tags.get("PatientID", ""), patient_tags.get("PatientName", "")),
                _part(
                    study_tags.get("AccessionNumber", ""), study_tags.get("StudyDescription", "")
                ),
                _part(modality, tags.get("SeriesDescription", "")),
                f"{prefix}{number:06d}.dcm",
            )
        )


@contextlib.contextmanager
def _zip_to(handle: IO[bytes]) -> Iterator[zipfile.ZipFile]:
    """A ZIP written to ``handle``; on an error the handle is abandoned (when it can be:
    a streamed answer) before the ZipFile closes, so its end records are not sent."""
    with zipfile.ZipFile(handle, "w", zipfile.ZIP_STORED) as archive:
        try:
            yield archive
        except BaseException:
            abandon = getattr(handle, "abandon", None)
            if abandon is not None:
                abandon()
            raise


class Media(Enum):
    """What a ZIP holds: Orthanc's archive folders, or DICOM media with a DICOMDIR."""

    ARCHIVE = "archive"
    MEDIA = "media"
    EXTENDED_MEDIA = "extended media"  # more attributes in the DICOMDIR's records


def write_archive(
    core: NodeCore,
    refs: list[InstanceRef],
    handle: IO[bytes],
    cancelled: threading.Event,
    media: Media = Media.ARCHIVE,
    written: Callable[[int], None] = lambda count: None,
) -> int:
    """Write the ZIP of these instances to ``handle``; return the bytes of DICOM put in.

    ``written`` is told how many files are in after each one (a job's progress)."""
    if media is not Media.ARCHIVE:
        extended = media is Media.EXTENDED_MEDIA
        return _write_media(core, refs, handle, cancelled, extended, written)
    namer, total = _Namer(core), 0
    with _zip_to(handle) as archive:
        for count, ref in enumerate(refs, 1):
            if cancelled.is_set():
                break
            data = core.instance_p10(ref)
            archive.writestr(namer.name(ref), data)
            total += len(data)
            written(count)
    return total


def _write_media(
    core: NodeCore,
    refs: list[InstanceRef],
    handle: IO[bytes],
    cancelled: threading.Event,
    extended: bool,
    written: Callable[[int], None],
) -> int:
    """Files as ``IMAGES/IM0``, ``IMAGES/IM1``... (Orthanc's media layout: short upper-case
    File IDs, as PS3.10 asks), then the DICOMDIR, which is known only once all are in."""
    directory, total = DicomDir(extended=extended), 0
    with _zip_to(handle) as archive:
        for number, ref in enumerate(refs):
            if cancelled.is_set():
                return total
            data = core.instance_p10(ref)
            file_id = ("IMAGES", f"IM{number}")
            archive.writestr("/".join(file_id), data)
            directory.add(file_id, read_header(data))
            total += len(data)
            written(number + 1)
        archive.writestr("DICOMDIR", directory.encode())
    return total


def _produce(
    core: NodeCore,
    refs: list[InstanceRef],
    chunks: queue.Queue[Any],
    cancelled: threading.Event,
    media: Media,
) -> None:
    writer = _QueueWriter(chunks)
    try:
        write_archive(core, refs, writer, cancelled, media)  # type: ignore[arg-type]
    except Exception as exc:  # an error answer, or a cut one once started; the log says why
        chunks.put(exc)
    finally:
        chunks.put(_DONE)


async def stream_refs(
    request: web.Request,
    core: NodeCore,
    refs: list[InstanceRef],
    filename: str,
    media: Media = Media.ARCHIVE,
) -> web.StreamResponse:
    """Send the ZIP of these instances as it is built.

    The answer starts with the first bytes, so a failure before them (the storage is
    unreachable, a file is gone) is answered as an error; one after them can only cut the
    connection, and does: an error answer written into a started body would pass for
    part of the ZIP."""
    response = web.StreamResponse(
        headers={
            "Content-Type": "application/zip",
            "Content-Disposition": f'attachment; filename="{_part(filename)}"',
        }
    )
    chunks: queue.Queue[Any] = queue.Queue(maxsize=_QUEUE_CHUNKS)
    sent = 0
    cancelled = threading.Event()
    producer = threading.Thread(
        target=_produce, args=(core, refs, chunks, cancelled, media), daemon=True
    )
    producer.start()
    try:
        while True:
            chunk = await asyncio.to_thread(chunks.get)
            if chunk is _DONE:
                break
            if isinstance(chunk, Exception):
                if not response.prepared:
                    raise chunk
                log.warning("%s cut after %d bytes: %s", filename, sent, chunk)
                _cut(request)
                return response
            if not chunk:
                continue  # nothing to send, nothing to start the answer for
            if not response.prepared:
                await response.prepare(request)
            await response.write(chunk)
            sent += len(chunk)
    finally:
        cancelled.set()
        while producer.is_alive():  # unblock a producer waiting on a full queue
            try:
                chunks.get_nowait()
            except queue.Empty:
                await asyncio.sleep(0.01)
    if not response.prepared:  # an empty archive
        await response.prepare(request)
    await response.write_eof()
    return response


def _cut(request: web.Request) -> None:
    """Close the connection under a started answer: the client sees it end early."""
    transport = request.transport
    if transport is not None:
        transport.abort()


async def stream_archive(
    request: web.Request, core: NodeCore, record: dict[str, Any]
) -> web.StreamResponse:
    refs = await asyncio.to_thread(instances_of_all, core, [record["id"]])
    return await stream_refs(request, core, refs, f"{record['id']}.zip")
