"""The index plugin contract (:mod:`pacsnode.node.index_plugins.contract`), one suite run
against every plugin in ``PLUGINS`` (conftest): fed the same instances through a real
node's change feed, each answers the same queries on main tags (exact values, wildcards,
ranges, lists, at every level, paged), any attribute it claims, and forgets what is
deleted. A plugin that is not ``exact`` may answer more (values that differ in case),
never less; a query on attributes a plugin does not claim (``answers``) is not asked of it.
Another plugin joins with a line in ``PLUGINS`` (conftest)."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from pacsnode.node.ids import Level
from pacsnode.node.index_plugins.contract import IndexPlugin
from pacsnode.node.query import Constraint, parse_constraint
from tests.node.index_plugins.conftest import Fed, caught_up
from tests.node.index_plugins.corpus import ids

EVERYONE = ("a1", "a2", "b1", "c1", "d1")


def constraints(**query: str) -> list[Constraint]:
    return [parse_constraint(keyword, value) for keyword, value in query.items()]


def answered(plugin: IndexPlugin, level: Level, query: list[Constraint]) -> list[str]:
    found = plugin.find(level, query, None, 0)
    assert len(found) == len(set(found)), "an answer names a resource twice"
    return found


def check(
    fed: Fed, level: Level, query: dict[str, str], names: Iterable[str], maybe: Iterable[str] = ()
) -> None:
    """The plugin answers the resources above ``names``; one that is not exact may add
    those above ``maybe``. A query on attributes it does not claim is not its to answer."""
    if not all(fed.plugin.answers(level, keyword) for keyword in query):
        return
    found = set(answered(fed.plugin, level, constraints(**query)))
    expected = ids(fed.items, level, *names)
    if fed.plugin.exact:
        assert found == expected
    else:
        assert expected <= found <= expected | ids(fed.items, level, *maybe)


def claims(fed: Fed, level: Level, *keywords: str) -> None:
    if not all(fed.plugin.answers(level, keyword) for keyword in keywords):
        pytest.skip(f"the plugin does not answer {', '.join(keywords)} at the {level} level")


# --- main tags ---------------------------------------------------------------------------


def test_exact_values_at_every_level(fed: Fed) -> None:
    check(fed, Level.PATIENT, {"PatientID": "PAT00002"}, ["c1"])
    check(fed, Level.STUDY, {"PatientID": "PAT00001"}, ["a1", "b1"])
    a1 = next(item for item in fed.items if item.name == "a1").dataset
    check(fed, Level.SERIES, {"SeriesInstanceUID": a1.SeriesInstanceUID}, ["a1"])
    check(fed, Level.INSTANCE, {"SOPInstanceUID": a1.SOPInstanceUID}, ["a1"])
    check(fed, Level.SERIES, {"Modality": "MR"}, ["c1"])
    check(fed, Level.STUDY, {"PatientID": "PAT00009"}, [])


def test_wildcards_ranges_and_lists(fed: Fed) -> None:
    check(fed, Level.PATIENT, {"PatientName": "*patient1"}, ["a1"])  # names ignore case
    check(fed, Level.PATIENT, {"PatientID": "PAT0000?"}, EVERYONE)
    check(fed, Level.STUDY, {"StudyDate": "20260301-"}, ["d1"])
    check(fed, Level.STUDY, {"StudyDate": "20260101-20260228"}, ["a1", "c1"])
    check(fed, Level.SERIES, {"Modality": "CT\\MR"}, EVERYONE)
    check(fed, Level.STUDY, {"PatientID": "PAT00002\\PAT00003"}, ["c1", "d1"])


def test_every_resource_of_a_level_without_constraints(fed: Fed) -> None:
    for level in Level:
        check(fed, level, {}, EVERYONE)
    check(fed, Level.STUDY, {"PatientSex": ""}, EVERYONE)  # universal matching


def test_pages_cover_every_answer_once_in_a_stable_order(fed: Fed) -> None:
    everything = answered(fed.plugin, Level.INSTANCE, [])
    pages = [fed.plugin.find(Level.INSTANCE, [], 2, offset) for offset in (0, 2, 4)]
    assert [len(page) for page in pages] == [2, 2, 1]
    assert [i for page in pages for i in page] == everything
    assert fed.plugin.find(Level.INSTANCE, [], 2, 0) == pages[0]
    assert fed.plugin.find(Level.INSTANCE, [], 10, 5) == []


# --- any attribute, for the plugins that claim it -------------------------------------------


def test_attributes_that_are_not_main_tags_at_the_level(fed: Fed) -> None:
    claims(fed, Level.STUDY, "BodyPartExamined", "SeriesDescription", "Modality")
    check(fed, Level.STUDY, {"BodyPartExamined": "CHEST"}, ["a1", "d1"])
    check(fed, Level.STUDY, {"BodyPartExamined": "HEAD\\ABDOMEN"}, ["b1", "c1"])
    check(fed, Level.STUDY, {"Modality": "MR"}, ["c1"])
    # an instance of the study has it: the abdomen series counts for patient 1's study
    check(fed, Level.STUDY, {"SeriesDescription": "Coronal*"}, ["b1"])


def test_any_attribute_at_the_series_and_instance_levels(fed: Fed) -> None:
    claims(fed, Level.INSTANCE, "SliceThickness", "ImageType", "AcquisitionDate")
    check(fed, Level.SERIES, {"SliceThickness": "5.0"}, ["a1"])
    check(fed, Level.INSTANCE, {"AcquisitionDate": "20240101-20240131"}, ["a1", "a2", "b1"])
    check(fed, Level.INSTANCE, {"AcquisitionDate": "20240112"}, ["a2"])
    check(fed, Level.INSTANCE, {"ImageType": "*AXIAL*"}, ["a1", "a2", "c1"])


def test_values_that_differ_in_case_are_left_to_the_node(fed: Fed) -> None:
    """DICOM matching tells ``axial`` from ``AXIAL`` and ``Axial``; a plugin that is not
    exact may answer all three, an exact one only the first."""
    claims(fed, Level.STUDY, "SeriesDescription")
    check(fed, Level.STUDY, {"SeriesDescription": "*axial*"}, ["c1"], maybe=["a1", "d1"])


def test_main_tags_and_other_attributes_together(fed: Fed) -> None:
    claims(fed, Level.STUDY, "PatientID", "BodyPartExamined")
    check(fed, Level.STUDY, {"PatientID": "PAT00001", "BodyPartExamined": "ABDOMEN"}, ["b1"])
    check(fed, Level.STUDY, {"PatientID": "PAT00002", "BodyPartExamined": "CHEST"}, [])
    # every constraint on the same instance: no instance is both CT and HEAD
    check(fed, Level.STUDY, {"Modality": "CT", "BodyPartExamined": "HEAD"}, [])


def test_attributes_inside_sequence_items(fed: Fed) -> None:
    """A path into a sequence (``Sequence.Keyword``) matches when any item does."""
    requested = "RequestAttributesSequence.RequestedProcedureID"
    claims(fed, Level.STUDY, requested)
    check(fed, Level.STUDY, {requested: "RP-8"}, ["a1"])  # a1's second item
    check(fed, Level.STUDY, {requested: "RP-7"}, ["a1"], maybe=["c1"])  # c1's is rp-7
    step = "RequestAttributesSequence.ScheduledProcedureStepID"
    check(fed, Level.INSTANCE, {step: "SPS-*"}, ["a1", "c1"])
    check(fed, Level.STUDY, {requested: "RP-9"}, [])


# --- following the feed --------------------------------------------------------------------


def test_deleted_resources_are_no_longer_answered(fresh: Fed) -> None:
    plugin, core = fresh.plugin, fresh.core
    study = ids(fresh.items, Level.STUDY, "a1").pop()
    core.delete(study)
    caught_up(plugin)
    check(fresh, Level.STUDY, {}, ["c1", "d1"])
    check(fresh, Level.INSTANCE, {"PatientID": "PAT00001"}, [])
    core.ingest(next(item for item in fresh.items if item.name == "b1").data)
    caught_up(plugin)
    check(fresh, Level.INSTANCE, {"PatientID": "PAT00001"}, ["b1"])


def test_answers_claims_only_real_attributes(fed: Fed) -> None:
    assert not fed.plugin.answers(Level.STUDY, "NoSuchKeyword")
    assert any(
        fed.plugin.answers(Level.STUDY, keyword)
        for keyword in ("PatientID", "StudyDate", "BodyPartExamined")
    )
    assert fed.plugin.lag() == 0
