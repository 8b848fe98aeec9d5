"""One uploaded file, which may be a DICOM instance or a ZIP of them, into the node.

Both REST (``POST /instances``) and the CLI (``pacsnode import``) accept either;
the unpacking lives here once. Each member gets its own outcome: a refused member
does not stop the others.
"""

from __future__ import annotations

import re
import tempfile
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from pacsnode.node.core import NodeCore
from pacsnode.node.errors import BadRequest, DomainError
from pacsnode.node.index import Origin
from pacsnode.node.ingest import IngestResult

_ZIP_MAGIC = b"PK\x03\x04"


@dataclass(frozen=True)
class FileOutcome:
    """What became of one file: its result, or the error that refused it."""

    name: str
    result: IngestResult | None = None
    error: DomainError | None = None


def is_zip(handle: IO[bytes]) -> bool:
    """Whether a seekable file starts like a ZIP (its position is kept at 0)."""
    handle.seek(0)
    head = handle.read(4)
    handle.seek(0)
    return head == _ZIP_MAGIC


def ingest_zip(core: NodeCore, handle: IO[bytes], origin: Origin) -> Iterator[FileOutcome]:
    """Ingest each file of a ZIP; BadRequest if it is not a readable ZIP."""
    try:
        archive = zipfile.ZipFile(handle)
    except zipfile.BadZipFile as exc:
        raise BadRequest(f"the body starts like a ZIP but is not one: {exc}") from exc
    with archive:
        for info in archive.infolist():
            if info.is_dir() or _is_dicomdir(info.filename):
                continue
            try:
                with archive.open(info) as member:
                    yield FileOutcome(info.filename, result=core.ingest(member.read(), origin))
            except DomainError as exc:
                yield FileOutcome(info.filename, error=exc)


def _is_dicomdir(name: str) -> bool:
    """A media's directory (PS3.10 names it DICOMDIR) indexes the files beside it; it is not
    an instance, and those files come in on their own."""
    return name.replace("\\", "/").rsplit("/", 1)[-1].upper() == "DICOMDIR"


_BOUNDARY = re.compile(r"boundary\s*=\s*\"?([^\";\s]+)", re.IGNORECASE)


def form_data_boundary(content_type: str) -> str | None:
    """The boundary of a ``multipart/form-data`` body (browsers' file uploads), else None.
    Spaces around ``;`` and ``=`` are tolerated, as Orthanc does."""
    kind, _, _ = content_type.partition(";")
    if kind.strip().lower() != "multipart/form-data":
        return None
    found = _BOUNDARY.search(content_type)
    return found.group(1) if found else None


def form_data_files(body: bytes, boundary: str) -> list[bytes]:
    """The contents of the parts of a ``multipart/form-data`` body, in order."""
    files = []
    for part in body.split(b"--" + boundary.encode())[1:]:
        if part.startswith(b"--"):  # the closing delimiter
            break
        _, separator, content = part.partition(b"\r\n\r\n")
        if separator:
            files.append(content[:-2] if content.endswith(b"\r\n") else content)
    return files


class ChunkedUploads:
    """Files a browser sends in pieces (jQuery File Upload's ``maxChunkSize``, as Orthanc
    Explorer does): each request carries one piece of ``X-File-Name`` in a form part and
    the whole file's ``X-File-Size``; pieces are joined in the order they come, and the
    file is ingested once it has them all. A few uploads are kept at a time, the oldest
    forgotten first; pieces are spooled to disk past a few MiB.
    """

    _KEPT = 16
    _IN_MEMORY = 8 * 1024 * 1024

    def __init__(self) -> None:
        self._pending: OrderedDict[tuple[str, int], IO[bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, name: str, total: int, piece: bytes) -> IO[bytes] | None:
        """Add a piece; the whole file (positioned at 0, the caller closes it) once complete."""
        key = (name, total)
        with self._lock:
            spool = self._pending.pop(key, None)
            if spool is None:
                spool = tempfile.SpooledTemporaryFile(max_size=self._IN_MEMORY)
            spool.write(piece)
            if spool.tell() < total:
                self._pending[key] = spool
                while len(self._pending) > self._KEPT:
                    self._pending.popitem(last=False)[1].close()
                return None
        if spool.tell() > total:
            spool.close()
            raise BadRequest(f"{name}: more bytes than its X-File-Size ({total})")
        spool.seek(0)
        return spool
