"""The storage backend contract (``storage/backends/base.py``), run against every backend
(``conftest.BACKENDS``): what the store relies on, whatever keeps the ZIPs."""

from __future__ import annotations

import io
import random
import shutil
import threading
import zipfile
from collections.abc import Callable, Iterator
from typing import BinaryIO

import pytest

from pacsnode.storage.backends.base import SealedBackend, SealedBlob
from pacsnode.storage.errors import InvalidUid
from pacsnode.storage.inflate import read_entry
from tests.storage.backends.conftest import Place

A, B = "1.2.826.0.1.3680043.10.1", "1.2.826.0.1.3680043.10.2"


def study_zip(seed: int, large: int = 0) -> bytes:
    """A ZIP like a study's: deflated and stored entries, small and large (past the
    backends' block sizes), and ``large`` bytes more in one stored entry."""
    rng = random.Random(seed)
    buffer = io.BytesIO()

    def entry(name: str, kind: int) -> zipfile.ZipInfo:
        # a fixed time: the same seed gives the same bytes whenever it is called
        info = zipfile.ZipInfo(name, date_time=(2000, 1, 1, 0, 0, 0))
        info.compress_type = kind
        return info

    with zipfile.ZipFile(buffer, "w") as archive:
        for number in range(40):
            size = rng.choice([10, 700, 5_000, 70_000, 200_000])
            stored = number % 3 == 0
            data = rng.randbytes(size) if stored else bytes([number]) * size
            kind = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
            archive.writestr(entry(f"studies/x/series/y/instances/{number}/frames/1", kind), data)
        if large:
            archive.writestr(entry("studies/x/large", zipfile.ZIP_STORED), rng.randbytes(large))
    return buffer.getvalue()


def filler(data: bytes) -> Callable[[BinaryIO], None]:
    return lambda handle: handle.write(data)


@pytest.fixture
def backend(place: Place) -> Iterator[SealedBackend]:
    opened = place.build()
    opened.open()
    yield opened
    opened.close()


def read_all(backend: SealedBackend, study_uid: str) -> bytes:
    with backend.get(study_uid) as blob:
        return blob.read()


def test_it_is_a_backend(backend: SealedBackend) -> None:
    assert isinstance(backend, SealedBackend)
    assert isinstance(backend.name, str) and backend.name


def test_a_put_zip_reads_back_whole_and_by_zipfile(backend: SealedBackend) -> None:
    data = study_zip(1)
    backend.put(A, filler(data))
    assert read_all(backend, A) == data
    with backend.get(A) as blob, zipfile.ZipFile(blob) as archive:
        assert isinstance(blob, SealedBlob)
        assert archive.testzip() is None
        expected = zipfile.ZipFile(io.BytesIO(data))
        for info in archive.infolist():
            assert read_entry(archive, info) == expected.read(info.filename)


def test_version_size_and_listing_follow_puts_replaces_and_deletes(
    backend: SealedBackend,
) -> None:
    assert backend.version(A) is None and backend.size(A) is None
    assert list(backend.study_uids()) == []
    first, second = study_zip(1), study_zip(2)
    backend.put(A, filler(first))
    backend.put(B, filler(first))
    assert sorted(backend.study_uids()) == [A, B]
    assert backend.size(A) == len(first)
    before = backend.version(A)
    assert before is not None and backend.version(A) == before  # stable while unchanged
    backend.put(A, filler(second))
    assert backend.version(A) != before
    assert backend.size(A) == len(second)
    assert read_all(backend, A) == second
    assert backend.delete(A) is True
    assert backend.version(A) is None and backend.size(A) is None
    assert list(backend.study_uids()) == [B]
    assert backend.delete(A) is False
    assert read_all(backend, B) == first


def test_a_missing_study_is_not_found(backend: SealedBackend) -> None:
    with pytest.raises(FileNotFoundError):
        backend.get(A)
    with pytest.raises(FileNotFoundError):
        backend.read_range(A, 0, 10)
    assert backend.delete(A) is False
    assert backend.version(A) is None and backend.size(A) is None


EDGES = [
    (0, 0),
    (0, 1),
    (0, 22),
    (1, 65_535),
    (65_535, 2),
    (65_536, 65_536),
    (131_071, 3),
    (100_000, 300_000),
    (-1, 1),  # the last byte (offsets from the end are resolved by the test)
    (-1, 100),
    (-22, 22),
    (-70_000, 70_000),
    (0, None),  # the whole ZIP
    (None, 1),  # at the end: nothing
    (None, 0),
    (5_000_000, 10),  # past the end: nothing
]


def _resolve(total: int, offset: int | None, size: int | None) -> tuple[int, int]:
    start = total if offset is None else (total + offset if offset < 0 else offset)
    return start, total if size is None else size


@pytest.mark.parametrize(("offset", "size"), EDGES)
def test_read_range_and_pread_at_the_edges(
    backend: SealedBackend, offset: int | None, size: int | None
) -> None:
    data = study_zip(3)
    backend.put(A, filler(data))
    start, count = _resolve(len(data), offset, size)
    expected = data[start : start + count]
    assert backend.read_range(A, start, count) == expected
    with backend.get(A) as blob:
        assert blob.pread(count, start) == expected
        with blob.reopen() as again:
            assert again.pread(count, start) == expected
        blob.seek(start)
        assert blob.read(count) == expected
        assert blob.tell() == start + len(expected)


def test_a_blob_is_a_seekable_file(backend: SealedBackend) -> None:
    data = study_zip(4)
    backend.put(A, filler(data))
    with backend.get(A) as blob:
        assert blob.seekable()
        assert blob.seek(0, io.SEEK_END) == len(data)
        assert blob.read(10) == b""
        assert blob.seek(-22, io.SEEK_END) == len(data) - 22
        assert blob.read() == data[-22:]
        assert blob.seek(100) == 100
        assert blob.seek(50, io.SEEK_CUR) == 150
        assert blob.read(0) == b""
        assert blob.read(1000) == data[150:1150]
        with pytest.raises((OSError, ValueError)):
            blob.seek(-1)
        # reopen: the same bytes, a position of its own
        with blob.reopen() as again:
            assert again.tell() == 0
            assert again.read(100) == data[:100]
        assert blob.tell() == 1150
        assert not blob.closed
    assert blob.closed


def test_a_zip_streamed_in_chunks_reads_whole(backend: SealedBackend) -> None:
    data = study_zip(5, large=11 << 20)  # several upload parts where an upload has them
    backend.put(A, filler(data))
    copy = io.BytesIO()
    with backend.get(A) as blob:
        shutil.copyfileobj(blob, copy, 64 << 10)  # as a peer transfer reads it
    assert copy.getvalue() == data
    with backend.get(A) as blob, zipfile.ZipFile(blob) as archive:
        assert archive.read("studies/x/large") == zipfile.ZipFile(io.BytesIO(data)).read(
            "studies/x/large"
        )


def test_a_blob_keeps_reading_its_version_after_a_replace(backend: SealedBackend) -> None:
    old, new = study_zip(6), study_zip(7)
    backend.put(A, filler(old))
    blob = backend.get(A)
    try:
        head = blob.read(1000)
        archive = zipfile.ZipFile(blob)
        backend.put(A, filler(new))
        assert read_all(backend, A) == new
        assert archive.testzip() is None
        assert blob.pread(len(old), 0) == old
        blob.seek(1000)
        assert head + blob.read() == old
        with blob.reopen() as again:
            assert again.read() == old
    finally:
        blob.close()
    assert read_all(backend, A) == new


def test_a_put_that_fails_while_filling_leaves_the_old_zip(backend: SealedBackend) -> None:
    old = study_zip(8)
    backend.put(A, filler(old))
    version = backend.version(A)

    def failing(handle: BinaryIO) -> None:
        handle.write(study_zip(9)[:50_000])
        raise RuntimeError("the seal failed half-way")

    with pytest.raises(RuntimeError, match="half-way"):
        backend.put(A, failing)
    assert backend.version(A) == version
    assert read_all(backend, A) == old
    with pytest.raises(RuntimeError):
        backend.put(B, failing)
    assert backend.version(B) is None
    assert sorted(backend.study_uids()) == [A]


def test_concurrent_preads_and_entry_reads(backend: SealedBackend) -> None:
    data = study_zip(10)
    backend.put(A, filler(data))
    expected = zipfile.ZipFile(io.BytesIO(data))
    failures: list[BaseException] = []
    with backend.get(A) as blob, zipfile.ZipFile(blob) as archive:

        def reader(seed: int) -> None:
            rng = random.Random(seed)
            try:
                for _ in range(60):
                    offset = rng.randrange(len(data))
                    size = rng.choice([1, 30, 4_000, 70_000, 250_000])
                    assert blob.pread(size, offset) == data[offset : offset + size]
                    info = rng.choice(archive.infolist())
                    assert read_entry(archive, info) == expected.read(info.filename)
            except BaseException as exc:
                failures.append(exc)

        threads = [threading.Thread(target=reader, args=(seed,)) for seed in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not failures, failures[0]


INVALID_UIDS = ["", "../1.2", "1.2/3", "1.2.abc", "1..2", "1.02", "1" * 65, " 1.2"]


@pytest.mark.parametrize("uid", INVALID_UIDS)
def test_invalid_study_uids_are_refused(backend: SealedBackend, uid: str) -> None:
    calls: list[Callable[[], object]] = [
        lambda: backend.put(uid, filler(study_zip(1))),
        lambda: backend.get(uid),
        lambda: backend.read_range(uid, 0, 10),
        lambda: backend.version(uid),
        lambda: backend.size(uid),
        lambda: backend.delete(uid),
    ]
    for call in calls:
        with pytest.raises(InvalidUid):
            call()
    assert list(backend.study_uids()) == []


def test_a_new_backend_on_the_same_place_finds_every_study(
    place: Place, backend: SealedBackend
) -> None:
    first, second = study_zip(11), study_zip(12)
    backend.put(A, filler(first))
    backend.put(B, filler(first))
    backend.put(A, filler(second))
    versions = {uid: backend.version(uid) for uid in (A, B)}
    backend.close()
    again = place.build()
    again.open()
    try:
        assert sorted(again.study_uids()) == [A, B]
        assert {uid: again.version(uid) for uid in (A, B)} == versions
        assert again.size(A) == len(second)
        assert read_all(again, A) == second
        assert read_all(again, B) == first
    finally:
        again.close()
