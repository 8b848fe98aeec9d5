"""``POST /tools/search`` on a real ``pacsnode serve``: the search index follows what is
stored and deleted, answers field, range, wildcard, sequence and free-text queries at
every level with paging, survives a restart, and ``pacsnode reindex --search`` rebuilds it."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset

from tests.node.server import REPO, NodeProcess
from tests.storage.helpers import ct_instance, to_bytes

pytestmark = pytest.mark.e2e  # real node processes

FAST_COMMITS = "[search]\ncommit_interval_s = 0.05\n"


def store(node: NodeProcess, data: bytes) -> dict[str, Any]:
    answer = node.request("POST", "/instances", data)
    assert answer.status == 200, answer.body
    return answer.json()


def pydicom_file(name: str) -> bytes:
    path = get_testdata_file(name)
    assert path is not None
    return Path(path).read_bytes()


def chest_ct() -> bytes:
    """A CT of another patient whose distinctive attributes are not main tags."""
    dataset = ct_instance(0, patient=2, study=2)
    dataset.SeriesDescription = "Axial CHEST 5mm"
    dataset.SliceThickness = "5.0"
    item = Dataset()
    item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    item.ReferencedSOPInstanceUID = "1.2.3.4.5.6.7"
    dataset.ReferencedImageSequence = [item]
    block = dataset.private_block(0x0019, "PACSNODE TEST", create=True)
    block.add_new(0x10, "LO", "Secret protocol")
    return to_bytes(dataset)


def caught_up(node: NodeProcess) -> None:
    deadline = time.monotonic() + 15
    while True:
        lag = node.request("GET", "/statistics").json()["SearchIndexLag"]
        if lag == 0:
            return
        assert time.monotonic() < deadline, f"the search index lags {lag} changes behind"
        time.sleep(0.05)


def search(node: NodeProcess, query: str, **fields: Any) -> Any:
    answer = node.request("POST", "/tools/search", {"Query": query, **fields})
    assert answer.status == 200, answer.body
    return answer.json()


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    process = NodeProcess(tmp_path_factory.mktemp("search"), FAST_COMMITS).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def stored(node: NodeProcess) -> dict[str, dict[str, Any]]:
    found = {f"synthetic{i}": store(node, to_bytes(ct_instance(i))) for i in range(3)}
    found["chest"] = store(node, chest_ct())
    found["ct_small"] = store(node, pydicom_file("CT_small.dcm"))
    found["mr_small"] = store(node, pydicom_file("MR_small.dcm"))
    caught_up(node)
    return found


def ids(stored: dict[str, dict[str, Any]], *names: str, key: str = "ID") -> list[str]:
    return sorted({stored[name][key] for name in names})


def test_field_range_wildcard_and_sequence_queries(node: NodeProcess, stored) -> None:
    everything = list(stored)
    cts = [name for name in everything if name != "mr_small"]
    assert search(node, "Modality:CT", Level="Instance") == ids(stored, *cts)
    assert search(node, "Modality:CT AND SliceThickness:[1 TO 3]", Level="Instance") == ids(
        stored, "synthetic0", "synthetic1", "synthetic2"
    )
    assert search(node, "SliceThickness:[0 TO 1}", Level="Instance") == ids(stored, "mr_small")
    assert search(node, "SeriesDescription:*chest*", Level="Instance") == ids(stored, "chest")
    sequence = "ReferencedImageSequence.ReferencedSOPInstanceUID:1.2.3.4.5.6.7"
    assert search(node, sequence, Level="Instance") == ids(stored, "chest")
    private = '"PACSNODE TEST",0019,xx10:*protocol'
    assert search(node, private, Level="Instance") == ids(stored, "chest")
    other_ids = "OtherPatientIDsSequence.PatientID:1234abcd"
    assert search(node, other_ids, Level="Instance") == ids(stored, "ct_small")
    assert search(node, "Modality:(CT OR MR) AND NOT Modality:CT") == ids(
        stored, "mr_small", key="ParentStudy"
    )


def test_free_text_and_levels(node: NodeProcess, stored) -> None:
    assert search(node, "chest") == ids(stored, "chest", key="ParentStudy")  # Study: the default
    synthetic = ("synthetic0", "synthetic1", "synthetic2")
    assert search(node, '"synthetic series"', Level="Series") == ids(
        stored, *synthetic, key="ParentSeries"
    )
    assert search(node, "Modality:CT", Level="Patient") == ids(
        stored, "synthetic0", "chest", "ct_small", key="ParentPatient"
    )
    assert search(node, "") == ids(stored, *stored, key="ParentStudy")  # empty: everything


def test_paging_and_expand(node: NodeProcess, stored) -> None:
    every = search(node, "Modality:CT", Level="Instance")
    pages = [search(node, "Modality:CT", Level="Instance", Since=s, Limit=2) for s in (0, 2, 4)]
    assert [i for page in pages for i in page] == every
    expanded = search(node, "SeriesDescription:*chest*", Level="Series", Expand=True)
    assert [(s["ID"], s["Type"], s["MainDicomTags"]["SeriesDescription"]) for s in expanded] == [
        (stored["chest"]["ParentSeries"], "Series", "Axial CHEST 5mm")
    ]


def test_bad_queries_answer_400_with_the_position(node: NodeProcess, stored) -> None:
    answer = node.request("POST", "/tools/search", {"Query": "Modality:(CT OR"})
    assert answer.status == 400
    error = answer.json()
    assert error["HttpStatus"] == 400 and error["ErrorCode"] == "bad-search-query"
    assert "position 15" in error["Message"]
    for body in ({"Query": 3}, {"Query": "", "Level": "Frame"}, {"Query": "", "Limit": -1}):
        assert node.request("POST", "/tools/search", body).status == 400


def reindex_search(node: NodeProcess) -> subprocess.CompletedProcess[str]:
    command = ["--config", str(node.config), "reindex", "--search"]
    return subprocess.run(
        [sys.executable, "-m", "pacsnode.node.cli", *command],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_deletion_restart_and_reindex(tmp_path: Path) -> None:
    node = NodeProcess(tmp_path, FAST_COMMITS).start()
    try:
        kept = store(node, to_bytes(ct_instance(0)))
        gone = store(node, chest_ct())
        caught_up(node)
        assert search(node, "chest", Level="Instance") == [gone["ID"]]
        assert node.request("DELETE", f"/instances/{gone['ID']}").status == 200
        caught_up(node)
        assert search(node, "chest", Level="Instance") == []
        node.stop()
        node.start()  # the index is kept: nothing to catch up on
        assert node.request("GET", "/statistics").json()["SearchIndexLag"] == 0
        assert search(node, "Modality:CT", Level="Instance") == [kept["ID"]]
        node.stop()
        rebuilt = reindex_search(node)
        assert rebuilt.returncode == 0, rebuilt.stderr
        assert '"search_indexed": 1' in rebuilt.stdout
        node.start()
        assert search(node, "Modality:CT", Level="Instance") == [kept["ID"]]
    finally:
        node.stop()
