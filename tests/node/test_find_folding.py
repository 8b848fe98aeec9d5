"""Case-insensitive identifiers (Orthanc's /tools/find), and a lone ``*``, on a real core."""

from __future__ import annotations

import pytest

from pacsnode.node.core import NodeCore
from pacsnode.node.ids import Level
from pacsnode.node.index.lookups import _case_variants
from pacsnode.node.query import Kind, parse_constraint
from tests.node.conftest import MakeCore
from tests.storage.helpers import ct_instance, to_bytes

IDS = ["abcDEF12", "ABCdef34", "xyz", "12ab"]


@pytest.fixture
def populated(make_core: MakeCore) -> NodeCore:
    core = make_core()
    for number, patient_id in enumerate(IDS, start=1):
        dataset = ct_instance(0, patient=number)
        dataset.PatientID = patient_id
        if number == 4:
            del dataset.PatientSex
        core.ingest(to_bytes(dataset))
    return core


def found(core: NodeCore, query: dict[str, str], **options: bool) -> list[str]:
    ids = core.find(Level.PATIENT, query, **options)
    return sorted(core.resource(i)["tags"]["PatientID"] for i in ids)


@pytest.mark.parametrize(
    ("value", "folded", "as_written"),
    [
        ("ABCDEF12", ["abcDEF12"], []),
        ("abc*", ["ABCdef34", "abcDEF12"], ["abcDEF12"]),
        ("*DEF??", ["ABCdef34", "abcDEF12"], ["abcDEF12"]),
        ("XYZ\\12ab", ["12ab", "xyz"], ["12ab"]),
        ("12AB", ["12ab"], []),
    ],
)
def test_folded_identifiers_match_in_any_case(
    populated: NodeCore, value: str, folded: list[str], as_written: list[str]
) -> None:
    query = {"PatientID": value}
    assert found(populated, query, fold_identifiers=True) == folded
    # as written otherwise (C-FIND), or when the caller asks for case
    assert found(populated, query) == as_written
    assert found(populated, query, case_sensitive=True, fold_identifiers=True) == as_written


def test_a_lone_star_matches_only_resources_with_the_attribute(populated: NodeCore) -> None:
    assert parse_constraint("PatientSex", "*").kind is Kind.WILDCARD
    assert len(found(populated, {"PatientSex": "*"})) == 3
    assert len(found(populated, {"PatientSex": ""})) == 4


def test_case_variants_spell_at_most_six_letters_both_ways() -> None:
    assert _case_variants("12a") == ["12A", "12a"]
    assert len(_case_variants("PAT00012")) == 8
    assert len(_case_variants("abcdefgh")) == 64
    assert all(len(v) == 6 for v in _case_variants("abcdefgh"))


def test_a_long_folded_value_is_found_by_its_prefix(make_core: MakeCore) -> None:
    core = make_core()
    dataset = ct_instance(0)
    dataset.PatientID = "LongerThanSixLetters"
    core.ingest(to_bytes(dataset))
    query = {"PatientID": "longerthansixletters"}
    assert len(core.find(Level.PATIENT, query, fold_identifiers=True)) == 1
    assert core.find(Level.PATIENT, query) == []
