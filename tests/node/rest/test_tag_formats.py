"""Orthanc's tag formats in-process: ``/tags`` (full, short, simplify), ``/header``, the
tag views of several instances, and the main tags of resources (``?short``, ``?full``)."""

from __future__ import annotations

import io

import pydicom
from aiohttp.test_utils import TestClient
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from pacsnode.node.settings import PrivateTag
from tests.node.rest.conftest import MakeClient, assert_error, get_json, upload

LONG_TEXT = "Lorem ipsum dolor sit amet " * 12  # 324 characters


def rich_instance(patient: str = "DOE^JOHN", study_uid: str | None = None) -> bytes:
    """An instance with a sequence, private values, a long text and binary numbers."""
    ds = Dataset()
    ds.PatientName, ds.PatientID = patient, "P1"
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.Modality, ds.StudyDescription, ds.SeriesDescription = "OT", "Study one", "Series one"
    ds.SoftwareVersions = LONG_TEXT
    ds.FrameIncrementPointer = 0x00181063
    ds.Rows, ds.Columns = 2, 2
    ds.PixelSpacing = [0.5, 0.5]
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = "121327", "DCM", "Full"
    ds.DerivationCodeSequence = Sequence([item])
    ds.add_new(0x00090010, "LO", "Lunit")
    ds.add_new(0x00091001, "DS", "0.75")
    ds.add_new(0x00091002, "LO", "not in the dictionary")
    ds.add_new(0x00091003, "OB", b"\x01\x02")
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


async def lunit_client(make_client: MakeClient) -> TestClient:
    lunit = PrivateTag(tag=0x00091001, vr="DS", name="Abnormality score", creator="Lunit")
    return await make_client(private_tags=(lunit,))


async def test_tags_in_the_three_formats(make_client: MakeClient) -> None:
    client = await lunit_client(make_client)
    instance = f"/instances/{(await upload(client, rich_instance()))['ID']}"
    full = await get_json(client, f"{instance}/tags")
    assert full == await get_json(client, f"{instance}/tags?full")
    assert full["0010,0010"] == {"Name": "PatientName", "Type": "String", "Value": "DOE^JOHN"}
    assert full["0028,0010"]["Value"] == "2" and full["0028,0030"]["Value"] == "0.5\\0.5"
    assert full["0028,0009"]["Value"] == "0018,1063"  # an attribute tag
    assert full["0018,1020"] == {"Name": "SoftwareVersions", "Type": "TooLong", "Value": None}
    assert full["0009,0010"] == {"Name": "PrivateCreator", "Type": "String", "Value": "Lunit"}
    assert full["0009,1001"] == {
        "Name": "Abnormality score",
        "PrivateCreator": "Lunit",
        "Type": "String",
        "Value": "0.75",
    }
    assert full["0009,1002"]["Name"] == "Unknown Tag & Data"
    assert full["0009,1003"]["Type"] == "Null" and full["0009,1003"]["Value"] is None
    sequence = full["0008,9215"]
    assert sequence["Name"] == "DerivationCodeSequence" and sequence["Type"] == "Sequence"
    assert sequence["Value"][0]["0008,0100"]["Value"] == "121327"
    assert "0008,3002" not in full  # pacsnode's own bookkeeping stays out

    short = await get_json(client, f"{instance}/tags?short")
    assert short["0010,0010"] == "DOE^JOHN" and short["0018,1020"] is None
    assert short["0008,9215"] == [{"0008,0100": "121327", "0008,0102": "DCM", "0008,0104": "Full"}]
    simple = await get_json(client, f"{instance}/tags?simplify")
    assert simple == await get_json(client, f"{instance}/simplified-tags")
    assert simple["PatientName"] == "DOE^JOHN" and simple["Abnormality score"] == "0.75"
    assert simple["DerivationCodeSequence"][0]["CodeValue"] == "121327"
    assert simple["SoftwareVersions"] is None
    assert (await get_json(client, f"{instance}/simplified-tags?short"))["0010,0020"] == "P1"


async def test_ignore_length_shows_long_texts(client: TestClient) -> None:
    instance = f"/instances/{(await upload(client, rich_instance()))['ID']}"
    for asked in ("0018-1020", "0018,1020", "SoftwareVersions", "0010-0010;0018-1020"):
        tags = await get_json(client, f"{instance}/tags?ignore-length={asked}")
        assert tags["0018,1020"] == {
            "Name": "SoftwareVersions",
            "Type": "String",
            "Value": LONG_TEXT.strip(),
        }
    bad = await client.get(f"{instance}/tags?ignore-length=NoSuchKeyword")
    await assert_error(bad, 400, "bad-request")


async def test_header_is_the_file_meta_of_the_file(client: TestClient) -> None:
    instance = f"/instances/{(await upload(client, rich_instance()))['ID']}"
    header = await get_json(client, f"{instance}/header")
    file = pydicom.dcmread(io.BytesIO(await (await client.get(f"{instance}/file")).read()))
    assert header["0002,0010"] == {
        "Name": "TransferSyntaxUID",
        "Type": "String",
        "Value": str(file.file_meta.TransferSyntaxUID),
    }
    assert header["0002,0003"]["Value"] == file.SOPInstanceUID
    assert "0002,0001" not in header  # binary: left out, as Orthanc does
    short = await get_json(client, f"{instance}/header?short")
    assert short["0002,0010"] == str(file.file_meta.TransferSyntaxUID)
    simple = await get_json(client, f"{instance}/header?simplify")
    assert simple["MediaStorageSOPClassUID"] == file.SOPClassUID
    await assert_error(await client.get("/instances/nope/header"), 404, "unknown-resource")


async def test_views_of_several_instances(client: TestClient) -> None:
    study_uid = generate_uid()
    first = await upload(client, rich_instance(study_uid=study_uid))
    second = await upload(client, rich_instance(study_uid=study_uid))
    study = f"/studies/{first['ParentStudy']}"
    every = await get_json(client, f"{study}/instances-tags?short")
    assert set(every) == {first["ID"], second["ID"]}
    assert every[first["ID"]]["0010,0020"] == "P1"
    full = await get_json(client, f"{study}/instances-tags")
    assert full[second["ID"]]["0010,0020"]["Name"] == "PatientID"
    shared = await get_json(client, f"{study}/shared-tags?short")
    assert shared["0010,0010"] == "DOE^JOHN" and "0008,0018" not in shared
    assert (await get_json(client, f"{study}/shared-tags"))["0010,0010"]["Value"] == "DOE^JOHN"
    module = await get_json(client, f"{study}/module?short")
    assert module["0008,1030"] == "Study one" and "0010,0010" not in module
    patient = await get_json(client, f"{study}/module-patient?simplify")
    assert patient["PatientName"] == "DOE^JOHN"
    instance = await get_json(client, f"/instances/{first['ID']}/module?full")
    assert instance["0008,0018"]["Name"] == "SOPInstanceUID"


async def test_main_tags_of_resources_in_each_format(client: TestClient) -> None:
    ids = await upload(client, rich_instance())
    study = f"/studies/{ids['ParentStudy']}"
    assert (await get_json(client, study))["MainDicomTags"]["StudyDescription"] == "Study one"
    short = await get_json(client, f"{study}?short")
    assert short["MainDicomTags"]["0008,1030"] == "Study one"
    assert short["PatientMainDicomTags"]["0010,0010"] == "DOE^JOHN"
    full = await get_json(client, f"{study}?full")
    assert full["MainDicomTags"]["0008,1030"] == {
        "Name": "StudyDescription",
        "Type": "String",
        "Value": "Study one",
    }
    assert full["PatientMainDicomTags"]["0010,0010"]["Name"] == "PatientName"
    listed = await get_json(client, "/series?expand&short")
    assert listed[0]["MainDicomTags"]["0008,103e"] == "Series one"
    assert (await get_json(client, "/instances?expand"))[0]["Labels"] == []
    patients = await get_json(client, "/patients?expand&full")
    assert patients[0]["MainDicomTags"]["0010,0020"]["Value"] == "P1"
