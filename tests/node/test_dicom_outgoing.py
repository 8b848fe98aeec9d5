"""Stored instances sent as their file's bytes (node/dicom/outgoing.py): the same bytes
pydicom would have encoded, and pydicom's own path whenever the bytes cannot go as they
are."""

from __future__ import annotations

import io

import pydicom
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    RLELossless,
)
from pynetdicom import association, build_context
from pynetdicom.dsutils import encode

from benchmarks.synthetic import SeriesSpec, make_instance, p10
from pacsnode.node.dicom.encoding import install
from pacsnode.node.dicom.outgoing import EncodedInstance, outgoing


def stored_file(syntax: str = ExplicitVRLittleEndian) -> bytes:
    instance = make_instance(SeriesSpec(1, 1, 1, 2, 16), 0)
    if syntax != ExplicitVRLittleEndian:
        instance.file_meta.TransferSyntaxUID = syntax
        buffer = io.BytesIO()
        pydicom.dcmwrite(buffer, instance, implicit_vr=True, enforce_file_format=True)
        return buffer.getvalue()
    return p10(instance)


def pydicom_encoded(file: bytes, implicit_vr: bool) -> bytes:
    encoded = encode(pydicom.dcmread(io.BytesIO(file)), implicit_vr, True)
    assert encoded is not None
    return encoded


def test_a_stored_file_goes_as_its_own_bytes_which_are_what_pydicom_would_send() -> None:
    for syntax, implicit_vr in ((ExplicitVRLittleEndian, False), (ImplicitVRLittleEndian, True)):
        file = stored_file(syntax)
        instance = outgoing(file)
        assert isinstance(instance, EncodedInstance)
        assert instance.SOPClassUID == CTImageStorage
        assert instance.file_meta.TransferSyntaxUID == syntax
        sent = instance.encoded(implicit_vr, True, False)
        assert sent is not None and file.endswith(sent)
        assert sent == pydicom_encoded(file, implicit_vr)


def test_another_encoding_is_converted_by_pydicom() -> None:
    assert install()
    file = stored_file(ExplicitVRLittleEndian)
    instance = outgoing(file)
    assert instance.encoded(True, True, False) is None  # implicit VR asked
    assert association.encode(instance, True, True) == pydicom_encoded(file, True)
    assert association.encode(instance, False, True) == pydicom_encoded(file, False)


def test_a_file_without_the_usual_header_is_parsed_as_before() -> None:
    dataset = pydicom.dcmread(io.BytesIO(stored_file()))
    del dataset.file_meta.MediaStorageSOPClassUID  # readable, but not the usual header
    dataset.preamble = b"\0" * 128
    odd = io.BytesIO()
    pydicom.dcmwrite(odd, dataset, enforce_file_format=False)
    sent = outgoing(odd.getvalue())
    assert not isinstance(sent, EncodedInstance)
    assert sent.SOPInstanceUID == dataset.SOPInstanceUID


def test_what_the_peer_accepted_decides_whether_it_goes_as_stored() -> None:
    file = stored_file()
    ct_explicit = build_context(CTImageStorage, [ExplicitVRLittleEndian])
    ct_explicit.context_id = 1
    other = build_context("1.2.840.10008.5.1.4.1.1.4", [ExplicitVRLittleEndian])
    other.context_id = 3
    assert isinstance(outgoing(file, [ct_explicit]), EncodedInstance)
    assert isinstance(outgoing(file, [other]), EncodedInstance)  # nothing for it: as stored
    # compressed, for a peer that took only uncompressed: parsed and decompressed
    compressed = pydicom.dcmread(io.BytesIO(file))
    compressed.compress(RLELossless, generate_instance_uid=False)
    rle = io.BytesIO()
    pydicom.dcmwrite(rle, compressed, enforce_file_format=True)
    assert isinstance(
        outgoing(rle.getvalue(), [build_context(CTImageStorage, [RLELossless])]), EncodedInstance
    )
    sent = outgoing(rle.getvalue(), [ct_explicit])
    assert not isinstance(sent, EncodedInstance)
    assert sent.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert sent.PixelData == pydicom.dcmread(io.BytesIO(file)).PixelData
