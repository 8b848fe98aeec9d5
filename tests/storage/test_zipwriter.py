"""The raw-copy ZIP writer against Python's reader and Info-ZIP's unzip."""

from __future__ import annotations

import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from pacsnode.storage.zipwriter import ZipWriter


def write(path: Path, entries: dict[str, bytes], level: int | None = 6) -> None:
    with open(path, "wb") as handle:
        writer = ZipWriter(handle)
        for name, data in entries.items():
            writer.add(name, data, level)
        writer.close()


def test_entries_read_back_and_copy_raw(tmp_path: Path) -> None:
    entries = {"a/compressible": b"abc" * 10_000, "b/random": bytes(range(256)) * 3, "c/empty": b""}
    first = tmp_path / "first.zip"
    write(first, entries)
    copy = tmp_path / "copy.zip"
    with zipfile.ZipFile(first) as source, open(first, "rb") as raw, open(copy, "wb") as handle:
        assert source.getinfo("a/compressible").compress_type == zipfile.ZIP_DEFLATED
        writer = ZipWriter(handle)
        for info in source.infolist():
            writer.copy(raw, info)
        writer.close()
    assert copy.read_bytes() == first.read_bytes()
    with zipfile.ZipFile(copy) as archive:
        assert archive.testzip() is None
        assert {name: archive.read(name) for name in archive.namelist()} == entries


def test_duplicate_names_are_refused(tmp_path: Path) -> None:
    with open(tmp_path / "x.zip", "wb") as handle:
        writer = ZipWriter(handle)
        writer.add("same", b"1", None)
        with pytest.raises(ValueError, match="duplicate"):
            writer.add("same", b"2", None)


def test_zip64_when_entry_count_exceeds_65535(tmp_path: Path) -> None:
    path = tmp_path / "many.zip"
    count = 70_000
    write(path, {f"e/{index}": b"%d" % index for index in range(count)}, level=None)
    with zipfile.ZipFile(path) as archive:
        assert len(archive.infolist()) == count
        assert archive.read("e/69999") == b"69999"
    if shutil.which("unzip"):
        result = subprocess.run(["unzip", "-tqq", str(path)], capture_output=True)
        assert result.returncode == 0, result.stderr
