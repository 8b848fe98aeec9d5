"""Lookups: exact, wildcard (case-insensitive names), date ranges, lists."""

from __future__ import annotations

import pytest

from pacsnode.node.core import NodeCore
from pacsnode.node.errors import BadRequest
from pacsnode.node.ids import Level
from pacsnode.node.query import Kind, parse_constraint
from tests.node.conftest import MakeCore
from tests.storage.helpers import ct_instance, to_bytes

PEOPLE = [
    ("P1", "Doe^John", "20260105", "CT", "ACC1"),
    ("P2", "Doe^Jane", "20260210", "MR", "ACC2"),
    ("P3", "Smith^Anna", "20260315", "CT", "ACC3"),
    ("P4", "van der Berg^Piet", "20251231", "US", "ACC4"),
    ("P5", "Müller^Jürgen", "20250101", "MR", "ACC5"),
]


@pytest.fixture
def populated(make_core: MakeCore) -> NodeCore:
    core = make_core()
    for number, (patient_id, name, date, modality, accession) in enumerate(PEOPLE, start=1):
        dataset = ct_instance(0, patient=number)
        dataset.PatientID, dataset.PatientName, dataset.StudyDate = patient_id, name, date
        dataset.Modality, dataset.AccessionNumber = modality, accession
        core.ingest(to_bytes(dataset))
    return core


def patients_of(core: NodeCore, ids: list[str]) -> list[str]:
    found = []
    for resource_id in ids:
        record = core.resource(resource_id)
        while record["level"] != "Patient":
            record = core.resource(record["parent"])
        found.append(record["tags"]["PatientID"])
    return sorted(found)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"PatientID": "P2"}, ["P2"]),
        ({"PatientName": "doe*"}, ["P1", "P2"]),
        ({"PatientName": "*ANNA"}, ["P3"]),
        ({"PatientName": "Doe^J?n*"}, ["P2"]),
        ({"StudyDate": "20260101-20260228"}, ["P1", "P2"]),
        ({"StudyDate": "-20251231"}, ["P4", "P5"]),
        ({"StudyDate": "20260301-"}, ["P3"]),
        ({"AccessionNumber": "ACC1\\ACC4"}, ["P1", "P4"]),
        ({"ModalitiesInStudy": "CT"}, ["P1", "P3"]),
        ({"PatientName": "doe*", "StudyDate": "20260201-"}, ["P2"]),
        ({"PatientName": "*"}, ["P1", "P2", "P3", "P4", "P5"]),
        ({"PatientName": "*LLER^J?RGEN"}, ["P5"]),
        ({"PatientName": "m?ller*"}, ["P5"]),
        ({"PatientID": "nobody"}, []),
    ],
)
def test_study_level_queries(
    populated: NodeCore, query: dict[str, str], expected: list[str]
) -> None:
    assert patients_of(populated, populated.find(Level.STUDY, query)) == expected


def test_series_and_patient_levels(populated: NodeCore) -> None:
    assert patients_of(populated, populated.find(Level.SERIES, {"Modality": "CT"})) == ["P1", "P3"]
    assert patients_of(populated, populated.find(Level.PATIENT, {"PatientName": "*a*"})) == [
        "P2",
        "P3",
        "P4",
    ]
    # tags of ancestors can constrain a lower level
    assert patients_of(populated, populated.find(Level.INSTANCE, {"PatientID": "P4"})) == ["P4"]


def test_case_sensitive_names(populated: NodeCore) -> None:
    assert populated.find(Level.STUDY, {"PatientName": "doe*"}, case_sensitive=True) == []
    assert len(populated.find(Level.STUDY, {"PatientName": "Doe*"}, case_sensitive=True)) == 2


def test_since_and_limit(populated: NodeCore) -> None:
    everything = populated.find(Level.STUDY, {})
    assert populated.find(Level.STUDY, {}, since=1, limit=2) == everything[1:3]


def test_bad_queries(populated: NodeCore) -> None:
    with pytest.raises(BadRequest, match="unknown DICOM keyword"):
        populated.find(Level.STUDY, {"NotATag": "x"})
    with pytest.raises(BadRequest):
        populated.find(Level.STUDY, {"PatientID": 5})  # type: ignore[dict-item]


def test_constraint_parsing() -> None:
    assert parse_constraint("StudyDate", "20260101-20260131").kind is Kind.RANGE
    assert parse_constraint("PatientID", "A-B").kind is Kind.EXACT  # LO has no ranges
    assert parse_constraint("PatientName", "").kind is Kind.UNIVERSAL
    assert parse_constraint("Modality", "CT\\MR").values == ("CT", "MR")


def test_modalities_in_study_matches_any_of_them(make_core: MakeCore) -> None:
    core = make_core()
    for series, modality in ((1, "CT"), (2, "PT")):
        dataset = ct_instance(0, series=series)
        dataset.Modality = modality
        core.ingest(to_bytes(dataset))
    assert len(core.find(Level.STUDY, {"ModalitiesInStudy": "PT"})) == 1
    assert len(core.find(Level.STUDY, {"ModalitiesInStudy": "PT", "PatientID": "PAT00001"})) == 1
    assert core.find(Level.STUDY, {"ModalitiesInStudy": "MR"}) == []


@pytest.mark.parametrize(
    ("level", "query", "narrow"),
    [
        (Level.STUDY, {"PatientID": "P1"}, True),
        (Level.STUDY, {"AccessionNumber": "ACC1\\ACC2"}, True),
        (Level.STUDY, {"PatientID": "P1", "StudyDate": "20260101-"}, True),
        (Level.SERIES, {"SeriesInstanceUID": "1.2.3"}, True),
        (Level.STUDY, {"PatientID": "P*"}, False),
        (Level.STUDY, {"StudyDate": "20260101-20261231"}, False),
        (Level.STUDY, {"PatientName": "DOE^JOHN"}, True),
        (Level.STUDY, {"StudyDescription": "CHEST"}, False),  # kept, but not looked up
        (Level.SERIES, {"PatientID": "P1"}, False),  # not a lookup of series
        (Level.STUDY, {}, False),
    ],
)
def test_a_find_is_narrow_only_when_it_looks_up_given_values(
    core: NodeCore, level: Level, query: dict[str, str], narrow: bool
) -> None:
    """Narrow finds read a few keys (the REST API runs them without a thread hop); a
    wildcard, a range or a scan of every record is not narrow."""
    options = {"case_sensitive": False, "fold_identifiers": True}
    assert core.find_is_narrow(level, query, **options) is narrow
