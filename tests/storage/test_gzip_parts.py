"""A deflated ZIP entry sent as a gzip body: the same bytes, readable by any gzip reader."""

from __future__ import annotations

import gzip
import io
import zipfile
from pathlib import Path

from pacsnode.storage.gzip_parts import parse_head, read_deflated_part
from pacsnode.storage.multipart import wrap


def _zip_with(path: Path, name: str, data: bytes, method: int) -> zipfile.ZipInfo:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("first", b"x" * 100)
        archive.writestr(zipfile.ZipInfo(name), data, compress_type=method)
    with zipfile.ZipFile(path) as archive:
        return archive.getinfo(name)


def test_the_stored_deflate_stream_is_a_gzip_body(tmp_path: Path):
    part = wrap(bytes(range(256)) * 300, "application/octet-stream", "1.2.840.10008.1.2.1")
    info = _zip_with(tmp_path / "a.zip", "frames/1", part, zipfile.ZIP_DEFLATED)
    deflated = read_deflated_part(zipfile.ZipFile(tmp_path / "a.zip"), info)
    assert deflated is not None
    assert gzip.GzipFile(fileobj=io.BytesIO(deflated.gzip_body)).read() == part
    assert deflated.media_type == "application/octet-stream"
    assert deflated.transfer_syntax == "1.2.840.10008.1.2.1"
    assert part.startswith(f"--{deflated.boundary}\r\n".encode())


def test_stored_entries_and_rewritten_files_are_read_the_usual_way(tmp_path: Path):
    part = wrap(b"jpeg bytes", "image/jpeg", "1.2.840.10008.1.2.4.50")
    info = _zip_with(tmp_path / "a.zip", "frames/1", part, zipfile.ZIP_STORED)
    assert read_deflated_part(zipfile.ZipFile(tmp_path / "a.zip"), info) is None
    deflated = _zip_with(tmp_path / "b.zip", "frames/1", part, zipfile.ZIP_DEFLATED)
    _zip_with(tmp_path / "b.zip", "frames/2", part, zipfile.ZIP_DEFLATED)  # rewritten since
    moved = zipfile.ZipInfo("frames/1")
    moved.compress_type, moved.header_offset = zipfile.ZIP_DEFLATED, deflated.header_offset
    moved.compress_size = deflated.compress_size
    assert read_deflated_part(zipfile.ZipFile(tmp_path / "b.zip"), moved) is None
    assert parse_head(b"no boundary here") is None
