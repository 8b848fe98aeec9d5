"""Query planning (:mod:`pacsnode.node.index_plugins.planning`): which plugin a query goes
to, what it is asked, what the node checks again, and how a stored attribute matches."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from pacsnode.node.errors import BadRequest
from pacsnode.node.ids import Level
from pacsnode.node.index_plugins.maintags import MainTagIndex
from pacsnode.node.index_plugins.planning import (
    Route,
    element_matches,
    instance_matches,
    page,
    plan,
)
from pacsnode.node.query import Constraint, parse_constraint


class Answering:
    """A plugin as planning sees it: what it answers, whether exactly (never asked)."""

    def __init__(self, keywords: set[str] | None = None, exact: bool = False) -> None:
        self.keywords = keywords
        self.exact = exact

    def answers(self, level: Level, keyword: str) -> bool:
        return self.keywords is None or keyword in self.keywords

    def start(self, feed: object) -> None: ...
    def stop(self) -> None: ...
    def lag(self) -> int: ...
    def find(
        self, level: Level, constraints: Sequence[Constraint], limit: int | None, offset: int = 0
    ) -> list[str]: ...


MAIN = MainTagIndex()
EVERY_ATTRIBUTE = Answering()


def parsed(**query: str) -> list[Constraint]:
    return [parse_constraint(keyword, value) for keyword, value in query.items()]


def keywords(constraints: Sequence[Constraint]) -> list[str]:
    return [c.keyword for c in constraints]


def test_main_tags_alone_go_straight_to_the_index_without_asking_any_lag() -> None:
    asked: list[object] = []

    def lag_of(plugin: object) -> int:
        asked.append(plugin)
        return 0

    query = parsed(PatientID="P1", StudyDate="20240101-", BodyPartExamined="")
    chosen = plan(Level.STUDY, query, MAIN, [EVERY_ATTRIBUTE], lag_of, 1000)
    assert chosen.route is Route.DIRECT and chosen.plugin is MAIN
    assert list(chosen.sent) == query  # universal constraints too, as the index took them
    assert not asked


def test_other_attributes_go_to_a_plugin_answering_them_and_are_checked_again() -> None:
    query = parsed(
        PatientID="P1", ModalitiesInStudy="CT", BodyPartExamined="CHEST", ImageComments="*"
    )
    chosen = plan(Level.STUDY, query, MAIN, [EVERY_ATTRIBUTE], lambda p: 3, 1000)
    assert chosen.route is Route.CANDIDATES and chosen.plugin is EVERY_ATTRIBUTE
    # the plugin matches per instance: not a study's modalities, nor a lone star (which
    # an attribute present but empty matches, and no index of values holds)
    assert keywords(chosen.sent) == ["PatientID", "BodyPartExamined"]
    assert keywords(chosen.on_tags) == ["PatientID", "ModalitiesInStudy"]
    assert keywords(chosen.on_instances) == ["BodyPartExamined", "ImageComments"]


def test_a_main_tag_of_a_lower_level_is_another_attribute_for_a_study() -> None:
    chosen = plan(Level.STUDY, parsed(Modality="MR"), MAIN, [EVERY_ATTRIBUTE], lambda p: 0, 9)
    assert chosen.route is Route.CANDIDATES
    series = plan(Level.SERIES, parsed(Modality="MR"), MAIN, [EVERY_ATTRIBUTE], lambda p: 0, 9)
    assert series.route is Route.DIRECT


def test_without_a_plugin_or_with_one_too_far_behind_the_main_tags_find_candidates() -> None:
    query = parsed(PatientID="P1", BodyPartExamined="CHEST")
    off = plan(Level.STUDY, query, MAIN, [], lambda p: 0, 1000)
    assert off.route is Route.FALLBACK and off.plugin is MAIN and off.behind is None
    assert keywords(off.sent) == ["PatientID"] and not off.on_tags
    assert keywords(off.on_instances) == ["BodyPartExamined"]
    behind = plan(Level.STUDY, query, MAIN, [EVERY_ATTRIBUTE], lambda p: 1001, 1000)
    assert behind.route is Route.FALLBACK and behind.behind == 1001


def test_the_first_plugin_answering_every_other_attribute_is_chosen() -> None:
    partial = Answering({"SliceThickness"})
    query = parsed(BodyPartExamined="CHEST")
    chosen = plan(Level.STUDY, query, MAIN, [partial, EVERY_ATTRIBUTE], lambda p: 0, 9)
    assert chosen.plugin is EVERY_ATTRIBUTE
    lone_star = plan(
        Level.STUDY, parsed(ImageComments="*"), MAIN, [EVERY_ATTRIBUTE], lambda p: 0, 9
    )
    assert lone_star.route is Route.FALLBACK  # nothing to ask: reading files is the way


def test_an_exact_plugin_that_is_caught_up_answers_alone() -> None:
    exact = Answering(exact=True)
    query = parsed(PatientID="P1", BodyPartExamined="CHEST")
    chosen = plan(Level.STUDY, query, MAIN, [exact], lambda p: 0, 9)
    assert chosen.route is Route.DIRECT and chosen.plugin is exact
    behind = plan(Level.STUDY, query, MAIN, [exact], lambda p: 2, 9)
    assert behind.route is Route.CANDIDATES  # what it has not seen is read from the feed


@pytest.mark.parametrize(
    ("keyword", "value", "element", "matches"),
    [
        ("BodyPartExamined", "CHEST", {"vr": "CS", "Value": ["CHEST"]}, True),
        ("BodyPartExamined", "chest", {"vr": "CS", "Value": ["CHEST"]}, False),  # case
        ("BodyPartExamined", "CH*", {"vr": "CS", "Value": ["CHEST"]}, True),
        ("BodyPartExamined", "HEAD\\CHEST", {"vr": "CS", "Value": ["CHEST"]}, True),
        ("BodyPartExamined", "CHEST", None, False),
        ("BodyPartExamined", "*", {"vr": "CS"}, True),  # present, empty
        ("BodyPartExamined", "", None, True),  # universal
        ("ImageType", "AXIAL", {"vr": "CS", "Value": ["ORIGINAL", "PRIMARY", "AXIAL"]}, True),
        (
            "ImageType",
            "ORIGINAL\\PRIMARY\\AXIAL",
            {"vr": "CS", "Value": ["ORIGINAL", "PRIMARY", "AXIAL"]},
            True,  # a list: any of its values
        ),
        ("ImageType", "*PRIMARY*", {"vr": "CS", "Value": ["ORIGINAL", "PRIMARY", "AXIAL"]}, True),
        ("SliceThickness", "5.0", {"vr": "DS", "Value": [5.0]}, True),  # JSON has 5
        ("SliceThickness", "5", {"vr": "DS", "Value": [5.0]}, True),
        ("SliceThickness", "5.5", {"vr": "DS", "Value": [5.0]}, False),
        ("SliceThickness", "1\\5.00", {"vr": "DS", "Value": [5.0]}, True),
        ("OperatorsName", "doe*", {"vr": "PN", "Value": [{"Alphabetic": "DOE^J"}]}, True),
        ("AcquisitionDate", "20240101-20240131", {"vr": "DA", "Value": ["20240110"]}, True),
        ("AcquisitionDate", "-20231231", {"vr": "DA", "Value": ["20240110"]}, False),
    ],
)
def test_a_stored_attribute_matches_as_dicom_says(
    keyword: str, value: str, element: dict[str, object] | None, matches: bool
) -> None:
    assert element_matches(parse_constraint(keyword, value), element) is matches


def test_an_instance_matches_when_every_attribute_does() -> None:
    metadata = {
        "00180015": {"vr": "CS", "Value": ["CHEST"]},
        "00180050": {"vr": "DS", "Value": [5]},
    }
    assert instance_matches(parsed(BodyPartExamined="CHEST", SliceThickness="5.0"), metadata)
    assert not instance_matches(parsed(BodyPartExamined="CHEST", SliceThickness="1"), metadata)


def test_inside_sequences_any_item_at_any_depth_matches() -> None:
    def item(**elements: dict[str, object]) -> dict[str, object]:
        return elements

    step = {"vr": "SH", "Value": ["SPS-1"]}
    code = {"vr": "SH", "Value": ["T-D3000"]}
    metadata = {
        "00400275": {  # Request Attributes Sequence: the second item has the step
            "vr": "SQ",
            "Value": [
                item(**{"00401001": {"vr": "SH", "Value": ["RP-7"]}}),
                item(
                    **{
                        "00400009": step,
                        "00400008": {"vr": "SQ", "Value": [item(**{"00080100": code})]},
                    }
                ),
            ],
        },
        "00081140": {"vr": "SQ"},  # an empty sequence
    }
    requests = "RequestAttributesSequence"
    assert instance_matches(parsed(**{f"{requests}.RequestedProcedureID": "RP-7"}), metadata)
    assert instance_matches(parsed(**{f"{requests}.ScheduledProcedureStepID": "SPS*"}), metadata)
    assert not instance_matches(parsed(**{f"{requests}.RequestedProcedureID": "rp-7"}), metadata)
    nested = f"{requests}.ScheduledProtocolCodeSequence.CodeValue"
    assert instance_matches(parsed(**{nested: "T-D3000"}), metadata)
    assert not instance_matches(parsed(**{nested: "T-D4000"}), metadata)
    empty = "ReferencedImageSequence.ReferencedSOPInstanceUID"
    assert not instance_matches(parsed(**{empty: "1.2.3"}), metadata)
    assert not instance_matches(parsed(**{"OtherPatientIDsSequence.PatientID": "X"}), metadata)
    assert instance_matches(parsed(**{empty: ""}), metadata)  # universal: asks nothing


@pytest.mark.parametrize(
    "keyword",
    [
        "PatientName.PatientID",  # not a sequence
        "RequestAttributesSequence.NoSuchKeyword",
        "RequestAttributesSequence.",
        "",
        "RequestAttributesSequence",  # a whole sequence: no value to match
    ],
)
def test_a_path_that_names_no_attribute_in_items_is_refused(keyword: str) -> None:
    with pytest.raises(BadRequest):
        parse_constraint(keyword, "x")


def test_pages() -> None:
    assert page(iter(range(10)), 2, 3) == [2, 3, 4]
    assert page(iter(range(4)), 1, None) == [1, 2, 3] == page(iter(range(4)), 1, 0)
