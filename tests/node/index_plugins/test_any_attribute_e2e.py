"""Any attribute over every query edge of a real ``pacsnode serve`` with the search index
on: QIDO-RS (by keyword and by tag, scoped by the path, mixed with main tags), C-FIND from
DCMTK's findscu and ``/tools/find`` answer by DICOM matching, from the index and at once after
storing or deleting (what the index has not taken in yet is read from the feed)."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from pacsnode.node.ids import Level
from tests.node.index_plugins.corpus import Item, corpus, ids
from tests.node.server import DCMTK_ENV, NodeProcess

pytestmark = pytest.mark.e2e  # a real node process, DCMTK

FAST_COMMITS = "[search]\ncommit_interval_s = 0.05\n"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    process = NodeProcess(tmp_path_factory.mktemp("any-attribute"), FAST_COMMITS).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def items(node: NodeProcess) -> list[Item]:
    stored = corpus()
    for item in stored:
        answer = node.request("POST", "/instances", item.data)
        assert answer.status == 200, answer.body
    caught_up(node)  # the search index's answers, not the feed's, from here on
    return stored


def caught_up(node: NodeProcess) -> None:
    deadline = time.monotonic() + 20
    while node.request("GET", "/statistics").json()["SearchIndexLag"]:
        assert time.monotonic() < deadline, "the search index does not catch up"
        time.sleep(0.05)


def uids(answers: list[dict[str, Any]], tag: str = "0020000D") -> set[str]:
    return {answer[tag]["Value"][0] for answer in answers}


def study_uids(items: list[Item], *names: str) -> set[str]:
    return {i.dataset.StudyInstanceUID for i in items if i.name in names}


def qido(node: NodeProcess, path: str) -> list[dict[str, Any]]:
    answer = node.request("GET", "/dicom-web" + path, headers={"Accept": "application/dicom+json"})
    assert answer.status == 200, answer.body
    assert "Warning" not in answer.headers, answer.headers
    return answer.json()


def test_qido_on_attributes_that_are_not_main_tags(node: NodeProcess, items: list[Item]) -> None:
    assert uids(qido(node, "/studies?BodyPartExamined=CHEST")) == study_uids(items, "a1", "d1")
    assert uids(qido(node, "/studies?00180015=CHEST")) == study_uids(items, "a1", "d1")
    # case-sensitive, as DICOM matches (the index ignores case, the node checks again)
    assert uids(qido(node, "/studies?SeriesDescription=*axial*")) == study_uids(items, "c1")
    mixed = qido(node, "/studies?PatientID=PAT00001&BodyPartExamined=ABDOMEN")
    assert uids(mixed) == study_uids(items, "b1")
    # the value that matched, from the instance that matched (a1 is the study's first)
    for day in ("20240110", "20240120"):
        (study,) = qido(node, f"/studies?PatientID=PAT00001&AcquisitionDate={day}")
        assert study["00080022"]["Value"] == [day]
    a1 = items[0].dataset
    scoped = qido(node, f"/studies/{a1.StudyInstanceUID}/series?SliceThickness=5.0")
    assert uids(scoped, "0020000E") == {a1.SeriesInstanceUID}
    instances = qido(node, "/instances?ImageType=AXIAL&AcquisitionDate=20240101-20240131")
    assert uids(instances, "00080018") == {i.dataset.SOPInstanceUID for i in items[:2]}
    assert len(qido(node, "/instances?ImageType=AXIAL&limit=1&offset=2")) == 1


def test_qido_and_tools_find_inside_sequences(node: NodeProcess, items: list[Item]) -> None:
    # PS3.18's sequence matching, by keywords or tags: an item of the sequence must match
    by_keyword = qido(node, "/studies?RequestAttributesSequence.RequestedProcedureID=RP-8")
    assert uids(by_keyword) == study_uids(items, "a1")
    assert uids(qido(node, "/studies?00400275.00401001=rp-7")) == study_uids(items, "c1")
    steps = qido(node, "/instances?RequestAttributesSequence.ScheduledProcedureStepID=SPS-*")
    assert uids(steps, "00080018") == {
        items[0].dataset.SOPInstanceUID,
        items[3].dataset.SOPInstanceUID,
    }
    # the matched sequence is answered whole, from the stored instance
    (a1,) = by_keyword
    requested = [item["00401001"]["Value"] for item in a1["00400275"]["Value"]]
    assert requested == [["RP-7"], ["RP-8"]]
    query = {"RequestAttributesSequence.RequestedProcedureID": "RP-7\\rp-7"}
    assert set(find(node, {"Level": "Study", "Query": query})) == ids(
        items, Level.STUDY, "a1", "c1"
    )
    refused = node.request(
        "GET",
        "/dicom-web/studies?RequestAttributesSequence=RP-7",
        headers={"Accept": "application/dicom+json"},
    )
    assert refused.status == 400 and "sequence" in refused.json()["Message"], refused.body


def findscu(node: NodeProcess, *keys: str) -> str:
    options = [part for key in keys for part in ("-k", key)]
    done = subprocess.run(
        ["/usr/bin/findscu", "-S", "-aec", "PACSNODE", "127.0.0.1", str(node.dicom_port), *options],
        capture_output=True,
        env=DCMTK_ENV,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stderr.decode("latin-1")


def values(printout: str, tag: str) -> set[str]:
    return {v.strip("\x00 ") for v in re.findall(rf"\({tag}\).*?\[(.*?)\]", printout)}


def test_c_find_on_attributes_that_are_not_main_tags(node: NodeProcess, items) -> None:
    studies = findscu(
        node, "QueryRetrieveLevel=STUDY", "StudyInstanceUID", "BodyPartExamined=CHEST"
    )
    assert values(studies, "0020,000d") == study_uids(items, "a1", "d1")
    series = findscu(
        node,
        "QueryRetrieveLevel=SERIES",
        "SeriesInstanceUID",
        "SliceThickness=5.0",
        "PatientID=PAT00001",
    )
    assert values(series, "0020,000e") == {items[0].dataset.SeriesInstanceUID}
    for part in ("ABDOMEN", "CHEST"):  # answered from the instance that matched
        study = findscu(
            node, "QueryRetrieveLevel=STUDY", "PatientID=PAT00001", f"BodyPartExamined={part}"
        )
        assert values(study, "0018,0015") == {part}
    images = findscu(
        node, "QueryRetrieveLevel=IMAGE", "SOPInstanceUID", "AcquisitionDate=20240111-20240131"
    )
    assert values(images, "0008,0018") == {i.dataset.SOPInstanceUID for i in items[1:3]}
    # sequence matching: the one item's keys, matched by any stored item
    requested = findscu(
        node,
        "QueryRetrieveLevel=STUDY",
        "StudyInstanceUID",
        "RequestAttributesSequence[0].RequestedProcedureID=RP-8",
    )
    assert values(requested, "0020,000d") == study_uids(items, "a1")
    assert values(requested, "0040,1001") == {"RP-8"}  # the matching item only
    # a1's items are (RP-7, SPS-1) and (RP-8): no one item is RP-8 and SPS-1
    crossed = findscu(
        node,
        "QueryRetrieveLevel=STUDY",
        "StudyInstanceUID",
        "RequestAttributesSequence[0].RequestedProcedureID=RP-8",
        "RequestAttributesSequence[0].ScheduledProcedureStepID=SPS-1",
    )
    assert values(crossed, "0020,000d") == set()
    steps = findscu(
        node,
        "QueryRetrieveLevel=STUDY",
        "StudyInstanceUID",
        "RequestAttributesSequence[0].ScheduledProcedureStepID=SPS-*",
    )
    assert values(steps, "0020,000d") == study_uids(items, "a1", "c1")


def find(node: NodeProcess, body: dict[str, Any], path: str = "/tools/find") -> Any:
    answer = node.request("POST", path, body)
    assert answer.status == 200, answer.body
    return answer.json()


def test_tools_find_on_any_attribute_then_after_a_deletion(node: NodeProcess, items) -> None:
    chest = {"Level": "Study", "Query": {"BodyPartExamined": "CHEST"}}
    found = find(node, chest)
    assert set(found) == ids(items, Level.STUDY, "a1", "d1")
    assert find(node, {**chest, "Since": 1, "Limit": 1}) == found[1:]
    assert find(node, chest, "/tools/count-resources") == {"Count": 2}
    expanded = find(
        node,
        {**chest, "Expand": True, "Query": {"BodyPartExamined": "CH*", "PatientID": "PAT00003"}},
    )
    assert [study["ID"] for study in expanded] == sorted(ids(items, Level.STUDY, "d1"))
    deleted = node.request("DELETE", f"/studies/{expanded[0]['ID']}")
    assert deleted.status == 200, deleted.body
    assert set(find(node, chest)) == ids(items, Level.STUDY, "a1")


def test_an_instance_is_found_by_any_attribute_as_soon_as_it_is_stored(
    node: NodeProcess, items: list[Item]
) -> None:
    late = corpus()[0].dataset
    late.SOPInstanceUID += ".9"
    late.SeriesInstanceUID += ".9"  # a series's main tags are its first instance's
    late.BodyPartExamined = "KNEE"
    late.ContrastBolusAgent = "IODINE"
    answer = node.request("POST", "/instances", Item("late", late).data)
    assert answer.status == 200, answer.body
    knee = find(node, {"Level": "Instance", "Query": {"BodyPartExamined": "KNEE"}})
    assert knee == [answer.json()["ID"]]
    assert uids(qido(node, "/studies?BodyPartExamined=KNEE")) == {late.StudyInstanceUID}
    agent = qido(node, f"/studies/{late.StudyInstanceUID}/instances?ContrastBolusAgent=IODINE")
    assert uids(agent, "00080018") == {late.SOPInstanceUID}
