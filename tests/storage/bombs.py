"""ZIP bombs for the limit tests, written chunk by chunk so that making one costs the test
process no more memory than a chunk, however far the bomb inflates."""

from __future__ import annotations

import io
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomFileLike
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import DeflatedExplicitVRLittleEndian

from pacsnode.storage.multipart import OCTET_STREAM

MiB = 1 << 20
_CHUNK = MiB


def _repeated(byte: bytes, size: int) -> Iterator[bytes]:
    block = byte * _CHUNK
    for start in range(0, size, _CHUNK):
        yield block[: min(_CHUNK, size - start)]


def zip_member_bomb(path: Path, size: int, before: dict[str, bytes] | None = None) -> Path:
    """A ZIP holding ``before`` (name -> bytes), then ``bomb.dcm``: ``size`` zero bytes,
    deflated (about a thousandth of that on disk)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in (before or {}).items():
            archive.writestr(name, data)
        with archive.open("bomb.dcm", "w", force_zip64=True) as member:
            for chunk in _repeated(b"\0", size):
                member.write(chunk)
    return path


def gzip_of_chunks(chunks: Iterator[bytes]) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    return b"".join([*(packer.compress(chunk) for chunk in chunks), packer.flush()])


def whitespace_metadata(original_gzip: bytes, padding: int) -> bytes:
    """The study metadata gzip, its JSON followed by ``padding`` spaces: still valid JSON."""
    document = zlib.decompress(original_gzip, 31)
    return gzip_of_chunks(iter([document, *_repeated(b" ", padding)]))


def big_frame_chunks(size: int, boundary: str = "bomb") -> Iterator[bytes]:
    """A part file (as :func:`storage.multipart.wrap` writes one) of ``size`` zero bytes."""
    yield f"--{boundary}\r\nContent-Type: {OCTET_STREAM}\r\n\r\n".encode()
    yield from _repeated(b"\0", size)
    yield f"\r\n--{boundary}--\r\n".encode()


Edit = Callable[[str, bytes], Iterator[bytes] | bytes | None]


def rewrite_study_zip(source: Path, target: Path, edit: Edit) -> Path:
    """Copy a study ZIP entry by entry; ``edit(name, data)`` gives the entry's new content
    (bytes, or chunks written as they come), or ``None`` to keep it."""
    with zipfile.ZipFile(source) as archive, zipfile.ZipFile(target, "w") as out:
        for info in archive.infolist():
            data = archive.read(info)
            new = edit(info.filename, data)
            kind = info.compress_type
            if new is None:
                out.writestr(info.filename, data, kind)
            elif isinstance(new, bytes):
                out.writestr(info.filename, new, kind)
            else:
                entry = zipfile.ZipInfo(info.filename)
                entry.compress_type = kind
                with out.open(entry, "w", force_zip64=True) as handle:
                    for chunk in new:
                        handle.write(chunk)
    return target


def deflated_p10_bomb(path: Path, dataset: Dataset, pixel_bytes: int) -> Path:
    """``dataset`` as a P10 file in the deflated syntax, its Pixel Data ``pixel_bytes``
    zeros: a few hundred KiB on disk that pydicom would inflate whole."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = dataset.SOPClassUID
    meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    meta.ImplementationClassUID = "1.2.3.4"
    body = io.BytesIO()
    without_pixels = dataset.copy()
    del without_pixels.PixelData
    writer = DicomFileLike(body)
    writer.is_implicit_VR, writer.is_little_endian = False, True
    write_dataset(writer, without_pixels)
    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    with open(path, "wb") as handle:
        handle.write(b"\0" * 128 + b"DICM")
        write_file_meta_info(DicomFileLike(handle), meta)
        handle.write(packer.compress(body.getvalue()))
        handle.write(packer.compress(b"\xe0\x7f\x10\x00OB\0\0" + pixel_bytes.to_bytes(4, "little")))
        for chunk in _repeated(b"\0", pixel_bytes):
            handle.write(packer.compress(chunk))
        handle.write(packer.flush())
    return path
