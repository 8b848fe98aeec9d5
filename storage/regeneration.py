"""Reading an instance's payloads back and rebuilding it as a Dataset or DICOM P10."""

from __future__ import annotations

import io
import zipfile
import zlib
from collections.abc import Callable

from pydicom.dataset import Dataset

from pacsnode.storage.archive import InstanceSource
from pacsnode.storage.convert import build_dataset, write_p10
from pacsnode.storage.errors import StorageError
from pacsnode.storage.fidelity import assemble
from pacsnode.storage.layout import bulk_entry
from pacsnode.storage.multipart import Part, unwrap


def read_part_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> Part:
    """A stored part; damage on disk (bad CRC, broken deflate) is a StorageError."""
    try:
        return unwrap(archive.read(info))
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        raise StorageError(f"{info.filename} is damaged on disk: {exc}") from exc


def frame_infos(source: InstanceSource) -> list[zipfile.ZipInfo]:
    frames = [info for info in source.entries if "/frames/" in info.filename]
    return sorted(frames, key=lambda info: int(info.filename.rsplit("/", 1)[1]))


def _readers(
    source: InstanceSource, archive: zipfile.ZipFile
) -> tuple[Callable[[], list[bytes]], Callable[[str], bytes]]:
    """Readers of the instance's frames (all at once) and of one bulk value by key."""

    def frames() -> list[bytes]:
        return [read_part_entry(archive, info).payload for info in frame_infos(source)]

    def bulk(key: str) -> bytes:
        name = bulk_entry(source.study_uid, source.series_uid, source.sop_uid, key)
        for info in source.entries:
            if info.filename == name:
                return read_part_entry(archive, info).payload
        raise StorageError(f"instance {source.sop_uid} lacks bulk data {key}")

    return frames, bulk


def dataset_of(source: InstanceSource) -> Dataset:
    """The instance rebuilt as a pydicom Dataset with its file meta, payloads read in."""
    with source.opened() as archive:
        try:
            return build_dataset(source.metadata, *_readers(source, archive))
        except (ValueError, TypeError, KeyError, NotImplementedError) as exc:
            raise StorageError(f"instance {source.sop_uid} cannot be rebuilt: {exc}") from exc


def p10_of(source: InstanceSource) -> bytes:
    """The instance's file: as it came when its layout is kept, else regenerated."""
    layout = source.p10_layout()
    if layout is not None:
        with source.opened() as archive:
            return assemble(layout, *_readers(source, archive))
    dataset = dataset_of(source)
    buffer = io.BytesIO()
    try:
        write_p10(dataset, buffer)
    except (ValueError, TypeError, KeyError, NotImplementedError) as exc:
        raise StorageError(f"instance {source.sop_uid} cannot be written as P10: {exc}") from exc
    return buffer.getvalue()
