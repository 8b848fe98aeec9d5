"""C-FIND identifiers parsed (pure): sequence matching's item keys become constraints on
attributes inside the stored sequences; the sequence itself is asked for, to be returned."""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.tag import Tag

from pacsnode.node.dicom.query import parse_request
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
    assert described([item(RequestedProcedureID="")]) == []
    # PS3.4 allows one item only: two are taken as a request for the sequence alone
    assert described([item(RequestedProcedureID="A"), item(RequestedProcedureID="B")]) == []
