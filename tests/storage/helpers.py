from __future__ import annotations

import io

from pydicom.dataset import Dataset

from benchmarks.synthetic import SeriesSpec, make_instance, p10


def ct_instance(
    index: int = 0, *, patient: int = 1, study: int = 1, series: int = 1, size: int = 64
) -> Dataset:
    return make_instance(SeriesSpec(patient, study, series, index + 1, size), index)


def ct_bytes(index: int = 0, **kwargs: int) -> bytes:
    return p10(ct_instance(index, **kwargs))


def to_bytes(dataset: Dataset) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
