"""DICOM files that pydicom's writer would not give back byte for byte from DICOM JSON."""

from __future__ import annotations

import io

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

from tests.storage.helpers import ct_instance


def odd_file(*, implementation: str = "1.2.3.4", syntax: str = ExplicitVRLittleEndian) -> Dataset:
    """What pydicom's writer would not give back from DICOM JSON: text numbers with
    leading zeros, NUL padding, a foreign file meta, a private sequence."""
    dataset = ct_instance(0, size=16)
    dataset.SeriesNumber = "0005"  # IS, back from JSON as 5
    dataset.SliceThickness = "0"  # DS, back as 0.0
    dataset.add(DataElement(0x00080070, "LO", "Vendor\0"))  # NUL padding
    dataset.add(DataElement(0x00091010, "LO", "ACME"))
    item = Dataset()
    item.add(DataElement(0x00091001, "LO", "inner"))
    dataset.add(DataElement(0x00091020, "SQ", Sequence([item])))
    dataset.add(DataElement(0x00091030, "OB", bytes(range(256)) * 8))  # bulk data
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = dataset.SOPClassUID
    meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    meta.TransferSyntaxUID = syntax
    meta.ImplementationClassUID = implementation
    meta.SourceApplicationEntityTitle = "MODALITY"
    dataset.file_meta = meta
    return dataset


def to_bytes(dataset: Dataset) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
