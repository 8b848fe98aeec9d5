"""Validation of a study ZIP received from another node, before anything is stored.

A peer's ZIP is refused whole when an entry name escapes ``studies/{S}/`` or
is not one pacsnode writes, when a CRC, a part file or the metadata JSON is
wrong, when metadata and entries disagree, or when an instance's metadata
would not regenerate as DICOM P10 (:mod:`storage.p10_check`), or when it would
inflate past the configured limits (:mod:`storage.limits`): checked from the ZIP's
directory before anything is inflated, and counted while inflating.

A refusal's message goes back to the peer: it names entries, never a file path or
Python's exception text (those go to the log).
"""

from __future__ import annotations

import logging
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pacsnode.storage.archive import (
    SERIES_UID_KEY,
    SOP_UID_KEY,
    STUDY_UID_KEY,
    InstanceSource,
    first_value,
    layout_comment,
    read_study_metadata,
)
from pacsnode.storage.errors import ArchiveTooLarge, InvalidArchive, StorageError
from pacsnode.storage.fidelity import decode_layout
from pacsnode.storage.inflate import read_entry
from pacsnode.storage.layout import (
    EntryName,
    instance_path,
    is_p10_layout_entry,
    is_valid_uid,
    metadata_entry,
    parse_entry_name,
)
from pacsnode.storage.limits import RATIO_FLOOR, ArchiveLimits, check_sizes, read_bounded
from pacsnode.storage.multipart import unwrap
from pacsnode.storage.p10_check import P10Check

log = logging.getLogger(__name__)

_TAG_KEY_LENGTH = 8
_CHECK_THREADS = 2
#: entries up to this size are inflated whole; larger ones (a whole-slide image's bulk
#: data) are streamed in bounded chunks
_WHOLE_ENTRY = 16 << 20
_ENCRYPTED_FLAG = 0x1
# A part file's boundary line and Content-Type header fit well within this (wrap writes ~110
# bytes), and its closing boundary within the tail kept while streaming it.
_PART_HEAD = 4096
_PART_TAIL = 256
_UNLIMITED = 1 << 62


def validate_study_zip(
    archive: zipfile.ZipFile, limits: ArchiveLimits | None = None
) -> tuple[str, dict[str, InstanceSource]]:
    """Check every part of ``archive``; return its study UID and instances.

    Raises :class:`InvalidArchive` naming the first problem found, whatever
    the problem is: nothing a peer sends may surface as another exception
    (:class:`ArchiveTooLarge` when it would inflate past ``limits``).
    """
    try:
        return _validate(archive, limits or ArchiveLimits())
    except InvalidArchive:
        raise
    except RecursionError:
        raise InvalidArchive("the metadata is nested too deeply") from None
    except Exception as exc:
        log.warning("a received ZIP is malformed: %s: %s", type(exc).__name__, exc)
        raise InvalidArchive("the ZIP is malformed") from exc


def _validate(
    archive: zipfile.ZipFile, limits: ArchiveLimits
) -> tuple[str, dict[str, InstanceSource]]:
    entries = _parse_names(archive)
    study_uid = _single_study(entries)
    _check_declared_sizes(entries, limits)
    sources = _instances_from_metadata(archive, study_uid, limits)
    for info, name in entries:
        if name.is_metadata:
            continue
        source = sources.get(name.sop_uid or "")
        if source is None or source.series_uid != name.series_uid:
            raise InvalidArchive(f"entry {info.filename} belongs to no instance in the metadata")
        source.entries.append(info)
    p10_check = P10Check()
    for source in sources.values():
        _check_bulk_references(source)
        p10_check.check(source)
    _check_contents(archive, entries, limits)
    return study_uid, sources


def _parse_names(archive: zipfile.ZipFile) -> list[tuple[zipfile.ZipInfo, EntryName]]:
    parsed: list[tuple[zipfile.ZipInfo, EntryName]] = []
    seen: set[str] = set()
    for info in archive.infolist():
        name = parse_entry_name(info.filename)
        if name is None:
            raise InvalidArchive(f"entry name {info.filename[:200]!r} is not allowed")
        if info.filename in seen:
            raise InvalidArchive(f"entry {info.filename} appears twice")
        if info.flag_bits & _ENCRYPTED_FLAG:
            raise InvalidArchive(f"entry {info.filename} is encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise InvalidArchive(f"entry {info.filename} uses an unsupported compression")
        seen.add(info.filename)
        parsed.append((info, name))
    return parsed


def _single_study(entries: list[tuple[zipfile.ZipInfo, EntryName]]) -> str:
    studies = {name.study_uid for _, name in entries}
    if len(studies) != 1:
        raise InvalidArchive("the ZIP must hold exactly one study")
    if sum(1 for _, name in entries if name.is_metadata) != 1:
        raise InvalidArchive("the ZIP has no study metadata entry")
    return studies.pop()


def _check_declared_sizes(
    entries: list[tuple[zipfile.ZipInfo, EntryName]], limits: ArchiveLimits
) -> None:
    """Refuse, before inflating anything, what the directory says inflates too far: the
    metadata past its limit, an instance's entries together past the instance limit, or
    any entry (or the whole ZIP) past the ratio. What is then inflated is counted too
    (zipfile stops at the declared size and fails the CRC if the entry holds more)."""
    instances: dict[str, list[tuple[str, int, int]]] = {}
    everything: list[tuple[str, int, int]] = []
    for info, name in entries:
        sizes = (f"entry {info.filename[:200]}", info.file_size, info.compress_size)
        everything.append(sizes)
        if name.is_metadata:
            check_sizes([sizes], limits.max_metadata_bytes, limits.max_ratio, None)
        else:
            instances.setdefault(name.sop_uid or "", []).append(sizes)
    for sop_uid, sizes in instances.items():
        try:
            limit = limits.max_instance_bytes
            check_sizes(sizes, limit, limits.max_ratio, limit, "its entries together")
        except ArchiveTooLarge as exc:
            raise ArchiveTooLarge(f"instance {sop_uid}: {exc.message}") from None
    check_sizes(everything, _UNLIMITED, limits.max_ratio, None, "the ZIP")


def _metadata_limit(archive: zipfile.ZipFile, study_uid: str, limits: ArchiveLimits) -> int:
    """How far the metadata gzip may inflate: its own gzip declares nothing the directory
    checks, so the ratio applies to what it inflates to (past the floor), as to entries."""
    compressed = archive.getinfo(metadata_entry(study_uid)).file_size
    by_ratio = max(RATIO_FLOOR, limits.max_ratio * compressed)
    return min(limits.max_metadata_bytes, by_ratio)


def _instances_from_metadata(
    archive: zipfile.ZipFile, study_uid: str, limits: ArchiveLimits
) -> dict[str, InstanceSource]:
    try:
        limit = _metadata_limit(archive, study_uid, limits)
        objects = read_study_metadata(archive, study_uid, limit)
    except ArchiveTooLarge:
        raise
    except StorageError as exc:
        raise InvalidArchive(exc.message) from exc
    except zipfile.BadZipFile as exc:
        log.warning("a received ZIP's study metadata is damaged: %s", exc)
        raise InvalidArchive(f"the study metadata entry is damaged ({_damage(exc)})") from exc
    sources: dict[str, InstanceSource] = {}
    for index, metadata in enumerate(objects):
        if not _is_json_dataset(metadata):
            raise InvalidArchive(f"metadata object {index} is not a DICOM JSON data set")
        if first_value(metadata, STUDY_UID_KEY) != study_uid:
            raise InvalidArchive(f"metadata object {index} belongs to another study")
        series_uid = first_value(metadata, SERIES_UID_KEY)
        sop_uid = first_value(metadata, SOP_UID_KEY)
        if not (is_valid_uid(series_uid) and is_valid_uid(sop_uid)):
            raise InvalidArchive(f"metadata object {index} has an invalid series or SOP UID")
        if sop_uid in sources:
            raise InvalidArchive(f"instance {sop_uid} appears twice in the metadata")
        sources[sop_uid] = InstanceSource(study_uid, series_uid, sop_uid, metadata, archive)
    return sources


def _is_json_dataset(value: Any) -> bool:
    if not isinstance(value, dict):
        return False
    for key, element in value.items():
        if len(key) != _TAG_KEY_LENGTH or not isinstance(element, dict):
            return False
        try:
            int(key, 16)
        except ValueError:
            return False
        if not isinstance(element.get("vr"), str):
            return False
        if element["vr"] == "SQ" and not all(
            _is_json_dataset(item) for item in element.get("Value", [])
        ):
            return False
    return True


def _bulk_uris(metadata: dict[str, Any]) -> Iterator[str]:
    for element in metadata.values():
        uri = element.get("BulkDataURI")
        if uri is not None:
            yield uri
        if element.get("vr") == "SQ":
            for item in element.get("Value", []):
                yield from _bulk_uris(item)


def _check_bulk_references(source: InstanceSource) -> None:
    base = instance_path(source.series_uid, source.sop_uid)
    prefix = f"studies/{source.study_uid}/"
    present = {info.filename[len(prefix) :] for info in source.entries}
    frames = sorted(int(name.rsplit("/", 1)[1]) for name in present if "/frames/" in name)
    if frames != list(range(1, len(frames) + 1)):
        raise InvalidArchive(f"instance {source.sop_uid} has gaps in its frame numbers")
    for uri in _bulk_uris(source.metadata):
        if not isinstance(uri, str) or not (
            uri == f"{base}/frames" or uri.startswith(f"{base}/bulkdata/")
        ):
            raise InvalidArchive(f"instance {source.sop_uid} has a foreign BulkDataURI")
        if uri == f"{base}/frames":
            if not frames:
                raise InvalidArchive(f"instance {source.sop_uid} lacks its frames")
        elif uri not in present:
            raise InvalidArchive(f"instance {source.sop_uid} lacks {uri}")


def _check_contents(
    archive: zipfile.ZipFile,
    entries: list[tuple[zipfile.ZipInfo, EntryName]],
    limits: ArchiveLimits,
) -> None:
    """Read every part file: zipfile checks each CRC; part files must parse.

    The metadata entry is not read again: reading it for the metadata checked its CRC.
    Inflating the parts is most of a validation, and zlib and crc32 release the GIL,
    so two threads share the work (ZipFile serialises only the raw reads).
    """
    parts = [info for info, name in entries if not name.is_metadata]
    with ThreadPoolExecutor(_CHECK_THREADS, thread_name_prefix="zip-check") as workers:
        shares = [parts[start::_CHECK_THREADS] for start in range(_CHECK_THREADS)]
        limit = limits.max_instance_bytes
        for _ in workers.map(lambda share: _check_parts(archive, share, limit), shares):
            pass


def _check_parts(archive: zipfile.ZipFile, parts: list[zipfile.ZipInfo], limit: int) -> None:
    for info in parts:
        try:
            if is_p10_layout_entry(info.filename):
                # A layout is a few KiB: read whole, it must parse.
                data = b"".join(_streamed(archive, info, limit))
                _check_layout(info, unwrap(data).payload)
            else:
                _check_part_stream(_streamed(archive, info, limit))
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            log.warning("received entry %s is damaged: %s", info.filename, exc)
            raise InvalidArchive(f"entry {info.filename} is damaged ({_damage(exc)})") from exc
        except ArchiveTooLarge as exc:
            raise ArchiveTooLarge(f"entry {info.filename}: {exc.message}") from exc
        except StorageError as exc:
            raise InvalidArchive(f"entry {info.filename}: {exc.message}") from exc


def _streamed(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> Iterator[bytes]:
    if info.compress_type == zipfile.ZIP_DEFLATED and info.file_size <= min(limit, _WHOLE_ENTRY):
        # Inflated whole by ISA-L, never past its declared size, CRC and size checked
        # (storage.inflate): 2-3x zlib's speed on what is most of a peer ZIP's check.
        yield read_entry(archive, info)
        return
    with archive.open(info) as stream:
        yield from read_bounded(stream, limit, "the entry")


def _check_part_stream(chunks: Iterator[bytes]) -> None:
    """What :func:`unwrap` checks, on a part read chunk by chunk (zipfile checks the CRC
    at its end): a frame is never held whole, however large it is."""
    head = tail = b""
    size = 0
    for chunk in chunks:
        if len(head) < _PART_HEAD:
            head += chunk[: _PART_HEAD - len(head)]
        tail = (tail + chunk[-_PART_TAIL:])[-_PART_TAIL:]
        size += len(chunk)
    if size <= len(head):  # small enough to be checked whole
        unwrap(head)
        return
    try:
        header_end = head.index(b"\r\n\r\n")
    except ValueError:
        raise StorageError("stored part has no multipart header") from None
    boundary_line = head[: head.index(b"\r\n")]
    if not boundary_line.startswith(b"--"):
        raise StorageError("stored part does not start with a boundary")
    closing = b"\r\n" + boundary_line + b"--\r\n"
    if not tail.endswith(closing) or size < header_end + 4 + len(closing):
        raise StorageError("stored part does not end with its closing boundary")


def _damage(exc: BaseException) -> str:
    """The kind of damage, in words of our own (zipfile's and zlib's texts stay in the log)."""
    text = str(exc)
    if "CRC" in text:
        return "CRC mismatch"
    if isinstance(exc, EOFError) or "truncated" in text.lower() or "end" in text.lower():
        return "truncated"
    return "bad compressed data"


def _check_layout(info: zipfile.ZipInfo, payload: bytes) -> None:
    """A layout must parse, and what its comment repeats (the file size the index
    counts) must be the layout's; its references are checked when it is read."""
    layout = decode_layout(payload)
    if info.comment and info.comment != layout_comment(layout):
        raise StorageError("its comment does not match the layout")
