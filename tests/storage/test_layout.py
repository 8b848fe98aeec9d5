"""UID validation and entry-name parsing: the path-safety boundary."""

from __future__ import annotations

from pathlib import Path

import pytest

from pacsnode.storage.errors import InvalidUid
from pacsnode.storage.layout import check_uid, is_valid_uid, parse_entry_name, study_dir

GOOD = ["1.2.840.10008.1.2", "0", "1.0.2", "2.25." + "1" * 59]
BAD = [
    "",
    "1.02",
    "01.2",
    "1..2",
    ".1",
    "1.",
    "1.2a",
    "1/2",
    "..",
    "1.2\x00",
    " 1.2",
    "2.25." + "1" * 61,
    None,
    12,
]


@pytest.mark.parametrize("uid", GOOD)
def test_valid_uids(uid: str) -> None:
    assert is_valid_uid(uid)


@pytest.mark.parametrize("uid", BAD)
def test_invalid_uids(uid: object) -> None:
    assert not is_valid_uid(uid)
    with pytest.raises(InvalidUid):
        check_uid(uid, "StudyInstanceUID")


def test_study_dir_stays_under_root() -> None:
    root = Path("/data")
    path = study_dir(root, "1.2.3")
    assert path.parent.parent == root / "studies" and path.name == "1.2.3"
    with pytest.raises(InvalidUid):
        study_dir(root, "../../etc")


@pytest.mark.parametrize(
    "name",
    [
        "studies/1.2/metadata",
        "studies/1.2/series/1.3/instances/1.4/frames/1",
        "studies/1.2/series/1.3/instances/1.4/frames/12",
        "studies/1.2/series/1.3/instances/1.4/bulkdata/7FE00010",
        "studies/1.2/series/1.3/instances/1.4/bulkdata/00540016.0.00181072",
    ],
)
def test_entry_names_pacsnode_writes(name: str) -> None:
    assert parse_entry_name(name) is not None


@pytest.mark.parametrize(
    "name",
    [
        "studies/1.2/../metadata",
        "/studies/1.2/metadata",
        "studies/1.2/metadata/",
        "studies/1.02/metadata",
        "studies/1.2/series/1.3/instances/1.4/frames/0",
        "studies/1.2/series/1.3/instances/1.4/frames/../../x",
        "studies/1.2/series/1.3/instances/1.4/bulkdata/..",
        "studies/1.2/series/1.3/instances/1.4/bulkdata/7fe00010",
        "studies/1.2/series/1.3/instances/1.4/other",
        "studies\\1.2\\metadata",
        "x",
    ],
)
def test_hostile_entry_names(name: str) -> None:
    assert parse_entry_name(name) is None
