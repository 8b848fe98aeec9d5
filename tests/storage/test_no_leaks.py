"""What a refusal of a peer's ZIP says goes back to the peer: no file path, no Python
exception text (the log has the details); and what the store spools is in the data
directory, not the system's temporary one (issue 13, items 10 and 13, storage side)."""

from __future__ import annotations

import os
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pacsnode.storage.errors import InvalidArchive
from pacsnode.storage.store import StudyStore
from tests.storage.helpers import ct_bytes, ct_instance
from tests.storage.test_merge import metadata_objects, rebuild, tampered_variants, with_metadata

STUDY = ct_instance(0).StudyInstanceUID
_PYTHON = re.compile(r"\b\w*(Error|Exception)\b|Errno|Traceback|object is not|line \d+ column")


@pytest.fixture
def good(tmp_path: Path) -> Path:
    with StudyStore(tmp_path / "other") as other:
        for index in range(2):
            other.put_instance(ct_bytes(index))
        return Path(other.study_zip(STUDY))


def _sequence_value_is_a_number(name: str, data: bytes) -> Iterator[tuple[str, bytes]]:
    if name.endswith("/metadata"):
        objects = metadata_objects(data)
        objects[0]["00081140"] = {"vr": "SQ", "Value": 5}
        data = with_metadata(objects)
    yield name, data


def _metadata_not_gzip(name: str, data: bytes) -> Iterator[tuple[str, bytes]]:
    yield name, (b"[]" if name.endswith("/metadata") else data)


def _layout_not_json(name: str, data: bytes) -> Iterator[tuple[str, bytes]]:
    if name.endswith("/p10-layout"):
        head, _, _ = data.partition(b"PNL1")
        data = head + b"PNL1" + b"\x05\x00\x00\x00{bad}" + data[-30:]
    yield name, data


def _deflate_damaged(path: Path) -> Path:
    damaged = path.with_name("deflate.zip")
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = [i for i in archive.infolist() if "frames" in i.filename][-1]
    start = info.header_offset + 30 + len(info.filename)
    data[start : start + 8] = b"\xff" * 8  # not a deflate stream any more
    damaged.write_bytes(bytes(data))
    return damaged


def test_refusals_of_a_peer_zip_name_no_path_and_no_python(tmp_path: Path, good: Path) -> None:
    variants = dict(tampered_variants(tmp_path, good))
    crafted = {
        "sequence_value": _sequence_value_is_a_number,
        "metadata_not_gzip": _metadata_not_gzip,
        "layout_not_json": _layout_not_json,
    }
    for name, edit in crafted.items():
        variants[name] = rebuild(good, tmp_path / f"{name}.zip", edit)
    variants["deflate"] = _deflate_damaged(good)
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"PK\x03\x04" + b"\0" * 100)
    variants["junk"] = junk
    with StudyStore(tmp_path / "data") as store:
        for name, path in variants.items():
            with pytest.raises(InvalidArchive) as refused:
                store.merge_study_zip(path)
            message = refused.value.message
            assert str(tmp_path) not in message and path.name not in message, (name, message)
            assert not _PYTHON.search(message), (name, message)


def test_a_study_subset_is_spooled_in_the_data_directory(tmp_path: Path) -> None:
    with StudyStore(tmp_path / "data") as store:
        store.put_instance(ct_bytes(0))
        store.put_instance(ct_bytes(1))
        with store.open_study_zip(STUDY, {ct_instance(0).SOPInstanceUID}) as handle:
            where = os.readlink(f"/proc/self/fd/{handle.fileno()}")
            assert where.startswith(str(store.root)), where
            with zipfile.ZipFile(handle) as subset:
                assert len([n for n in subset.namelist() if "/frames/" in n]) == 1
