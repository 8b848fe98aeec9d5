"""The plain encoder of command sets, identifiers and file meta (node/dicom/encoding.py):
byte for byte what pydicom writes, or ``None`` so that pydicom writes it."""

from __future__ import annotations

import io

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, dimse_messages, dimse_primitives, evt
from pynetdicom.dsutils import create_file_meta, decode, encode, encode_file_meta

from benchmarks.synthetic import SeriesSpec, make_instance, p10
from pacsnode.node.dicom.encoding import encode_plain, file_meta, install, received_p10
from tests.node.server import free_port

SOP = "1.2.826.0.1.3680043.10.1234.1.1.1"


def pydicom_bytes(dataset: Dataset, implicit_vr: bool) -> bytes:
    encoded = encode(dataset, implicit_vr, True)
    assert encoded is not None
    return encoded


def command_sets() -> list[tuple[str, Dataset]]:
    """The command sets of real DIMSE messages, as pynetdicom builds them."""
    store = dimse_primitives.C_STORE()
    store.MessageID, store.Priority = 7, 2
    store.AffectedSOPClassUID, store.AffectedSOPInstanceUID = CTImageStorage, SOP
    store.MoveOriginatorApplicationEntityTitle, store.MoveOriginatorMessageID = "MOVER", 3
    store.DataSet = io.BytesIO(b"\0\0")
    store_response = dimse_primitives.C_STORE()
    store_response.MessageIDBeingRespondedTo, store_response.Status = 7, 0xA700
    store_response.AffectedSOPClassUID, store_response.AffectedSOPInstanceUID = (
        CTImageStorage,
        SOP + "1",  # an odd length: padded with a NUL
    )
    store_response.ErrorComment = "out of space"
    find = dimse_primitives.C_FIND()
    find.MessageIDBeingRespondedTo, find.Status = 1, 0xFF00
    find.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.2.2.1"
    find.Identifier = io.BytesIO(b"\0\0")
    get = dimse_primitives.C_GET()
    get.MessageIDBeingRespondedTo, get.Status = 2, 0xFF00
    get.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.2.2.3"
    get.NumberOfRemainingSuboperations, get.NumberOfCompletedSuboperations = 299, 1
    get.NumberOfFailedSuboperations, get.NumberOfWarningSuboperations = 0, 0
    echo = dimse_primitives.C_ECHO()
    echo.MessageID, echo.AffectedSOPClassUID = 65535, "1.2.840.10008.1.1"
    sets = []
    for name, primitive, message in (
        ("C-STORE-RQ", store, dimse_messages.C_STORE_RQ()),
        ("C-STORE-RSP", store_response, dimse_messages.C_STORE_RSP()),
        ("C-FIND-RSP", find, dimse_messages.C_FIND_RSP()),
        ("C-GET-RSP", get, dimse_messages.C_GET_RSP()),
        ("C-ECHO-RQ", echo, dimse_messages.C_ECHO_RQ()),
    ):
        message.primitive_to_message(primitive)
        sets.append((name, message.command_set))
    return sets


@pytest.mark.parametrize(("name", "command_set"), command_sets())
def test_command_sets_are_encoded_as_pydicom_does(name: str, command_set: Dataset) -> None:
    assert encode_plain(command_set, implicit_vr=True) == pydicom_bytes(command_set, True)


def identifier() -> Dataset:
    """A C-FIND answer as the node makes them: text of every kind, lists, empty keys."""
    answer = Dataset()
    answer.SpecificCharacterSet = "ISO_IR 100"
    answer.QueryRetrieveLevel = "STUDY"
    answer.RetrieveAETitle = "PACSNODE"
    answer.PatientName = "Synthetic^Patient17"
    answer.PatientID = "P17"  # odd: padded with a space
    answer.StudyInstanceUID = "1.2.3"  # odd: padded with a NUL
    answer.StudyDate = "20250102"
    answer.StudyTime = "101112.5"
    answer.AccessionNumber = ""
    answer.ModalitiesInStudy = ["CT", "MR", "SR"]
    answer.StudyDescription = "Chest \\ abdomen"
    answer.ReferringPhysicianName = None
    answer.SOPClassesInStudy = [CTImageStorage, "1.2.840.10008.5.1.4.1.1.4"]
    answer.add_new(0x00091010, "LO", "Private text")
    answer.StationName = "Müller".encode("latin-1")  # encoded by the node: written as is
    answer.OtherPatientIDs = [b"A1", b"B22"]
    answer.add_new(0x00280010, "US", 512)
    answer.add_new(0x00189219, "SS", -2)
    answer.add_new(0x00080000, "UL", 99)  # a retired group length: not written
    return answer


@pytest.mark.parametrize("implicit_vr", [True, False])
def test_identifiers_are_encoded_as_pydicom_does(implicit_vr: bool) -> None:
    answer = identifier()
    plain = encode_plain(answer, implicit_vr)
    assert plain == pydicom_bytes(answer, implicit_vr)
    # and they read back as they were meant
    decoded = decode(io.BytesIO(plain or b""), implicit_vr, True)
    assert decoded.PatientName == "Synthetic^Patient17"
    assert decoded.ModalitiesInStudy == ["CT", "MR", "SR"]
    assert decoded.StudyInstanceUID == "1.2.3"
    assert decoded[0x00189219].value == -2
    assert decoded.AccessionNumber == ""


def test_a_long_text_value_takes_a_long_length_in_explicit_vr() -> None:
    answer = Dataset()
    answer.add_new(0x00081030, "UT", "x" * 70_001)
    answer.add_new(0x00081031, "UC", ["a", "b"])
    for implicit_vr in (True, False):
        assert encode_plain(answer, implicit_vr) == pydicom_bytes(answer, implicit_vr)


def with_(keyword: str, vr: str, value: object) -> Dataset:
    dataset = Dataset()
    dataset.PatientID = "P1"
    dataset.add_new(keyword, vr, value)
    return dataset


@pytest.mark.parametrize(
    ("dataset", "why"),
    [
        (with_("PatientName", "PN", "Müller^Hans"), "not ASCII"),
        (with_("StudyDescription", "LO", ["Thorax", "Bauch ä"]), "not ASCII"),
        (with_("SliceThickness", "DS", "1.25"), "a decimal string"),
        (with_("SeriesNumber", "IS", "3"), "an integer string"),
        (with_("ReferencedStudySequence", "SQ", Sequence([Dataset()])), "a sequence"),
        (with_("Rows", "US", 70_000), "out of range"),
        (with_("LUTDescriptor", "US or SS", [1, 2, 3]), "an ambiguous VR"),
        (with_("FrameIncrementPointer", "AT", 0x00181063), "a tag value"),
        (with_("PixelSpacing", "FD", 0.5), "a float"),
        (with_("InstitutionName", "LO", "x" * 70_000), "too long for a short length"),
    ],
)
def test_what_the_plain_encoder_does_not_write_is_left_to_pydicom(
    dataset: Dataset, why: str
) -> None:
    implicit = encode_plain(dataset, implicit_vr=True)
    explicit = encode_plain(dataset, implicit_vr=False)
    if why == "too long for a short length":
        assert implicit == pydicom_bytes(dataset, True)  # implicit VR has room for it
    else:
        assert implicit is None, why
    assert explicit is None, why


def test_an_element_not_decoded_yet_is_left_to_pydicom() -> None:
    read = pydicom.dcmread(io.BytesIO(p10(make_instance(SeriesSpec(1, 1, 1, 1, 8), 0))))
    assert encode_plain(read, implicit_vr=False) is None


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
@pytest.mark.parametrize("sop", [SOP, SOP + "1"])
def test_file_meta_is_what_pynetdicom_writes_before_a_received_dataset(
    syntax: str, sop: str
) -> None:
    expected = encode_file_meta(
        create_file_meta(sop_class_uid=CTImageStorage, sop_instance_uid=sop, transfer_syntax=syntax)
    )
    assert file_meta(CTImageStorage, sop, syntax) == expected


def test_installed_pynetdicom_messages_use_it_and_still_encode_everything_else() -> None:
    assert install()
    assert dimse_messages.encode is not encode
    # a command set goes the plain way; a dataset with a sequence falls back on pydicom
    _name, command_set = command_sets()[0]
    assert dimse_messages.encode(command_set, True, True) == pydicom_bytes(command_set, True)
    nested = with_("ReferencedStudySequence", "SQ", Sequence([Dataset()]))
    assert dimse_messages.encode(nested, False, True) == pydicom_bytes(nested, False)


def test_a_received_dataset_becomes_the_file_pynetdicom_would_make() -> None:
    """Over a real association: what the node ingests is ``event.encoded_dataset()``."""
    seen: list[bool] = []

    def on_store(event: evt.Event) -> int:
        seen.append(received_p10(event) == event.encoded_dataset(include_meta=True))
        return 0x0000

    scp = AE("ENCODING")
    scp.add_supported_context(CTImageStorage, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    port = free_port()
    server = scp.start_server(
        ("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)]
    )
    try:
        for syntax in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):
            scu = AE("SENDER")
            scu.add_requested_context(CTImageStorage, syntax)
            assoc = scu.associate("127.0.0.1", port, ae_title="ENCODING")
            assert assoc.is_established
            for index in range(2):
                instance = make_instance(SeriesSpec(1, 1, 1, 2, 8), index)
                assert assoc.send_c_store(instance).Status == 0x0000
            assoc.release()
    finally:
        server.shutdown()
    assert seen == [True] * 4
