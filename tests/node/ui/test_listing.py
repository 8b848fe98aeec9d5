"""The studies list's form, sort and paging, and the tag tree: plain functions."""

from __future__ import annotations

import pytest

from pacsnode.node.ui import csrf, listing, tags


def test_the_form_becomes_a_find_query() -> None:
    fields = {
        "name": "doe",
        "patient_id": "PAT1",
        "accession": "A*",
        "date_from": "2024-01-01",
        "date_to": "2024-01-31",
        "modality": "ct",
        "description": "chest",
    }
    assert listing.find_query(fields) == {
        "PatientName": "*doe*",
        "PatientID": "PAT1",
        "AccessionNumber": "A*",
        "StudyDate": "20240101-20240131",
        "ModalitiesInStudy": "CT",
    }
    assert listing.find_query({}) == {}
    # wildcards typed by the user are kept; one day is that day; open ranges stay open
    assert listing.find_query({"name": "DOE^J*"}) == {"PatientName": "DOE^J*"}
    assert listing.find_query({"date_from": "20240105", "date_to": "2024-01-05"}) == {
        "StudyDate": "20240105"
    }
    assert listing.find_query({"date_to": "2024-02-01"}) == {"StudyDate": "-20240201"}


def test_descriptions_match_anywhere_whatever_the_case() -> None:
    assert listing.description_matches("chest", "CT CHEST w/o contrast")
    assert listing.description_matches("CHEST W/O", "CT chest w/o contrast")
    assert not listing.description_matches("abdomen", "CT chest")
    assert listing.description_matches("ct*contrast", "CT chest w/o contrast")
    assert not listing.description_matches("ct*contrast", "MR chest w/o contrast")
    assert listing.description_matches("c?est", "chest") and not listing.description_matches(
        "c?est", "crest x"
    )
    assert listing.description_matches("a.b", "a.b") and not listing.description_matches(
        "a.b", "axb"
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"date_from": "yesterday"}, "from: write the date as YYYY-MM-DD"),
        ({"date_from": "2024-02-01", "date_to": "2024-01-01"}, "'from' date is after"),
    ],
)
def test_a_bad_date_is_a_message(fields: dict[str, str], message: str) -> None:
    with pytest.raises(listing.FormError, match=message):
        listing.find_query(fields)


def test_the_url_parameters_fall_back_to_defaults() -> None:
    search = listing.parse_search({"sort": "nonsense", "page": "-3", "size": "7", "name": " x "})
    assert (search.sort, search.descending, search.page, search.size) == ("date", True, 1, 50)
    assert search.fields == {"name": "x"}
    by_name = listing.parse_search({"sort": "name", "page": "3", "size": "25"})
    assert (by_name.sort, by_name.descending, by_name.offset) == ("name", False, 50)
    assert listing.parse_search({"sort": "name", "dir": "desc"}).descending


def test_pages_walk_the_order_and_count_the_matches() -> None:
    ordered = [f"s{i}" for i in range(10)]
    first = listing.parse_search({"sort": "id", "size": "25"})
    assert listing.page_of(ordered, None, first) == (ordered, 10)
    newest = listing.parse_search({"sort": "date"})
    assert listing.page_of(ordered, None, newest)[0][:2] == ["s9", "s8"]
    ids, total = listing.page_of(ordered, {"s1", "s5", "s7"}, newest)
    assert (ids, total) == (["s7", "s5", "s1"], 3)
    second = listing.Search(fields={}, sort="id", descending=False, page=2, size=4)
    assert listing.page_of(ordered, None, second) == (["s4", "s5", "s6", "s7"], 10)
    assert listing.page_count(10, 4) == 3 and listing.page_count(0, 50) == 1


def test_values_read_as_people_write_them() -> None:
    assert listing.person_name("DOE^JOHN^^DR") == "DOE, JOHN DR"
    assert listing.person_name("DOE") == "DOE"
    assert listing.person_name("Yamada^Tarou=山田^太郎") == "Yamada, Tarou"
    assert listing.dicom_date("20240131") == "2024-01-31"
    assert listing.dicom_date("2024") == "2024"
    assert listing.dicom_datetime("20240131T101500") == "2024-01-31 10:15:00"
    assert listing.byte_size(512) == "512 B"
    assert listing.byte_size(3 * 1024 * 1024) == "3.0 MB"


def test_dicom_json_becomes_a_tree() -> None:
    dataset = {
        "00100010": {"vr": "PN", "Value": [{"Alphabetic": "DOE^JOHN"}]},
        "00081115": {
            "vr": "SQ",
            "Value": [{"0020000E": {"vr": "UI", "Value": ["1.2.3"]}}, {}],
        },
        "7FE00010": {"vr": "OW", "BulkDataURI": "bulk/7FE00010"},
        "00090010": {"vr": "LO", "Value": ["ACME"]},
        "00280030": {"vr": "DS", "Value": [0.5, 0.5]},
    }
    nodes = tags.tree(dataset)
    assert [n.tag for n in nodes] == [
        "(0008,1115)",
        "(0009,0010)",
        "(0010,0010)",
        "(0028,0030)",
        "(7FE0,0010)",
    ]
    sequence, private, name, spacing, pixels = nodes
    assert (sequence.keyword, sequence.value, len(sequence.items)) == (
        "ReferencedSeriesSequence",
        "2 items",
        2,
    )
    assert sequence.items[0][0].keyword == "SeriesInstanceUID"
    assert sequence.items[0][0].value == "1.2.3"
    assert private.keyword == "(private)"
    assert (name.keyword, name.value) == ("PatientName", "DOE^JOHN")
    assert spacing.value == "0.5\\0.5"
    assert pixels.value == "(binary data, not shown)"


def test_csrf_tokens_and_origins() -> None:
    token = csrf.new_token()
    assert len(token) >= 40 and token != csrf.new_token()
    assert csrf.tokens_match(token, token)
    assert not csrf.tokens_match(token, token[:-1] + "x")
    assert not csrf.tokens_match(None, token) and not csrf.tokens_match(token, "")
    assert csrf.same_origin(None, "node:8042")
    assert csrf.same_origin("http://node:8042", "node:8042")
    assert csrf.same_origin("http://node:8042/ui/studies", "NODE:8042")
    assert not csrf.same_origin("https://evil.example", "node:8042")
    assert not csrf.same_origin("null", "node:8042")
