"""Attachment blobs with Orthanc's semantics: sizes, MD5s, optional compression."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from pacsnode.storage.attachments import AttachmentStore
from pacsnode.storage.errors import InvalidAttachmentId, NotFound


@pytest.fixture
def blobs(tmp_path: Path) -> AttachmentStore:
    return AttachmentStore(tmp_path)


def test_plain_blob(blobs: AttachmentStore) -> None:
    info = blobs.put(b"report text")
    assert (info.size, info.compressed_size) == (11, 11)
    assert info.md5 == info.compressed_md5 == hashlib.md5(b"report text").hexdigest()
    assert blobs.get(info.id, compressed=False) == b"report text"
    assert blobs.verify(info)


def test_compressed_blob(blobs: AttachmentStore) -> None:
    data = b"a" * 100_000
    info = blobs.put(data, compress=True)
    assert info.size == 100_000 and info.compressed_size < 1_000
    assert info.md5 == hashlib.md5(data).hexdigest() != info.compressed_md5
    assert blobs.get(info.id, compressed=True) == data
    raw = blobs.get(info.id, compressed=True, raw=True)
    assert hashlib.md5(raw).hexdigest() == info.compressed_md5


def test_delete_and_missing(blobs: AttachmentStore) -> None:
    info = blobs.put(b"x")
    assert blobs.delete(info.id)
    assert not blobs.delete(info.id)
    with pytest.raises(NotFound):
        blobs.get(info.id, compressed=False)


def test_damaged_blob_fails_verification(blobs: AttachmentStore, tmp_path: Path) -> None:
    info = blobs.put(b"precious")
    path = tmp_path / "attachments" / info.id[:2] / info.id
    path.write_bytes(b"tampered")
    assert not blobs.verify(info)


@pytest.mark.parametrize("bad", ["../../etc/passwd", "ABC", "0" * 31, "g" * 32])
def test_hostile_ids_are_refused(blobs: AttachmentStore, bad: str) -> None:
    with pytest.raises(InvalidAttachmentId):
        blobs.get(bad, compressed=False)
    with pytest.raises(InvalidAttachmentId):
        blobs.put(b"x", attachment_id=bad)


def test_recover_removes_leftover_temp_files(blobs: AttachmentStore, tmp_path: Path) -> None:
    info = blobs.put(b"x")
    leftover = tmp_path / "attachments" / info.id[:2] / f".{info.id}.abc.tmp"
    leftover.write_bytes(b"half")
    assert blobs.recover() == 1
    assert not leftover.exists()
    assert blobs.get(info.id, compressed=False) == b"x"
