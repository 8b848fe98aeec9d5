"""Metadata and attachment CRUD, read-only core keys, protection."""

from __future__ import annotations

import pytest

from pacsnode.node.core import NodeCore
from pacsnode.node.errors import BadRequest, NotFound, ReadOnlyMetadata, UnknownResource
from pacsnode.node.ids import Level
from tests.node.conftest import MakeCore
from tests.storage.helpers import ct_bytes


@pytest.fixture
def named(make_core: MakeCore) -> NodeCore:
    return make_core(
        metadata_names={"SampleName": 1024}, attachment_types={"report": (1025, "application/pdf")}
    )


def test_user_metadata_crud(named: NodeCore) -> None:
    study = named.ingest(ct_bytes(0)).ids[Level.STUDY]
    named.annotations.set_metadata(study, "SampleName", "biopsy 7")
    named.annotations.set_metadata(study, "2000", "by number")
    assert named.annotations.get_metadata(study, "SampleName") == "biopsy 7"
    assert named.annotations.get_metadata(study, "1024") == "biopsy 7"
    listed = named.annotations.metadata(study)
    assert listed["SampleName"] == "biopsy 7" and listed["2000"] == "by number"
    assert "LastUpdate" in listed
    named.annotations.delete_metadata(study, "SampleName")
    with pytest.raises(NotFound):
        named.annotations.get_metadata(study, "SampleName")
    with pytest.raises(NotFound):
        named.annotations.delete_metadata(study, "SampleName")
    kinds = [c["ChangeType"] for c in named.changes(0, 100).changes]
    assert kinds.count("UpdatedMetadata") == 3


def test_core_metadata_is_read_only(named: NodeCore) -> None:
    instance = named.ingest(ct_bytes(0)).ids[Level.INSTANCE]
    for name in ("ReceptionDate", "9", "1023"):
        with pytest.raises(ReadOnlyMetadata):
            named.annotations.set_metadata(instance, name, "x")
        with pytest.raises(ReadOnlyMetadata):
            named.annotations.delete_metadata(instance, name)
    assert named.annotations.get_metadata(instance, "ReceptionDate")


def test_metadata_bad_input(named: NodeCore) -> None:
    study = named.ingest(ct_bytes(0)).ids[Level.STUDY]
    with pytest.raises(BadRequest, match="1 KiB"):
        named.annotations.set_metadata(study, "SampleName", "x" * 1025)
    with pytest.raises(BadRequest, match="unknown metadata"):
        named.annotations.set_metadata(study, "NoSuchName", "x")
    with pytest.raises(UnknownResource):
        named.annotations.set_metadata(
            "00000000-00000000-00000000-00000000-00000000", "SampleName", "x"
        )


def test_attachment_crud_and_size_accounting(named: NodeCore) -> None:
    patient = named.ingest(ct_bytes(0)).ids[Level.PATIENT]
    base = named.statistics()["TotalDiskSize"]
    pdf = b"%PDF-1.4 " + b"report " * 1000
    info = named.annotations.put_attachment(patient, "report", pdf)
    assert info.size == len(pdf) and info.compressed_size < len(pdf)
    assert named.annotations.attachment_names(patient) == ["report"]
    assert named.annotations.attachment_data(patient, "report") == pdf
    assert named.annotations.mime_type_of(named.annotations.content_type_of("report")) == (
        "application/pdf"
    )
    assert named.statistics()["TotalDiskSize"] == base + info.compressed_size
    replaced = named.annotations.put_attachment(patient, "report", b"v2", compress=False)
    assert named.annotations.attachment_data(patient, "report") == b"v2"
    assert named.statistics()["TotalDiskSize"] == base + replaced.compressed_size
    named.annotations.delete_attachment(patient, "report")
    assert named.annotations.attachment_names(patient) == []
    assert named.statistics()["TotalDiskSize"] == base
    with pytest.raises(BadRequest):
        named.annotations.put_attachment(patient, "12", b"x")  # core range


def test_deleting_a_resource_deletes_its_attachments(named: NodeCore) -> None:
    patient = named.ingest(ct_bytes(0)).ids[Level.PATIENT]
    info = named.annotations.put_attachment(patient, "report", b"data")
    named.delete(patient)
    with pytest.raises(NotFound):
        named._blobs.get(info.id, compressed=info.compressed)
    assert named.statistics()["TotalDiskSize"] == 0


def test_protection(named: NodeCore) -> None:
    ids = named.ingest(ct_bytes(0)).ids
    assert not named.annotations.is_protected(ids[Level.PATIENT])
    named.annotations.set_protected(ids[Level.PATIENT], True)
    assert named.annotations.is_protected(ids[Level.PATIENT])
    named.annotations.set_protected(ids[Level.PATIENT], False)
    assert not named.annotations.is_protected(ids[Level.PATIENT])
    with pytest.raises(BadRequest):
        named.annotations.set_protected(ids[Level.STUDY], True)
    protections = [c for c in named.changes(0, 100).changes if c["ChangeType"] == "NewProtection"]
    assert [c["Protected"] for c in protections] == [True, False]
