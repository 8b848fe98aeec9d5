"""DICOM matching (QIDO-RS, C-FIND) as search queries, run on pydicom's files."""

from __future__ import annotations

from pathlib import Path

import pytest

from pacsnode.node.errors import BadRequest
from pacsnode.node.ids import Level
from pacsnode.node.query import parse_constraint, parse_query
from pacsnode.node.search.documents import flatten, level_ids
from pacsnode.node.search.engine import SearchIndex
from pacsnode.node.search.fields import StandardTag
from pacsnode.node.search.from_dicom import constraint_query, constraints_query
from pacsnode.node.search.query_ast import (
    All,
    And,
    FieldRef,
    Joker,
    Match,
    Or,
    Range,
    Wildcard,
    Word,
)
from tests.node.search.conftest import dicom_json

MODALITY = FieldRef((StandardTag(0x00080060),))
STUDY_DATE = FieldRef((StandardTag(0x00080020),))


def test_each_kind_of_matching():
    assert constraint_query(parse_constraint("Modality", "")) == All()
    assert constraint_query(parse_constraint("Modality", "CT")) == Match(MODALITY, Word("CT"))
    assert constraint_query(parse_constraint("Modality", "C?")) == Match(
        MODALITY, Wildcard(("C", Joker.ONE))
    )
    assert constraint_query(parse_constraint("Modality", "CT\\MR")) == Or(
        (Match(MODALITY, Word("CT")), Match(MODALITY, Word("MR")))
    )
    assert constraint_query(parse_constraint("StudyDate", "20040101-")) == Match(
        STUDY_DATE, Range("20040101", None)
    )
    assert constraint_query(parse_constraint("StudyDate", "-20041231")) == Match(
        STUDY_DATE, Range(None, "20041231")
    )
    assert constraint_query(parse_constraint("ModalitiesInStudy", "MR")) == Match(
        MODALITY, Word("MR")
    )


def test_several_constraints_and_none():
    query = parse_query({"Modality": "CT", "PatientName": "", "StudyDate": "20040119"})
    assert constraints_query(query) == And(
        (Match(MODALITY, Word("CT")), Match(STUDY_DATE, Word("20040119")))
    )
    assert constraints_query(parse_query({"PatientName": ""})) == All()
    assert constraints_query([]) == All()


def test_unknown_keywords_are_a_bad_request():
    constraint = parse_constraint("ModalitiesInStudy", "CT")
    with pytest.raises(BadRequest):
        constraint_query(type(constraint)("NotAKeyword", constraint.kind, ("x",), True))


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"InstitutionName": "JFK*"}, ["CT_small.dcm"]),
        ({"ModalitiesInStudy": "CT\\MR"}, ["CT_small.dcm", "MR_small.dcm"]),
        ({"StudyDate": "20040101-20041231", "Modality": "MR"}, ["MR_small.dcm"]),
        ({"Manufacturer": "TOSHIBA_MEC"}, ["MR_small.dcm"]),
    ],
)
def test_the_index_finds_every_match(tmp_path: Path, query, expected):
    index = SearchIndex(tmp_path / "search")
    datasets = {name: dicom_json(name) for name in ("CT_small.dcm", "MR_small.dcm", "rtplan.dcm")}
    for dataset in datasets.values():
        index.add(flatten(dataset, level_ids(dataset)))
    index.commit()
    found = index.search(constraints_query(parse_query(query)), Level.STUDY)
    assert found == sorted(level_ids(datasets[name]).study for name in expected)
    index.close()
