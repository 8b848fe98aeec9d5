"""C-FIND identifiers parsed (pure), and sequence matching (PS3.4 C.2.2.2.6): the item keys
become constraints that find candidates; one stored item must match them all; the answer
holds the matching items, cut to the keys asked."""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.tag import Tag

from pacsnode.node.dicom.query import FindRequest, parse_request
from pacsnode.node.ids import Level
from pacsnode.node.query import Kind


def item(**values: object) -> Dataset:
    dataset = Dataset()
    for keyword, value in values.items():
        setattr(dataset, keyword, value)
    return dataset


def identifier(**values: object) -> Dataset:
    return item(QueryRetrieveLevel="STUDY", StudyInstanceUID="", **values)


def described(request_items: list[Dataset]) -> list[tuple[str, Kind, tuple[str, ...]]]:
    request = parse_request(identifier(RequestAttributesSequence=request_items), Level.STUDY)
    assert Tag("RequestAttributesSequence") in request.requested
    return [(c.keyword, c.kind, c.values) for c in request.constraints]


def test_the_keys_of_a_sequences_item_are_matched_inside_it() -> None:
    keys = item(RequestedProcedureID="RP-8", ScheduledProcedureStepID="", AccessionNumber="A*")
    assert described([keys]) == [
        ("RequestAttributesSequence.AccessionNumber", Kind.WILDCARD, ("A*",)),
        ("RequestAttributesSequence.RequestedProcedureID", Kind.EXACT, ("RP-8",)),
    ]


def test_nested_sequences_are_matched_at_their_depth() -> None:
    codes = item(ScheduledProtocolCodeSequence=[item(CodeValue="T-D3000", CodeMeaning="")])
    assert described([codes]) == [
        (
            "RequestAttributesSequence.ScheduledProtocolCodeSequence.CodeValue",
            Kind.EXACT,
            ("T-D3000",),
        )
    ]


def test_a_sequence_without_one_item_of_keys_asks_nothing() -> None:
    assert described([]) == []
    assert described([item(RequestedProcedureID="")]) == []  # returned, cut to that key
    # PS3.4 allows one item only: two are taken as a request for the sequence alone
    assert described([item(RequestedProcedureID="A"), item(RequestedProcedureID="B")]) == []


STORED = {  # an instance's DICOM JSON: two requests, the second with a protocol code
    "00400275": {
        "vr": "SQ",
        "Value": [
            {
                "00401001": {"vr": "SH", "Value": ["RP-7"]},
                "00400009": {"vr": "SH", "Value": ["SPS-1"]},
                "00321060": {"vr": "LO", "Value": ["CHEST CT"]},
            },
            {
                "00401001": {"vr": "SH", "Value": ["RP-8"]},
                "00400009": {"vr": "SH", "Value": ["SPS-2"]},
                "00400008": {
                    "vr": "SQ",
                    "Value": [{"00080100": {"vr": "SH", "Value": ["T-D3000"]}}],
                },
            },
        ],
    }
}


def request_of(*keys: Dataset) -> FindRequest:
    return parse_request(identifier(RequestAttributesSequence=list(keys)), Level.STUDY)


def test_one_item_must_match_every_item_key() -> None:
    both_first = request_of(item(RequestedProcedureID="RP-7", ScheduledProcedureStepID="SPS-1"))
    assert both_first.asks_items and both_first.items_match(STORED)
    # each key matches some item, but no one item matches both: no match (PS3.4)
    crossed = request_of(item(RequestedProcedureID="RP-7", ScheduledProcedureStepID="SPS-2"))
    assert not crossed.items_match(STORED)
    nested = request_of(item(ScheduledProtocolCodeSequence=[item(CodeValue="T-D3000")]))
    assert nested.items_match(STORED)
    assert not request_of(
        item(RequestedProcedureID="RP-7", ScheduledProtocolCodeSequence=[item(CodeValue="T-D3000")])
    ).items_match(STORED)
    assert not request_of(item(RequestedProcedureID="RP-9")).items_match({})


def test_the_answer_holds_the_matching_items_cut_to_the_keys_asked() -> None:
    asked = request_of(item(RequestedProcedureID="RP-8", ScheduledProcedureStepID=""))
    (tag,) = asked.sequences
    answered = asked.sequences[tag].answered(STORED["00400275"])  # type: ignore[union-attr]
    assert answered == [
        {"00400009": {"vr": "SH", "Value": ["SPS-2"]}, "00401001": {"vr": "SH", "Value": ["RP-8"]}}
    ]
    # only returned: every item, cut to the keys
    listed = request_of(item(RequestedProcedureID=""))
    assert not listed.asks_items
    keys = listed.sequences[tag]
    assert keys is not None
    requested = [i["00401001"]["Value"] for i in keys.answered(STORED["00400275"])]
    assert requested == [["RP-7"], ["RP-8"]]
    # no item at all: returned whole
    assert request_of().sequences == {tag: None}
