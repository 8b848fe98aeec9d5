from __future__ import annotations

import hashlib

import pytest

from pacsnode.node.ids import Level, format_sha1, is_resource_id, resource_ids


def test_ids_are_orthanc_sha1_of_joined_uids() -> None:
    ids = resource_ids("PAT1", "1.2.3", "1.2.3.4", "1.2.3.4.5")
    digest = hashlib.sha1(b"PAT1|1.2.3|1.2.3.4").hexdigest()
    assert ids[Level.SERIES] == "-".join(digest[i : i + 8] for i in range(0, 40, 8))
    assert ids[Level.PATIENT] == format_sha1("PAT1")
    assert all(is_resource_id(value) for value in ids.values())


def test_known_value() -> None:
    # SHA-1 of the empty patient ID, as Orthanc shows for instances without PatientID
    assert format_sha1("") == "da39a3ee-5e6b4b0d-3255bfef-95601890-afd80709"


@pytest.mark.parametrize("text", ["studies", "Study", "STUDY", "study"])
def test_level_parse(text: str) -> None:
    assert Level.parse(text) is Level.STUDY


def test_level_parse_refuses_unknown() -> None:
    with pytest.raises(ValueError, match="unknown level"):
        Level.parse("things")
