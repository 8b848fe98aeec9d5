from __future__ import annotations

from typing import Any

import pydicom
import pytest
from pydicom.data import get_testdata_file


def dicom_json(name: str) -> dict[str, Any]:
    """A pydicom test file as DICOM JSON, bulk data as URIs (as the node keeps it)."""
    path = get_testdata_file(name)
    assert path is not None, name
    dataset = pydicom.dcmread(path, stop_before_pixels=True)
    return dataset.to_json_dict(1024, lambda element: f"bulkdata/{element.tag:08X}")


@pytest.fixture(scope="session")
def ct_json() -> dict[str, Any]:
    return dicom_json("CT_small.dcm")
