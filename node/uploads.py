"""One uploaded file, which may be a DICOM instance or a ZIP of them, into the node.

Both REST (``POST /instances``) and the CLI (``pacsnode import``) accept either;
the unpacking lives here once. Each member gets its own outcome: a refused member
does not stop the others.
"""

from __future__ import annotations

import contextlib
import logging
import re
import tempfile
import threading
import zipfile
import zlib
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from pacsnode.node.core import NodeCore
from pacsnode.node.errors import BadRequest, DomainError
from pacsnode.node.index import Origin
from pacsnode.node.ingest import IngestResult
from pacsnode.storage.durable import disk_errors
from pacsnode.storage.errors import InvalidArchive
from pacsnode.storage.limits import ArchiveLimits, check_sizes, read_bounded

log = logging.getLogger(__name__)
_ZIP_MAGIC = b"PK\x03\x04"
#: a member up to this size is inflated in memory, as a single upload is
_IN_MEMORY = 8 * 1024 * 1024


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
    """Ingest each file of a ZIP; BadRequest if it is not a readable ZIP.

    What the ZIP's directory declares is checked against ``[storage]``'s limits before
    any member is inflated: an archive that would inflate too far (a ZIP bomb) is refused
    whole with ArchiveTooLarge, nothing of it stored. Each member is then inflated chunk
    by chunk, counted, and stopped past the limit whatever it declared.
    """
    try:
        archive = zipfile.ZipFile(handle)
    except (zipfile.BadZipFile, EOFError, ValueError, NotImplementedError) as exc:
        log.info("an uploaded ZIP is unreadable: %s", exc)
        raise BadRequest("the body starts like a ZIP but is not one") from exc
    with archive:
        members = [i for i in archive.infolist() if not i.is_dir() and not _is_dicomdir(i.filename)]
        limits = core.settings.archive_limits
        check_member_sizes(members, limits)
        spool_dir = core.settings.data_dir
        for info in members:
            try:
                with _inflated(archive, info, limits.max_instance_bytes, spool_dir) as member:
                    result = core.ingest(member, origin)
            except DomainError as exc:
                yield FileOutcome(info.filename, error=exc)
            else:
                yield FileOutcome(info.filename, result=result)


def check_member_sizes(members: list[zipfile.ZipInfo], limits: ArchiveLimits) -> None:
    """ArchiveTooLarge if a member, or all of them together, would inflate past the limits."""
    sizes = ((info.filename[:200], info.file_size, info.compress_size) for info in members)
    check_sizes(sizes, limits.max_instance_bytes, limits.max_ratio, None, "the ZIP")


@contextlib.contextmanager
def _inflated(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int, spool_dir: Path
) -> Iterator[bytes | IO[bytes]]:
    """The member inflated: its bytes when small (as before, the hot path), else a file in
    the data directory, so a large member is never held whole in memory twice. Inflating
    is done before the caller gets it, so only its own failures are "damaged"."""
    with contextlib.ExitStack() as stack:
        member: bytes | IO[bytes]
        try:
            with archive.open(info) as stream:
                if info.file_size <= _IN_MEMORY:
                    member = b"".join(read_bounded(stream, limit, "the file"))
                else:
                    spool = stack.enter_context(tempfile.TemporaryFile(dir=spool_dir))
                    for chunk in read_bounded(stream, limit, "the file"):
                        with disk_errors("the upload"):  # a full disk, not a damaged ZIP
                            spool.write(chunk)
                    spool.seek(0)
                    member = spool
        except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError) as exc:
            # ValueError: a directory whose offsets point before the file (found by fuzzing)
            log.info("ZIP member %s is damaged: %s", info.filename, exc)
            raise InvalidArchive("the file is damaged in the ZIP") from exc
        except (RuntimeError, NotImplementedError) as exc:  # encrypted, unknown compression
            log.info("ZIP member %s cannot be read: %s", info.filename, exc)
            raise InvalidArchive("the file is encrypted or compressed in a way not read") from exc
        yield member


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

    def __init__(self, spool_dir: Path | None = None) -> None:
        self._pending: OrderedDict[tuple[str, int], IO[bytes]] = OrderedDict()
        self._lock = threading.Lock()
        #: where pieces past a few MiB go: the data directory keeps patient data on the
        #: data disk, private to the node (None: the system's temporary directory)
        self._spool_dir = spool_dir

    def add(self, name: str, total: int, piece: bytes) -> IO[bytes] | None:
        """Add a piece; the whole file (positioned at 0, the caller closes it) once complete."""
        key = (name, total)
        with self._lock:
            spool = self._pending.pop(key, None)
            if spool is None:
                spool = tempfile.SpooledTemporaryFile(self._IN_MEMORY, dir=self._spool_dir)
            with disk_errors("the upload"):  # spooled on the data disk past a few MiB
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
