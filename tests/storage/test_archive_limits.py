"""ZIP bombs in a peer's study ZIP (issue 13, item 8), at the storage level: refused from
the sizes the ZIP declares before anything is inflated, or while inflating, in bounded
memory, with nothing stored. The node-level tests (REST, CLI, a peer's upload against a
real node, peak RSS) are in tests/node/test_zip_bombs.py."""

from __future__ import annotations

import os
import time
import tracemalloc
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pacsnode.storage.deflated import deflated_body_offset
from pacsnode.storage.errors import ArchiveTooLarge, InstanceTooLarge, InvalidArchive
from pacsnode.storage.limits import (
    RATIO_FLOOR,
    ArchiveLimits,
    check_sizes,
    gunzip_bounded,
    read_bounded,
    size_problem,
)
from pacsnode.storage.received_zip import validate_study_zip
from pacsnode.storage.results import PutStatus
from pacsnode.storage.store import StudyStore
from tests.storage.bombs import (
    MiB,
    big_frame_chunks,
    deflated_p10_bomb,
    gzip_of_chunks,
    rewrite_study_zip,
    whitespace_metadata,
)
from tests.storage.helpers import ct_bytes, ct_instance
from tests.storage.test_store import snapshot

STUDY = ct_instance(0).StudyInstanceUID


def peak_allocated(action: Callable[[], Any]) -> int:
    """Bytes Python allocated at most while ``action`` ran (over what was allocated before)."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        action()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak - base


def raises_refusal(action: Callable[[], Any], kind: type[Exception] = ArchiveTooLarge) -> str:
    with pytest.raises(kind) as refused:
        action()
    return str(refused.value)


# --- pure decisions ---------------------------------------------------------------------


def test_sizes_are_refused_past_the_limit_or_past_the_ratio_above_its_floor() -> None:
    assert size_problem("x", 10 * MiB, 5 * MiB, 10 * MiB, 200) is None
    assert "more than the limit of" in str(size_problem("x", 10 * MiB + 1, 1, 10 * MiB, 200))
    # A small blank image deflates ~1000:1 and is harmless: the ratio starts past its floor.
    assert size_problem("x", RATIO_FLOOR, RATIO_FLOOR // 1000, 1 << 40, 200) is None
    ratio = size_problem("x", RATIO_FLOOR + 1, (RATIO_FLOOR + 1) // 1000, 1 << 40, 200)
    assert ratio is not None and "times its compressed size" in ratio
    # Many entries under the floor may not add up to a bomb.
    many = [(f"e{i}", RATIO_FLOOR, RATIO_FLOOR // 1000) for i in range(4)]
    with pytest.raises(ArchiveTooLarge, match="the ZIP inflates"):
        check_sizes(many, 1 << 40, 200, None, "the ZIP")
    with pytest.raises(ArchiveTooLarge, match="together"):
        check_sizes([("a", 6, 6), ("b", 6, 6)], 10, 200, 10, "together")


def test_inflating_stops_past_the_limit_in_bounded_memory() -> None:
    bomb = gzip_of_chunks(iter([b" " * MiB] * 64))  # 64 MiB of spaces in ~64 KiB
    assert len(bomb) < MiB
    peak = peak_allocated(lambda: raises_refusal(lambda: gunzip_bounded(bomb, 4 * MiB, "it")))
    assert peak < 12 * MiB  # the old gzip.decompress held all 64 MiB
    assert gunzip_bounded(bomb, 64 * MiB, "it") == b" " * (64 * MiB)
    two_members = gzip_of_chunks(iter([b"ab"])) + gzip_of_chunks(iter([b"cd"]))
    assert gunzip_bounded(two_members, 4, "it") == b"abcd"
    with pytest.raises((EOFError, zlib.error)):
        gunzip_bounded(bomb[:100], 64 * MiB, "it")


class _Liar:
    """A stream that gives more than anyone declared."""

    def __init__(self, size: int) -> None:
        self.left = size

    def read(self, count: int) -> bytes:
        count = min(count, self.left)
        self.left -= count
        return b"x" * count


def test_a_stream_is_counted_whatever_it_declared() -> None:
    chunks = read_bounded(_Liar(5 * MiB), 3 * MiB, "the file")  # type: ignore[arg-type]
    with pytest.raises(ArchiveTooLarge, match="past the limit"):
        for _ in chunks:
            pass


# --- a peer's study ZIP -------------------------------------------------------------------


@pytest.fixture
def good_zip(tmp_path: Path) -> Path:
    with StudyStore(tmp_path / "other") as other:
        other.put_instance(ct_bytes(0))
        other.put_instance(ct_bytes(1))
        return Path(other.study_zip(STUDY))


def _first_frame(name: str) -> bool:
    return name.endswith("/frames/1") and ct_instance(0).SOPInstanceUID in name


def test_metadata_inflating_to_whitespace_is_refused_and_nothing_stored(
    tmp_path: Path, good_zip: Path
) -> None:
    def pad(name: str, data: bytes) -> bytes | None:
        return whitespace_metadata(data, 96 * MiB) if name.endswith("/metadata") else None

    bomb = rewrite_study_zip(good_zip, tmp_path / "bomb.zip", pad)
    assert bomb.stat().st_size < MiB
    with StudyStore(tmp_path / "data") as store:
        before = snapshot(store.root)
        # Accepted by the old code (whitespace around JSON is JSON), after inflating it all.
        peak = peak_allocated(lambda: raises_refusal(lambda: store.merge_study_zip(bomb)))
        assert peak < 40 * MiB  # the ratio's floor (16 MiB) and a chunk, not 96 MiB
        assert snapshot(store.root) == before
    # A configured limit below the ratio's floor holds too.
    small = ArchiveLimits(max_metadata_bytes=2 * MiB)
    with zipfile.ZipFile(bomb) as archive:
        message = raises_refusal(lambda: validate_study_zip(archive, small))
    assert "metadata inflates past the limit of 2097152 bytes" in message


def test_a_huge_frame_is_refused_from_its_declared_size_before_inflating(
    tmp_path: Path, good_zip: Path
) -> None:
    def huge(name: str, data: bytes) -> Iterator[bytes] | None:
        return big_frame_chunks(512 * MiB) if _first_frame(name) else None

    bomb = rewrite_study_zip(good_zip, tmp_path / "bomb.zip", huge)
    with StudyStore(tmp_path / "data") as store:
        before = snapshot(store.root)
        started = time.monotonic()
        peak = peak_allocated(lambda: raises_refusal(lambda: store.merge_study_zip(bomb)))
        assert time.monotonic() - started < 2  # nothing was inflated
        assert peak < 8 * MiB
        assert snapshot(store.root) == before
    # Past the instance limit, even without any ratio (stored, random bytes).
    random_frame = rewrite_study_zip(
        good_zip,
        tmp_path / "random.zip",
        lambda name, data: os.urandom(3 * MiB) if _first_frame(name) else None,
    )
    with zipfile.ZipFile(random_frame) as archive:
        message = raises_refusal(
            lambda: validate_study_zip(archive, ArchiveLimits(max_instance_bytes=2 * MiB))
        )
    assert ct_instance(0).SOPInstanceUID in message and "more than the limit" in message


def test_a_large_frame_within_the_limits_is_checked_streaming(
    tmp_path: Path, good_zip: Path
) -> None:
    block = os.urandom(MiB)  # deflate's 32 KiB window finds no repeat: ratio ~1

    def large(name: str, data: bytes) -> Iterator[bytes] | None:
        if not _first_frame(name):
            return None
        return iter([b"--b\r\nContent-Type: application/octet-stream\r\n\r\n", *[block] * 48,
                     b"\r\n--b--\r\n"])  # fmt: skip

    path = rewrite_study_zip(good_zip, tmp_path / "large.zip", large)
    with zipfile.ZipFile(path) as archive:
        peak = peak_allocated(lambda: validate_study_zip(archive))
    assert peak < 16 * MiB  # the old check read each part whole: 48 MiB


def test_a_large_part_without_its_closing_boundary_is_refused(
    tmp_path: Path, good_zip: Path
) -> None:
    def cut(name: str, data: bytes) -> Iterator[bytes] | None:
        return iter(list(big_frame_chunks(8 * MiB))[:-1]) if _first_frame(name) else None

    path = rewrite_study_zip(good_zip, tmp_path / "cut.zip", cut)
    with zipfile.ZipFile(path) as archive:
        message = raises_refusal(lambda: validate_study_zip(archive), InvalidArchive)
    assert "closing boundary" in message


# --- a P10 file in the deflated transfer syntax ---------------------------------------------


def test_a_deflated_file_that_inflates_too_far_is_refused_before_parsing(tmp_path: Path) -> None:
    bomb = deflated_p10_bomb(tmp_path / "bomb.dcm", ct_instance(0), 96 * MiB)
    assert bomb.stat().st_size < MiB
    with StudyStore(tmp_path / "data") as store:
        before = snapshot(store.root)
        for source in (bomb, bomb.read_bytes()):
            # pydicom would inflate all 96 MiB in one call, then parse them.
            peak = peak_allocated(lambda s=source: _refused_put(store, s))
            assert peak < 8 * MiB
        assert snapshot(store.root) == before
        # Within the limits (under the ratio's floor), a deflated file goes in as before.
        small = deflated_p10_bomb(tmp_path / "small.dcm", ct_instance(1), 2 * MiB)
        assert store.put_instance(small).status is PutStatus.STORED
    assert deflated_body_offset(ct_bytes(0)) is None  # any other file: a look at its meta


def _refused_put(store: StudyStore, source: Path | bytes) -> str:
    return raises_refusal(lambda: store.put_instance(source), InstanceTooLarge)
