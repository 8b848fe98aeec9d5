"""DICOMweb tests: pydicom's own test files as the corpus (native, JPEG, RLE, multi-frame)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pydicom
import pytest
from aiohttp.test_utils import TestClient
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames

from pacsnode.node.rest.app import create_app
from tests.node.rest.conftest import MakeClient, MakeCore, node_config

#: single-frame native CT, 30-frame JPEG baseline, 2-frame RLE, 15-frame native implicit
CORPUS = ("CT_small.dcm", "examples_ybr_color.dcm", "SC_rgb_rle_2frame.dcm", "rtdose.dcm")


def corpus_path(name: str) -> Path:
    path = get_testdata_file(name)
    assert path is not None, name
    return Path(path)


def corpus_dataset(name: str) -> Dataset:
    return pydicom.dcmread(corpus_path(name))


def source_frames(dataset: Dataset) -> list[bytes]:
    """The frames of a file as a WADO-RS server must send them: bytes as stored."""
    count = int(dataset.get("NumberOfFrames", 1) or 1)
    if dataset.file_meta.TransferSyntaxUID.is_encapsulated:
        return list(generate_frames(dataset.PixelData, number_of_frames=count))
    data = dataset.PixelData
    size = len(data) // count
    return [data[i * size : (i + 1) * size] for i in range(count)]


@pytest.fixture
def make_client(make_core: MakeCore, aiohttp_client: Any, tmp_path: Path) -> MakeClient:
    """The node's web app in-process over a real core; ``make(dicomweb={...})`` changes
    settings of a section."""

    async def make(**sections: dict[str, Any]) -> TestClient:
        defaults = node_config(tmp_path / "data")
        changed = {
            name: dataclasses.replace(getattr(defaults, name), **values)
            for name, values in sections.items()
        }
        config = dataclasses.replace(defaults, **changed)
        core = make_core(data_dir=config.core.data_dir)
        return await aiohttp_client(create_app(core, config))

    return make


@pytest.fixture
async def client(make_client: MakeClient) -> TestClient:
    return await make_client()
