"""Deterministic synthetic DICOM data (seeded) for tests and benchmarks.

CT slices have smooth anatomy-like content plus noise, so compression ratios
are honest: neither the flat images that deflate to nothing nor pure noise.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, SecondaryCaptureImageStorage

UID_ROOT = "1.2.826.0.1.3680043.10.1234"


def uid(*parts: int) -> str:
    return ".".join([UID_ROOT, *(str(part) for part in parts)])


@dataclass(frozen=True)
class SeriesSpec:
    patient: int
    study: int
    series: int
    count: int
    size: int = 512
    modality: str = "CT"
    seed: int = 0


def _slice_pixels(size: int, position: int, rng: np.random.Generator) -> np.ndarray:
    axis = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    x, y = np.meshgrid(axis, axis)
    radius = np.sqrt(x**2 + (1.2 * y) ** 2)
    body = np.where(radius < 0.85, 1000.0 + 80.0 * np.cos(6 * x + position * 0.05), 0.0)
    organ = np.where(
        (x - 0.3) ** 2 + (y + 0.1) ** 2 < 0.04 + 0.01 * np.sin(position * 0.1), 300.0, 0.0
    )
    bone = np.where(np.abs(radius - 0.7) < 0.03, 1400.0, 0.0)
    noise = rng.normal(0.0, 12.0, size=(size, size))
    image = body + organ + bone + noise
    return np.clip(image, 0, 4095).astype(np.uint16)


def make_instance(spec: SeriesSpec, index: int) -> Dataset:
    rng = np.random.default_rng((spec.seed, spec.patient, spec.study, spec.series, index))
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage if spec.modality == "CT" else SecondaryCaptureImageStorage
    ds.SOPInstanceUID = uid(spec.patient, spec.study, spec.series, index + 1)
    ds.StudyInstanceUID = uid(spec.patient, spec.study)
    ds.SeriesInstanceUID = uid(spec.patient, spec.study, spec.series)
    ds.PatientID = f"PAT{spec.patient:05d}"
    ds.PatientName = f"Synthetic^Patient{spec.patient}"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyDate = f"2026{(spec.study % 12) + 1:02d}15"
    ds.StudyTime = "101500"
    ds.StudyID = str(spec.study)
    ds.AccessionNumber = f"ACC{spec.patient:04d}{spec.study:02d}"
    ds.StudyDescription = "Synthetic study"
    ds.SeriesDescription = f"Synthetic series {spec.series}"
    ds.Modality = spec.modality
    ds.SeriesNumber = spec.series
    ds.InstanceNumber = index + 1
    ds.ImagePositionPatient = [0.0, 0.0, float(index)]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.SliceThickness = 1.0
    ds.PixelSpacing = [0.7, 0.7]
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    ds.Rows = ds.Columns = spec.size
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PixelData = _slice_pixels(spec.size, index, rng).tobytes()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    return ds


def p10(dataset: Dataset) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def series_files(spec: SeriesSpec) -> Iterator[bytes]:
    for index in range(spec.count):
        yield p10(make_instance(spec, index))


def ct_study(count: int = 300, size: int = 512, patient: int = 1) -> Iterator[bytes]:
    """Set A: one CT study of ``count`` slices of ``size`` x ``size`` uint16."""
    return series_files(SeriesSpec(patient, 1, 1, count, size))


def small_instances(patients: int = 100, per_series: int = 10) -> Iterator[bytes]:
    """Set B: 64x64 instances, ``patients`` patients with 2 series each."""
    for patient in range(1, patients + 1):
        for series in (1, 2):
            yield from series_files(SeriesSpec(patient, 1, series, per_series, 64))


_TEMPLATE_PATIENT = 987654  # six digits: every patient number put in its place has six too


def _small_templates() -> list[tuple[bytes, bytes]]:
    """Set B's 20 instances of one patient, split before the pixel data element."""
    templates = []
    for series in (1, 2):
        spec = SeriesSpec(_TEMPLATE_PATIENT, 1, series, 10, 64)
        for index in range(spec.count):
            blob = p10(make_instance(spec, index))
            pixels = blob.rindex(b"\xe0\x7f\x10\x00")  # (7FE0,0010), little endian
            templates.append((blob[:pixels], blob[pixels:]))
    return templates


def many_small_instances(first_patient: int, patients: int) -> Iterator[bytes]:
    """Set B's shape (20 instances a patient) for many patients, fast enough for 100k.

    One patient is made with pydicom; the others are copies with the patient
    number (in every UID, the PatientID, name and accession number) replaced by
    one of the same length, so only the header differs. ``first_patient`` and
    the last one must have six digits.
    """
    if not (100_000 <= first_patient and first_patient + patients <= 1_000_000):
        raise ValueError("patient numbers must have six digits")
    templates = _small_templates()
    placeholder = str(_TEMPLATE_PATIENT).encode()
    for patient in range(first_patient, first_patient + patients):
        number = str(patient).encode()
        for header, pixels in templates:
            yield header.replace(placeholder, number) + pixels
