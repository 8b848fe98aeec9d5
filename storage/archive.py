"""Study ZIPs and staging files: how instances are laid out in them and read back.

Two kinds of ZIP share one layout of entry names (see :mod:`storage.layout`):
- the sealed study ZIP, ``studies/{S}/metadata`` (gzip of a JSON array, stored)
  followed by every instance's frames and bulk data;
- a staging file holding one instance: its metadata object as an entry of its
  own, plus its frames and bulk data, already compressed as they will be sealed.

Sealing copies the compressed entries of both kinds into a new study ZIP
verbatim (:class:`storage.zipwriter.ZipWriter`).
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import io
import json
import logging
import zipfile
import zlib
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from pacsnode.storage.convert import SplitInstance
from pacsnode.storage.errors import InvalidArchive, StorageError
from pacsnode.storage.fidelity import Layout, decode_layout
from pacsnode.storage.layout import (
    bulk_entry,
    frame_entry,
    instance_prefix,
    is_p10_layout_entry,
    metadata_entry,
    p10_layout_entry,
    staged_metadata_entry,
)
from pacsnode.storage.limits import gunzip_bounded
from pacsnode.storage.multipart import OCTET_STREAM, frame_media_type, unwrap, wrap
from pacsnode.storage.zipwriter import ZipWriter

STUDY_UID_KEY = "0020000D"
SERIES_UID_KEY = "0020000E"
SOP_UID_KEY = "00080018"
INSTANCE_NUMBER_KEY = "00200013"
_GZIP_LEVEL = 6
_META = "the study metadata"
log = logging.getLogger(__name__)


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def first_value(metadata: dict[str, Any], key: str) -> Any:
    try:
        return metadata[key]["Value"][0]
    except (KeyError, IndexError, TypeError):
        return None


@dataclass
class InstanceSource:
    """Where one instance's entries can be copied from: a staging file or a study ZIP."""

    study_uid: str
    series_uid: str
    sop_uid: str
    metadata: dict[str, Any]
    archive: zipfile.ZipFile
    entries: list[zipfile.ZipInfo] = field(default_factory=list)

    @property
    def location(self) -> str:
        """The file holding the instance's entries."""
        if not self.archive.filename:
            raise StorageError(f"instance {self.sop_uid} is not in a file")
        return self.archive.filename

    def open_file(self) -> BinaryIO:
        """A private handle on the file holding the instance's entries (its own position,
        so readers sharing :attr:`archive` are not disturbed). A sealed ZIP's blob reopens
        the version it read; a staging file is opened by name."""
        handle = self.archive.fp
        reopen = getattr(handle, "reopen", None)
        if reopen is not None and handle is not None and not handle.closed:
            return reopen()  # type: ignore[no-any-return]
        return open(self.location, "rb")

    @contextlib.contextmanager
    def opened(self) -> Iterator[zipfile.ZipFile]:
        """The ZIP to read payloads from: the source's own if still open, else reopened."""
        if self.archive.fp is not None:
            yield self.archive
            return
        with zipfile.ZipFile(self.location) as archive:
            yield archive

    @functools.cached_property
    def digest(self) -> str:
        return instance_digest(self.metadata, self.study_uid, self.entries)

    @property
    def uncompressed_size(self) -> int:
        return sum(info.file_size for info in self.entries)

    @property
    def compressed_size(self) -> int:
        return sum(info.compress_size for info in self.entries)

    @property
    def p10_layout_info(self) -> zipfile.ZipInfo | None:
        return next((info for info in self.entries if is_p10_layout_entry(info.filename)), None)

    def p10_layout(self) -> Layout | None:
        """The original file's layout, when the instance has one (read from the ZIP)."""
        info = self.p10_layout_info
        if info is None:
            return None
        try:
            with self.opened() as archive:
                return decode_layout(unwrap(archive.read(info)).payload)
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            log.error("%s in %s is damaged: %s", info.filename, self.archive.filename, exc)
            raise StorageError(f"{info.filename} is damaged on disk") from exc

    @property
    def p10_size(self) -> int:
        """Size of the file ``/file`` gives: the original's when its layout is kept, else
        the payloads' (a regenerated file is not measured: that would rebuild it)."""
        size = self._layout_facts().get("p10-size")
        return size if size is not None else self.uncompressed_size

    @property
    def pixel_data_offset(self) -> int | None:
        """Where Pixel Data starts in the original file, when its layout is kept."""
        return self._layout_facts().get("pixel-data-offset")

    def _layout_facts(self) -> dict[str, int]:
        # The layout entry's comment repeats its size and Pixel Data offset, so that
        # listing a study reads the ZIP directory only, no entry.
        info = self.p10_layout_info
        return parse_layout_comment(info.comment) if info is not None else {}

    def sort_key(self) -> tuple[str, int, str]:
        return instance_sort_key(self.metadata, self.series_uid, self.sop_uid)


def instance_sort_key(
    metadata: dict[str, Any], series_uid: str, sop_uid: str
) -> tuple[str, int, str]:
    number = first_value(metadata, INSTANCE_NUMBER_KEY)
    try:
        position = int(number)
    except (TypeError, ValueError):
        position = 1 << 62
    return series_uid, position, sop_uid


def instance_digest(
    metadata: dict[str, Any], study_uid: str, entries: Iterable[zipfile.ZipInfo]
) -> str:
    """SHA-256 of an instance's content, the same wherever it is stored.

    It covers the canonical metadata JSON and, for each frame and bulk entry,
    its name, size and CRC-32 (part files are deterministic, so equal payloads
    give equal CRCs). It is computed from the ZIP directory alone, without
    decompressing anything, so inventories of large studies stay cheap. The P10
    layout is left out: the same data set sent with another file meta (by
    another sender, over DICOM rather than REST) is the same instance.
    """
    hasher = hashlib.sha256(canonical_json(metadata))
    prefix_length = len(f"studies/{study_uid}/")
    described = (
        (info.filename, info.file_size, info.CRC)
        for info in entries
        if not is_p10_layout_entry(info.filename)
    )
    for name, size, crc in sorted(described):
        hasher.update(f"\n{name[prefix_length:]}:{size}:{crc:08x}".encode())
    return hasher.hexdigest()


def build_staged(split: SplitInstance, level: int | None) -> tuple[bytes, InstanceSource]:
    """Build the staging file of ``split`` in memory; return it and the instance it holds."""
    buffer = io.BytesIO()
    writer = ZipWriter(buffer)
    # Frames already compressed (JPEG, JPEG-LS, JPEG 2000, RLE, video) are stored:
    # deflating them costs CPU and saves next to nothing.
    frame_level = None if split.encapsulated else level
    for name, payload, is_frame in _instance_parts(split):
        writer.add(name, payload, frame_level if is_frame else level)
    if split.p10_layout is not None:
        layout = wrap(split.p10_layout.encode(), OCTET_STREAM, split.transfer_syntax)
        comment = layout_comment(split.p10_layout)
        writer.add(p10_layout_entry(*split.ids), layout, level, comment)
    writer.add(
        staged_metadata_entry(split.study_uid, split.series_uid, split.sop_uid),
        canonical_json(split.metadata),
        level if level is not None else 6,
    )
    writer.close()
    data = buffer.getvalue()
    return data, read_staged(zipfile.ZipFile(io.BytesIO(data)))


def layout_comment(layout: Layout) -> bytes:
    facts = {"p10-size": layout.size, "pixel-data-offset": layout.pixel_data_offset}
    return " ".join(f"{key}={value}" for key, value in facts.items() if value is not None).encode()


def parse_layout_comment(comment: bytes) -> dict[str, int]:
    facts: dict[str, int] = {}
    for pair in comment.decode("ascii", "replace").split():
        key, _, value = pair.partition("=")
        with contextlib.suppress(ValueError):
            facts[key] = int(value)
    return facts


def _instance_parts(split: SplitInstance) -> Iterable[tuple[str, bytes, bool]]:
    """(entry name, part file, whether it is a frame) of each frame and bulk element."""
    ids = (split.study_uid, split.series_uid, split.sop_uid)
    media_type = frame_media_type(split.transfer_syntax, split.encapsulated)
    for number, frame in enumerate(split.frames, start=1):
        yield frame_entry(*ids, number), wrap(frame, media_type, split.transfer_syntax), True
    for key, payload in sorted(split.bulk.items()):
        yield bulk_entry(*ids, key), wrap(payload, OCTET_STREAM, split.transfer_syntax), False


# --- reading -------------------------------------------------------------------------


def _entry_owner(name: str) -> tuple[str, str] | None:
    """(series, sop) of a frame or bulk entry name."""
    parts = name.split("/")
    if len(parts) >= 7 and parts[2] == "series" and parts[4] == "instances":
        return parts[3], parts[5]
    return None


def read_staged(archive: zipfile.ZipFile) -> InstanceSource:
    """The one instance in a staging file."""
    meta_infos = [info for info in archive.infolist() if info.filename.endswith("/metadata")]
    if len(meta_infos) != 1:
        log.error("staging file %s has no instance metadata", archive.filename)
        raise StorageError("a staging file has no instance metadata")
    meta_info = meta_infos[0]
    owner = _entry_owner(meta_info.filename)
    if owner is None:
        log.error("staging file %s is malformed", archive.filename)
        raise StorageError("a staging file is malformed")
    study_uid = meta_info.filename.split("/")[1]
    metadata = json.loads(archive.read(meta_info))
    entries = [info for info in archive.infolist() if info is not meta_info]
    return InstanceSource(study_uid, owner[0], owner[1], metadata, archive, entries)


def read_study_metadata(
    archive: zipfile.ZipFile, study_uid: str, limit: int | None = None
) -> list[dict[str, Any]]:
    """The study's metadata objects; with ``limit``, refused (ArchiveTooLarge) once it
    inflates past that many bytes, for a ZIP from elsewhere: its gzip could be a bomb.
    Errors name no file (they may reach a peer); the log has it."""
    try:
        raw = archive.read(metadata_entry(study_uid))
        document = gzip.decompress(raw) if limit is None else gunzip_bounded(raw, limit, _META)
        objects = json.loads(document)
    except KeyError:
        raise StorageError("the study ZIP has no study metadata") from None
    except (OSError, EOFError, zlib.error, ValueError) as exc:
        log.warning("unreadable study metadata in %s: %s", archive.filename, exc)
        raise StorageError("the study metadata is unreadable") from exc
    if not isinstance(objects, list):
        raise StorageError("the study metadata is not a JSON array")
    return objects


def read_sealed(archive: zipfile.ZipFile, study_uid: str) -> dict[str, InstanceSource]:
    """Every instance of a sealed study ZIP, by SOP Instance UID."""
    sources: dict[str, InstanceSource] = {}
    for metadata in read_study_metadata(archive, study_uid):
        sop_uid = str(first_value(metadata, SOP_UID_KEY))
        series_uid = str(first_value(metadata, SERIES_UID_KEY))
        sources[sop_uid] = InstanceSource(study_uid, series_uid, sop_uid, metadata, archive)
    for info in archive.infolist():
        owner = _entry_owner(info.filename)
        if owner is not None and owner[1] in sources:
            sources[owner[1]].entries.append(info)
    return sources


# --- writing a study ZIP -------------------------------------------------------------


def study_metadata_gzip(objects: list[dict[str, Any]]) -> bytes:
    document = json.dumps(objects, separators=(",", ":"), allow_nan=False).encode()
    return gzip.compress(document, compresslevel=_GZIP_LEVEL, mtime=0)


def write_study_zip(handle: BinaryIO, study_uid: str, sources: list[InstanceSource]) -> None:
    """Write a complete study ZIP: metadata first, then each instance's entries, copied raw.

    Entries are read through private file handles, one per source file, so
    readers sharing a cached ZipFile are never disturbed.
    """
    ordered = sorted(sources, key=InstanceSource.sort_key)
    writer = ZipWriter(handle)
    writer.add(metadata_entry(study_uid), study_metadata_gzip([s.metadata for s in ordered]), None)
    handles = _HandleCache()
    try:
        for source in ordered:
            handle = handles.get(source)
            prefix = instance_prefix(study_uid, source.series_uid, source.sop_uid)
            for info in sorted(source.entries, key=_entry_order):
                if not info.filename.startswith(prefix):
                    raise StorageError(f"entry {info.filename} is outside its instance")
                writer.copy(handle, info)
    finally:
        handles.close()
    writer.close()


class _HandleCache:
    """A few open source files: a study may have more staged files than the fd limit."""

    _LIMIT = 16

    def __init__(self) -> None:
        self._open: OrderedDict[str, BinaryIO] = OrderedDict()

    def get(self, source: InstanceSource) -> BinaryIO:
        location = source.location
        handle = self._open.get(location)
        if handle is None:
            handle = source.open_file()
            self._open[location] = handle
            if len(self._open) > self._LIMIT:
                self._open.popitem(last=False)[1].close()
        self._open.move_to_end(location)
        return handle

    def close(self) -> None:
        for handle in self._open.values():
            handle.close()
        self._open.clear()


def _entry_order(info: zipfile.ZipInfo) -> tuple[int, int, str]:
    kind, _, tail = info.filename.rpartition("/")
    if kind.endswith("frames"):
        return 0, int(tail), ""
    return 1, 0, tail


def open_zip(path: Path | BinaryIO) -> zipfile.ZipFile:
    """Open a ZIP (a file, or a handle on one such as a backend's blob); a missing file
    raises FileNotFoundError, a malformed one InvalidArchive."""
    try:
        return zipfile.ZipFile(path)
    except FileNotFoundError:
        raise
    except OSError as exc:
        log.error("cannot open %s: %s", path, exc)
        raise StorageError(f"cannot open a ZIP: {exc.strerror or 'I/O error'}") from exc
    except (zipfile.BadZipFile, EOFError, ValueError, NotImplementedError) as exc:
        log.warning("%s is not a readable ZIP: %s", path, exc)
        raise InvalidArchive("the file is not a readable ZIP") from exc
