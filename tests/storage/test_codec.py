"""Deflating with the fastest library (storage/codec.py) and reading entries back
(storage/inflate.py): plain raw deflate, and the same bytes and the same refusals as
``ZipFile.read``, from a file or from memory."""

from __future__ import annotations

import io
import os
import zipfile
import zlib
from pathlib import Path

import pytest

from pacsnode.storage import codec
from pacsnode.storage.inflate import read_entry

PAYLOAD = (bytes(range(256)) * 2048) + os.urandom(64 * 1024)  # compressible, then not


def _archive(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("deflated", PAYLOAD, compress_type=zipfile.ZIP_DEFLATED)
        archive.writestr("stored", PAYLOAD[:1000], compress_type=zipfile.ZIP_STORED)
        archive.writestr("empty", b"", compress_type=zipfile.ZIP_DEFLATED)


def test_entries_read_as_zipfile_reads_them(tmp_path: Path) -> None:
    path = tmp_path / "a.zip"
    _archive(path)
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            assert read_entry(archive, info) == archive.read(info)


def test_an_archive_in_memory_is_read_too(tmp_path: Path) -> None:
    path = tmp_path / "a.zip"
    _archive(path)
    with zipfile.ZipFile(io.BytesIO(path.read_bytes())) as archive:
        assert read_entry(archive, archive.getinfo("deflated")) == PAYLOAD


def test_zlib_inflates_the_same_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without isal installed, zlib does the work: the bytes do not depend on the inflater."""
    path = tmp_path / "a.zip"
    _archive(path)
    monkeypatch.setattr(codec, "_library", zlib)
    with zipfile.ZipFile(path) as archive:
        assert read_entry(archive, archive.getinfo("deflated")) == PAYLOAD


def _damage(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_damaged_entry_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "a.zip"
    _archive(path)
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("deflated")
    _damage(path, info.header_offset + 30 + len("deflated") + info.compress_size // 2)
    with zipfile.ZipFile(path) as archive, pytest.raises(zipfile.BadZipFile):
        read_entry(archive, archive.getinfo("deflated"))


def test_a_truncated_archive_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "a.zip"
    _archive(path)
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("deflated")
        with open(path, "r+b") as handle:  # cut the entry short under the open archive
            handle.truncate(info.header_offset + 30 + len("deflated") + 100)
        with pytest.raises(zipfile.BadZipFile):
            read_entry(archive, info)


@pytest.mark.parametrize("level", range(1, 10))
def test_what_is_deflated_any_zip_reader_inflates(level: int) -> None:
    """ISA-L's deflate at every configured level is plain raw deflate: zlib inflates it,
    with the same CRC-32 from either library."""
    compressed = codec.deflate(PAYLOAD, level)
    assert len(compressed) < len(PAYLOAD)
    assert zlib.decompressobj(-15).decompress(compressed) == PAYLOAD
    assert codec.crc32(PAYLOAD) == zlib.crc32(PAYLOAD)


@pytest.mark.parametrize("level", range(6, 10))
def test_levels_for_the_smallest_files_are_zlibs_own(level: int) -> None:
    compressor = zlib.compressobj(level, zlib.DEFLATED, -15)
    assert codec.deflate(PAYLOAD, level) == compressor.compress(PAYLOAD) + compressor.flush()
