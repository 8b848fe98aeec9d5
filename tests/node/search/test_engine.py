"""The tantivy search index on real data: pydicom's test files as DICOM JSON."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pacsnode.node.errors import BadRequest
from pacsnode.node.ids import Level
from pacsnode.node.search import engine as engine_module
from pacsnode.node.search.documents import Document, flatten, level_ids
from pacsnode.node.search.engine import STATE_FILE, SearchIndex
from pacsnode.node.search.query_language import parse
from pacsnode.node.search.translate import UnsupportedQuery
from tests.node.search.conftest import dicom_json

FILES = (
    "CT_small.dcm",
    "MR_small.dcm",
    "rtplan.dcm",
    "test-SR.dcm",
    "examples_ybr_color.dcm",
    "waveform_ecg.dcm",
    "liver_1frame.dcm",
    "rtdose.dcm",
)


def document(dataset: dict[str, Any]) -> Document:
    return flatten(dataset, level_ids(dataset))


@pytest.fixture(scope="module")
def datasets() -> dict[str, dict[str, Any]]:
    return {name: dicom_json(name) for name in FILES}


@pytest.fixture
def index(tmp_path: Path, datasets) -> SearchIndex:
    opened = SearchIndex(tmp_path / "search")
    for dataset in datasets.values():
        opened.add(document(dataset))
    opened.commit(last_change=len(datasets))
    yield opened
    opened.close()


def ids_of(dataset: dict[str, Any], level: Level) -> str:
    ids = level_ids(dataset)
    return {
        Level.PATIENT: ids.patient,
        Level.STUDY: ids.study,
        Level.SERIES: ids.series,
        Level.INSTANCE: ids.instance,
    }[level]


def found(index: SearchIndex, query: str, level: Level = Level.INSTANCE) -> list[str]:
    return index.search(parse(query), level, limit=1000)


def the(datasets, *names: str, level: Level = Level.INSTANCE) -> list[str]:
    return sorted({ids_of(datasets[name], level) for name in names})


@pytest.mark.parametrize(
    ("query", "names"),
    [
        ("Modality:CT", ["CT_small.dcm"]),
        ("modality:ct", ["CT_small.dcm"]),  # keyword and value in any case
        ("00080060:MR", ["MR_small.dcm"]),
        ("Modality:(CT OR MR)", ["CT_small.dcm", "MR_small.dcm"]),
        ("JFK", ["CT_small.dcm"]),  # free text: a word of InstitutionName
        ('"jfk imaging center"', ["CT_small.dcm"]),  # free text: a phrase
        ('"imaging jfk"', []),  # the words, but not in that order
        ("InstitutionName:*imaging*", ["CT_small.dcm"]),  # wildcard on the whole value
        ("InstitutionName:imaging", []),  # a field matches its whole value
        ('InstitutionName:"JFK IMAGING CENTER"', ["CT_small.dcm"]),
        ("PatientName:CompressedSamples^CT1", ["CT_small.dcm"]),
        ("PatientName:compressedsamples*", ["CT_small.dcm", "MR_small.dcm"]),
        ("compressedsamples", ["CT_small.dcm", "MR_small.dcm"]),  # PN words in free text
        ('"GEMS_IDEN_01",0009,xx04:"HiSpeed CT/i"', ["CT_small.dcm"]),  # private, by creator
        ('"GEMS_IDEN_01",0009,xx04:*speed*', ["CT_small.dcm"]),
        ('"GEMS_IDEN_02",0009,xx04:*', []),  # another creator, same element
        ("OtherPatientIDsSequence.PatientID:1234ABCD", ["CT_small.dcm"]),  # any item
        ("PatientID:1234ABCD", []),  # the top-level PatientID is another one
        ("StudyDate:[20040101 TO 20041231]", ["CT_small.dcm", "MR_small.dcm"]),
        ('StudyDate:["2004-01-19" TO "2004-01-19"]', ["CT_small.dcm"]),
        ("StudyDate:{20040119 TO 20041231]", ["MR_small.dcm"]),  # exclusive low bound
        ("StudyTime:[0700 TO 0800]", ["CT_small.dcm"]),  # bounds read as times: 07:00-08:00
        ("SliceThickness:5", ["CT_small.dcm"]),
        ("SliceThickness:5.00", ["CT_small.dcm"]),  # numbers match whatever their spelling
        ("SliceThickness:[4.5 TO 5]", ["CT_small.dcm"]),
        ("SliceThickness:{4.5 TO 5}", []),
        ("Rows:[* TO 9]", []),
        ("Modality:CT AND NOT SliceThickness:5", []),
        ("NOT Modality:* AND SOPClassUID:*", []),
    ],
)
def test_queries_find_what_they_say(index, datasets, query, names):
    assert found(index, query) == the(datasets, *names)


def test_nested_sequences_of_an_rt_plan(index, datasets):
    query = "DoseReferenceSequence.DoseReferenceStructureType:coordinates"
    assert found(index, query) == the(datasets, "rtplan.dcm")
    assert found(index, "300A0010.300A0018:[200 TO 300]") == the(datasets, "rtplan.dcm")


def test_structured_report_content_is_searchable(index, datasets):
    sr = datasets["test-SR.dcm"]
    assert sr["00080060"]["Value"] == ["SR"]
    assert found(index, "ContentSequence.ConceptNameCodeSequence.CodeMeaning:*") == the(
        datasets, "test-SR.dcm"
    )


def test_not_and_the_empty_query(index, datasets):
    everything = the(datasets, *FILES)
    assert found(index, "") == everything
    assert found(index, "NOT Modality:CT") == [
        i for i in everything if i not in the(datasets, "CT_small.dcm")
    ]


def test_answers_at_each_level_are_distinct_ids(index, datasets):
    for level in Level:
        assert found(index, "", level) == the(datasets, *FILES, level=level)
        assert index.count(parse(""), level) == len(the(datasets, *FILES, level=level))
    assert index.count(parse("Modality:CT"), Level.STUDY) == 1


def test_range_over_text_is_refused(index):
    with pytest.raises(UnsupportedQuery) as raised:
        found(index, "PatientName:[A TO C]")
    assert raised.value.http_status == 400
    assert "00100010" in raised.value.message


@pytest.mark.parametrize(
    "query", ["SeriesDescription:" + "?" * 3000, "SeriesDescription:" + "a*" * 2000, "x*" * 3000]
)
def test_patterns_too_complex_for_tantivy_are_refused(index, query):
    with pytest.raises(UnsupportedQuery) as raised:
        found(index, query)
    assert "too complex" in raised.value.message


def test_replacing_an_instance_keeps_one_document(index, datasets):
    changed = copy.deepcopy(datasets["CT_small.dcm"])
    changed["00081030"] = {"vr": "LO", "Value": ["A NEW DESCRIPTION"]}
    index.add(document(changed))
    index.commit()
    assert index.document_count() == len(FILES)
    assert found(index, "StudyDescription:*new*") == the(datasets, "CT_small.dcm")
    assert found(index, "StudyDescription:e+1") == []


def test_uncommitted_changes_are_not_seen_and_not_kept(tmp_path, datasets):
    index = SearchIndex(tmp_path / "search")
    index.add(document(datasets["MR_small.dcm"]))
    assert index.count(parse(""), Level.INSTANCE) == 0
    index.close()
    reopened = SearchIndex(tmp_path / "search")
    assert reopened.count(parse(""), Level.INSTANCE) == 0
    reopened.close()


@pytest.mark.parametrize("level", list(Level))
def test_delete_at_each_level(index, datasets, level):
    mr = datasets["MR_small.dcm"]
    index.delete(level, ids_of(mr, level))
    index.commit()
    assert found(index, "Modality:MR") == []
    assert len(found(index, "")) == len(FILES) - 1


def test_delete_a_study_of_many_instances(tmp_path, datasets):
    index = SearchIndex(tmp_path / "search")
    for dataset in series_of(datasets["MR_small.dcm"], 30):
        index.add(document(dataset))
    index.add(document(datasets["CT_small.dcm"]))
    index.commit()
    assert index.count(parse("Modality:MR"), Level.INSTANCE) == 30
    assert index.count(parse("Modality:MR"), Level.SERIES) == 1
    index.delete(Level.STUDY, ids_of(datasets["MR_small.dcm"], Level.STUDY))
    index.commit()
    assert index.count(parse(""), Level.INSTANCE) == 1
    index.close()


def series_of(dataset: dict[str, Any], count: int, series: str = "") -> list[dict[str, Any]]:
    """``count`` instances of one series made from ``dataset`` (new SOP and series UIDs)."""
    made = []
    series_uid = dataset["0020000E"]["Value"][0] + series
    for number in range(count):
        instance = copy.deepcopy(dataset)
        instance["0020000E"] = {"vr": "UI", "Value": [series_uid]}
        instance["00080018"] = {"vr": "UI", "Value": [f"1.2.826.0.1.3680043.10.1234.9.{number}"]}
        instance["00200013"] = {"vr": "IS", "Value": [number]}
        made.append(instance)
    return made


def test_pages_are_in_id_order_without_gaps(tmp_path, datasets, monkeypatch):
    index = SearchIndex(tmp_path / "search")
    for dataset in series_of(datasets["MR_small.dcm"], 23):
        index.add(document(dataset))
    index.commit()
    everything = index.search(parse(""), Level.INSTANCE, limit=100)
    assert everything == sorted(everything) and len(everything) == 23
    pages = [index.search(parse(""), Level.INSTANCE, limit=5, offset=o) for o in range(0, 25, 5)]
    assert [i for page in pages for i in page] == everything
    assert index.search(parse(""), Level.INSTANCE, limit=5, offset=30) == []
    assert index.search(parse(""), Level.INSTANCE, limit=0) == []
    # the same answers when tantivy's aggregations are taken a few buckets at a time
    monkeypatch.setattr(engine_module, "AGGREGATION_CHUNK", 3)
    for offset in range(0, 25):
        for limit in (1, 2, 3, 4, 7, 30):
            answer = index.search(parse(""), Level.INSTANCE, limit=limit, offset=offset)
            assert answer == everything[offset : offset + limit], (offset, limit)
    assert index.search(parse(""), Level.INSTANCE, limit=100) == everything
    assert index.count(parse(""), Level.SERIES) == 1
    index.close()


def test_counts_past_one_aggregation(tmp_path, datasets, monkeypatch):
    index = SearchIndex(tmp_path / "search")
    for number in range(7):
        for dataset in series_of(datasets["MR_small.dcm"], 2, series=f".{number}"):
            dataset["00080018"]["Value"][0] += f".{number}"
            index.add(document(dataset))
    index.commit()
    monkeypatch.setattr(engine_module, "AGGREGATION_CHUNK", 3)
    assert index.count(parse("Modality:MR"), Level.SERIES) == 7
    assert index.count(parse("Modality:MR"), Level.INSTANCE) == 14
    index.close()


def test_last_change_is_kept_across_openings(tmp_path, datasets):
    index = SearchIndex(tmp_path / "search")
    assert index.last_change == 0
    index.add(document(datasets["CT_small.dcm"]))
    index.commit(last_change=41)
    index.commit()  # without a position: the last one stays
    assert index.last_change == 41
    index.close()
    reopened = SearchIndex(tmp_path / "search")
    assert reopened.last_change == 41
    assert reopened.count(parse("Modality:CT"), Level.INSTANCE) == 1
    reopened.close()


def test_an_index_of_another_format_starts_again_empty(tmp_path, datasets):
    index = SearchIndex(tmp_path / "search")
    index.add(document(datasets["CT_small.dcm"]))
    index.commit(last_change=7)
    index.close()
    state = tmp_path / "search" / STATE_FILE
    state.write_text(json.dumps({"format": -1, "last_change": 7}))
    reopened = SearchIndex(tmp_path / "search")
    assert reopened.last_change == 0
    assert reopened.count(parse(""), Level.INSTANCE) == 0
    reopened.close()


@pytest.mark.parametrize("damaged", ["", "{", "[]", '{"format": 1, "last_change": "7"}'])
def test_a_damaged_state_file_starts_the_index_again(tmp_path, datasets, damaged):
    index = SearchIndex(tmp_path / "search")
    index.add(document(datasets["CT_small.dcm"]))
    index.commit(last_change=7)
    index.close()
    (tmp_path / "search" / STATE_FILE).write_text(damaged)
    reopened = SearchIndex(tmp_path / "search")
    assert reopened.last_change == 0
    assert reopened.count(parse(""), Level.INSTANCE) == 0
    reopened.close()


def test_rebuild_replaces_everything(index, datasets):
    mr_only = [document(d) for d in series_of(datasets["MR_small.dcm"], 4)]
    assert index.rebuild(mr_only, last_change=99, batch=3) == 4
    assert index.last_change == 99
    assert index.count(parse(""), Level.INSTANCE) == 4
    assert found(index, "Modality:CT") == []


def test_clear_forgets_everything(index):
    index.clear()
    assert index.count(parse(""), Level.INSTANCE) == 0
    assert index.last_change == 0


@pytest.fixture(scope="module")
def small_index(tmp_path_factory, datasets) -> SearchIndex:
    opened = SearchIndex(tmp_path_factory.mktemp("search") / "search")
    for name in ("CT_small.dcm", "MR_small.dcm", "rtplan.dcm"):
        opened.add(document(datasets[name]))
    opened.commit()
    yield opened
    opened.close()


QUERY_TEXT = st.lists(
    st.sampled_from(
        [*'aZ09 :*?"()[]{}\\.,-^/é山\x00\n', "AND", "OR", "NOT", " TO ", "Modality:", "StudyDate:"]
    )
    | st.text(max_size=3),
    max_size=15,
).map("".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(QUERY_TEXT, st.sampled_from(list(Level)), st.integers(0, 5), st.integers(0, 5))
def test_any_query_answers_or_raises_a_domain_error(small_index, text, level, limit, offset):
    try:
        query = parse(text)
        small_index.search(query, level, limit=limit, offset=offset)
        small_index.count(query, level)
    except BadRequest:
        pass
