"""The pure parts of DICOMweb: Accept negotiation, QIDO parsing and answers, STOW answers."""

from __future__ import annotations

import pytest

from pacsnode.node.dicomweb import qido
from pacsnode.node.dicomweb.errors import NotAcceptable
from pacsnode.node.dicomweb.metadata import absolute_bulk_uris
from pacsnode.node.dicomweb.negotiation import accepts_dicom, choose_part, parse_accept
from pacsnode.node.dicomweb.stow import Outcome, split_parts, stow_answer
from pacsnode.node.errors import BadRequest
from pacsnode.node.ids import Level

JPEG = "1.2.840.10008.1.2.4.50"
EXPLICIT = "1.2.840.10008.1.2.1"


def test_accept_entries_keep_their_parameters_and_order_by_quality():
    entries = parse_accept(
        'multipart/related; type="image/jpeg"; transfer-syntax=1.2.840.10008.1.2.4.50;q=0.5,'
        " multipart/related; type=application/octet-stream; transfer-syntax=*"
    )
    assert [(e.part_type, e.transfer_syntax) for e in entries] == [
        ("application/octet-stream", "*"),
        ("image/jpeg", JPEG),
    ]
    assert parse_accept(None)[0].media_type == "*/*"


@pytest.mark.parametrize(
    ("accept", "media_type", "syntax", "multipart"),
    [
        ("*/*", "image/jpeg", JPEG, True),
        ('multipart/related; type="*/*"', "image/jpeg", JPEG, True),  # dicomweb-client
        (
            "multipart/related; type=application/octet-stream; transfer-syntax=*",
            "image/jpeg",
            JPEG,
            True,
        ),
        ('multipart/related; type="image/jpeg"', "image/jpeg", JPEG, True),
        (
            "multipart/related; type=application/octet-stream",
            "application/octet-stream",
            EXPLICIT,
            True,
        ),
        ("image/jpeg", "image/jpeg", JPEG, False),  # single part, as OHIF's option asks
        ("application/octet-stream", "application/octet-stream", EXPLICIT, False),
    ],
)
def test_stored_frames_go_out_as_stored_when_accepted(accept, media_type, syntax, multipart):
    choice = choose_part(parse_accept(accept), media_type, syntax)
    assert choice.multipart is multipart and choice.media_type == media_type


@pytest.mark.parametrize(
    "accept",
    [
        "multipart/related; type=application/octet-stream",  # uncompressed asked: no transcoding
        'multipart/related; type="image/jpeg"; transfer-syntax=1.2.840.10008.1.2.4.70',
        "image/png",
    ],
)
def test_a_representation_that_would_need_transcoding_is_refused(accept):
    with pytest.raises(NotAcceptable):
        choose_part(parse_accept(accept), "image/jpeg", JPEG)


def test_instances_go_out_in_their_stored_syntax_unless_another_is_named():
    assert accepts_dicom(parse_accept('multipart/related; type="application/dicom"'), JPEG)
    assert accepts_dicom(
        parse_accept('multipart/related; type="application/dicom"; transfer-syntax=*'), JPEG
    )
    assert not accepts_dicom(
        parse_accept(f'multipart/related; type="application/dicom"; transfer-syntax={EXPLICIT}'),
        JPEG,
    )
    assert not accepts_dicom(parse_accept("application/json"), JPEG)


def test_qido_parameters_become_index_queries():
    search = qido.parse_search(
        Level.STUDY,
        [
            ("PatientName", "DOE*"),
            ("00080020", "20200101-20201231"),
            ("StudyInstanceUID", "1.2.3,1.2.4"),
            ("includefield", "StudyDescription,00081030"),
            ("includefield", "all"),
            ("limit", "5"),
            ("offset", "10"),
            ("fuzzymatching", "true"),
        ],
        {},
    )
    assert search.matches == {
        "PatientName": "DOE*",
        "StudyDate": "20200101-20201231",
        "StudyInstanceUID": "1.2.3\\1.2.4",
    }
    assert (search.limit, search.offset, search.fuzzy, search.include_all) == (5, 10, True, True)
    assert "StudyDescription" in search.include
    assert [c.keyword for c in search.constraints()] == list(search.matches)


def test_qido_path_scope_and_attributes_beyond_the_main_tags():
    search = qido.parse_search(
        Level.SERIES,
        [("Modality", "CT"), ("ContrastBolusRoute", "IV"), ("00180015", "CHEST")],
        {"StudyInstanceUID": "1.2"},
    )
    assert search.matches == {
        "StudyInstanceUID": "1.2",
        "Modality": "CT",
        "ContrastBolusRoute": "IV",
        "BodyPartExamined": "CHEST",
    }
    assert "ContrastBolusRoute" in search.include and "BodyPartExamined" in search.include
    # inside a sequence's items, by tags or keywords: matched, the sequence answered whole
    nested = qido.parse_search(
        Level.STUDY,
        [
            ("00081140.00081155", "1.2.3,1.2.4"),
            ("RequestAttributesSequence.ScheduledProcedureStepID", "S*"),
        ],
        {},
    )
    assert nested.matches == {
        "ReferencedImageSequence.ReferencedSOPInstanceUID": "1.2.3\\1.2.4",
        "RequestAttributesSequence.ScheduledProcedureStepID": "S*",
    }
    assert nested.include == ["ReferencedImageSequence", "RequestAttributesSequence"]


@pytest.mark.parametrize(
    "query",
    [
        [("limit", "-1")],
        [("limit", "many")],
        [("NoSuchKeyword", "x")],
        [("99999999", "x")],
        [("PatientName.PatientID", "x")],  # not a sequence
        [("ReferencedImageSequence.NoSuchKeyword", "x")],
        [("ReferencedImageSequence", "x")],  # a whole sequence has no value to match
    ],
)
def test_bad_qido_parameters_are_refused_with_their_name(query):
    with pytest.raises(BadRequest):
        qido.parse_search(Level.STUDY, query, {})


def test_answers_carry_values_with_their_vrs_counts_and_retrieve_url():
    search = qido.parse_search(Level.STUDY, [], {})
    tags = {
        "PatientName": "DOE^JANE",
        "StudyInstanceUID": "1.2.3",
        "ModalitiesInStudy": "CT\\PT",
        "StudyDate": "20240102",
    }
    counts = {"NumberOfStudyRelatedSeries": 2, "NumberOfStudyRelatedInstances": 7}
    answer = qido.answer(search, tags, counts, None, "http://x/dicom-web/studies/1.2.3")
    assert answer["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": "DOE^JANE"}]}
    assert answer["00080061"] == {"vr": "CS", "Value": ["CT", "PT"]}
    assert answer["00201206"] == {"vr": "IS", "Value": [2]}
    assert answer["00201208"] == {"vr": "IS", "Value": [7]}
    assert answer["00080056"]["Value"] == ["ONLINE"]
    assert answer["00081190"]["Value"] == ["http://x/dicom-web/studies/1.2.3"]
    assert answer["00080050"] == {"vr": "SH"}  # asked by default, absent: empty


def test_series_and_instance_metadata_get_absolute_bulk_data_uris():
    item = {
        "7FE00010": {"vr": "OB", "BulkDataURI": "series/1.2/instances/1.3/frames"},
        "00540016": {
            "vr": "SQ",
            "Value": [
                {"00181072": {"vr": "OB", "BulkDataURI": "series/1.2/instances/1.3/bulkdata/x"}}
            ],
        },
    }
    resolved = absolute_bulk_uris(item, "http://h/dicom-web/studies/1.1")
    assert (
        resolved["7FE00010"]["BulkDataURI"]
        == "http://h/dicom-web/studies/1.1/series/1.2/instances/1.3/frames"
    )
    nested = resolved["00540016"]["Value"][0]["00181072"]["BulkDataURI"]
    assert nested.endswith("/studies/1.1/series/1.2/instances/1.3/bulkdata/x")
    assert item["7FE00010"]["BulkDataURI"].startswith("series/")  # the stored copy is untouched


def test_stow_answers_200_202_and_409_with_reasons():
    ok = Outcome("1.2.840.10008.5.1.4.1.1.2", "1.9", "1.1", "1.5")
    bad = Outcome("1.2.840.10008.5.1.4.1.1.2", "1.8", "1.7", "1.5", failure=0xA900, reason="x")
    status, answer = stow_answer([ok], "http://h/dw", None)
    assert status == 200 and "00081198" not in answer
    assert answer["00081190"]["Value"] == ["http://h/dw/studies/1.1"]
    item = answer["00081199"]["Value"][0]
    assert item["00081155"]["Value"] == ["1.9"]
    assert item["00081190"]["Value"] == ["http://h/dw/studies/1.1/series/1.5/instances/1.9"]
    status, answer = stow_answer([ok, bad], "http://h/dw", None)
    assert status == 202 and answer["00081198"]["Value"][0]["00081197"]["Value"] == [0xA900]
    assert stow_answer([bad], "http://h/dw", "1.1")[0] == 409


def test_multipart_parts_are_found_whatever_the_boundary_length():
    boundary = b"x" * 73  # longer than RFC 2046 allows, as Orthanc sends it
    body = (
        b"preamble\r\n--"
        + boundary
        + b"\r\nContent-Type: application/dicom\r\n\r\nfirst\r\n--"
        + boundary
        + b"\r\nContent-Type: application/pdf; x=y\r\n\r\nsecond\r\n--"
        + boundary
        + b"--\r\n"
    )
    parts = [(kind, body[start:end]) for kind, start, end in split_parts(body, boundary)]
    assert parts == [("application/dicom", b"first"), ("application/pdf", b"second")]
    with pytest.raises(BadRequest):
        list(split_parts(b"--b\r\nContent-Type: application/dicom\r\n\r\nno end", b"b"))


def test_a_study_answer_does_not_carry_series_attributes_nor_read_instances_for_them():
    # OHIF's study list asks for Modality (a series attribute) and StudyDescription
    search = qido.parse_search(Level.STUDY, [("includefield", "00081030,00080060")], {})
    tags = {"StudyInstanceUID": "1.2", "StudyDescription": "CHEST", "ModalitiesInStudy": "CT"}
    assert not qido.needs_stored(search, tags)
    answer = qido.answer(search, tags, {}, None, "http://x/studies/1.2")
    assert "00080060" not in answer and answer["00081030"]["Value"] == ["CHEST"]
    series = qido.parse_search(Level.SERIES, [("includefield", "00080060")], {})
    assert not qido.needs_stored(series, {"Modality": "CT"})
    # a main tag the index lacks is absent from the data: no instance is read to look for it
    assert not qido.needs_stored(search, {"StudyInstanceUID": "1.2"})
    extra = qido.parse_search(Level.STUDY, [("includefield", "InstitutionAddress")], {})
    assert qido.needs_stored(extra, {"StudyInstanceUID": "1.2"})
