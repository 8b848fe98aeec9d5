"""What the ``s3`` backend does beyond the contract: its keys, what a crash leaves, its
caches, its spool, and a server that is down, against a real SeaweedFS."""

from __future__ import annotations

import io
import os
import re
import stat
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pytest

from pacsnode.storage.backends.base import SealedBackend
from pacsnode.storage.backends.s3 import S3Backend, s3_backend
from pacsnode.storage.errors import BackendUnavailable
from tests.s3_server import BUCKET, SeaweedFS, unique_prefix
from tests.storage.backends.test_contract import A, B, filler, read_all, study_zip


@pytest.fixture
def settings(seaweedfs: SeaweedFS) -> dict[str, object]:
    return seaweedfs.settings(BUCKET, unique_prefix())


@pytest.fixture
def backend(settings: dict[str, object], tmp_path: Path) -> Iterator[S3Backend]:
    opened = s3_backend(settings, tmp_path)
    opened.open()
    yield opened
    opened.close()


def keys(backend: S3Backend) -> list[str]:
    return sorted(info.key for info in backend.client.list(backend.settings.prefix))


def test_one_object_per_study_named_by_its_uid(backend: S3Backend) -> None:
    backend.put(A, filler(study_zip(1)))
    backend.put(A, filler(study_zip(2)))
    prefix = re.escape(backend.settings.prefix)
    (key,) = keys(backend)  # the replaced version went, nobody was reading it
    assert re.fullmatch(rf"{prefix}studies/{re.escape(A)}/[0-9a-f]{{16}}\.zip", key)


def test_a_replaced_version_goes_when_its_last_reader_closes(backend: S3Backend) -> None:
    backend.put(A, filler(study_zip(1)))
    blob = backend.get(A)
    again = blob.reopen()
    backend.put(A, filler(study_zip(2)))
    assert len(keys(backend)) == 2  # kept for its readers
    blob.close()
    backend.put(B, filler(study_zip(3)))  # removals are made by writes
    assert len(keys(backend)) == 3
    del again  # collected: closed by the garbage collector, like a dropped ZipFile
    backend.close()
    assert len(keys(backend)) == 2


def test_a_blob_of_a_deleted_study_says_not_found(backend: S3Backend) -> None:
    backend.put(A, filler(study_zip(1)))
    with backend.get(A) as blob:
        backend.delete(A)
        with pytest.raises(FileNotFoundError):
            blob.pread(10, 100_000)
    assert keys(backend) == []


def test_what_a_crash_left_is_resolved_at_open(
    backend: S3Backend, settings: dict[str, object], tmp_path: Path
) -> None:
    """Older generations (a put whose removal of the old one did not happen) go; the
    newest wins, also one uploaded by a put whose answer was lost."""
    backend.put(A, filler(study_zip(1)))
    reader = backend.get(A)  # keeps the first version in the bucket
    backend.put(A, filler(study_zip(2)))
    newest = study_zip(3)
    generation = int(keys(backend)[-1].rsplit("/", 1)[1][:16], 16) + 1
    lost = tmp_path / "lost.zip"
    lost.write_bytes(newest)
    backend.client.put_file(backend.key(A, generation), lost)
    assert len(keys(backend)) == 3
    # A crash: this backend is never closed; another opens the same prefix.
    restarted = s3_backend(settings, tmp_path / "restarted")
    restarted.open()
    try:
        assert keys(restarted) == [restarted.key(A, generation)]
        assert read_all(restarted, A) == newest
    finally:
        restarted.close()
        reader.close()


def test_the_spool_is_private_and_emptied(backend: S3Backend, tmp_path: Path) -> None:
    spool = tmp_path / "s3-spool"
    assert stat.S_IMODE(spool.stat().st_mode) == 0o700
    modes: list[int] = []

    def watching(handle: io.BufferedWriter) -> None:
        modes.append(stat.S_IMODE(os.fstat(handle.fileno()).st_mode))
        handle.write(study_zip(1))

    backend.put(A, watching)  # type: ignore[arg-type]
    assert modes == [0o600]
    assert list(spool.iterdir()) == []
    (spool / "tmp123.zip").write_bytes(b"left by a crash")
    backend.close()
    backend.open()
    assert list(spool.iterdir()) == []


def test_the_end_of_a_zip_is_read_once_and_a_large_entry_in_one_request(
    backend: S3Backend,
) -> None:
    backend.put(A, filler(study_zip(1, large=1 << 20)))
    counters = backend.client.counters
    with backend.get(A) as blob:
        zipfile.ZipFile(blob)
    first = counters.gets
    with backend.get(A) as blob:
        archive = zipfile.ZipFile(blob)
        assert counters.gets == first  # the blocks of the central directory were kept
        info = archive.getinfo("studies/x/large")
        start = counters.gets
        archive.read(info)
        assert counters.gets - start <= 2  # its local header's block, then its bytes


def test_the_local_cache_serves_recent_studies_and_drops_replaced_ones(
    settings: dict[str, object], tmp_path: Path
) -> None:
    backend = s3_backend({**settings, "cache_mb": 4}, tmp_path)
    backend.open()
    cache = tmp_path / "s3-cache"
    try:
        data = study_zip(1)
        backend.put(A, filler(data))
        gets = backend.client.counters.gets
        with backend.get(A) as blob:
            assert Path(blob.name).parent == cache
            assert blob.read() == data
        assert backend.client.counters.gets == gets
        backend.put(A, filler(study_zip(2)))
        assert len(list(cache.glob("*.zip"))) == 1
        backend.put(B, filler(study_zip(3, large=3 << 20)))  # past the limit: evicts A
        assert len(list(cache.glob("*.zip"))) == 1
        with backend.get(A) as blob:  # small: copied whole again on first read
            assert Path(blob.name).parent == cache
            assert blob.read() == study_zip(2)
    finally:
        backend.close()
    again = s3_backend({**settings, "cache_mb": 4}, tmp_path)
    again.open()  # a clean close: the copies are kept
    assert len(list(cache.glob("*.zip"))) == 1
    # no close (a crash): the next start trusts none of them
    crashed = s3_backend({**settings, "cache_mb": 4}, tmp_path)
    crashed.open()
    assert list(cache.glob("*.zip")) == []
    crashed.close()


def test_a_server_that_does_not_answer_is_unavailable(
    settings: dict[str, object], tmp_path: Path
) -> None:
    from tests.node.server import free_port

    closed = {**settings, "endpoint": f"http://127.0.0.1:{free_port()}", "retries": 0}
    started = time.monotonic()
    with pytest.raises(
        BackendUnavailable, match=re.escape("bucket 'pacsnode-tests' at http://127.0.0.1")
    ):
        s3_backend(closed, tmp_path).open()
    assert time.monotonic() - started < 10


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"secret_key": "wrong"}, "refused the credentials"),
        ({"bucket": "no-such-bucket"}, "bucket 'no-such-bucket' .* no such bucket"),
    ],
)
def test_wrong_credentials_or_bucket_stop_the_open(
    settings: dict[str, object], tmp_path: Path, change: dict[str, str], message: str
) -> None:
    with pytest.raises(BackendUnavailable, match=message):
        s3_backend({**settings, **change, "retries": 0}, tmp_path).open()


def test_obstore_is_imported_only_by_an_s3_backend() -> None:
    code = (
        "import sys; import pacsnode.storage.store, pacsnode.storage.backends.s3;"
        "assert 'obstore' not in sys.modules, 'imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.e2e
def test_a_server_down_then_back(tmp_path: Path) -> None:
    """Requests while the server is down fail as BackendUnavailable and change nothing;
    once it is back, everything reads, and a restarted backend sees the same studies."""
    server = SeaweedFS(tmp_path / "weed").start()
    try:
        server.create_bucket(BUCKET)
        settings = server.settings(BUCKET, "down/", retries=0, timeout_s=5)
        backend: SealedBackend = s3_backend(settings, tmp_path / "data")
        backend.open()
        data = study_zip(1)
        backend.put(A, filler(data))
        version = backend.version(A)
        blob = backend.get(A)
        server.stop()
        assert backend.version(A) == version  # known without asking
        with pytest.raises(BackendUnavailable):
            blob.pread(100, 1000)
        spooled: list[int] = []

        def counting(handle: BinaryIO) -> None:
            spooled.append(1)
            handle.write(study_zip(2))

        with pytest.raises(BackendUnavailable):
            backend.put(A, counting)
        assert spooled == []  # known to be down: not spooled only to fail (seals retry)
        with pytest.raises(BackendUnavailable):
            backend.delete(A)
        with pytest.raises(BackendUnavailable):
            list(backend.study_uids())
        server.start()
        assert blob.pread(100, 1000) == data[1000:1100]
        blob.close()
        assert read_all(backend, A) == data
        backend.close()
        restarted = s3_backend(settings, tmp_path / "data")
        restarted.open()
        assert list(restarted.study_uids()) == [A]
        assert restarted.version(A) == version
        assert read_all(restarted, A) == data
        restarted.close()
    finally:
        server.stop()
