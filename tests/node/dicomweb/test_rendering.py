"""Rendered frames and thumbnails: the pure renderer, then over HTTP."""

from __future__ import annotations

import io

import numpy as np
import pytest
from aiohttp.test_utils import TestClient
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from pacsnode.node.dicomweb.errors import NotAcceptable
from pacsnode.node.dicomweb.rendering import RenderOptions, parse_options, render
from pacsnode.node.errors import BadRequest
from tests.node.dicomweb.conftest import corpus_dataset, corpus_path
from tests.node.rest.conftest import upload


def _gray(values: np.ndarray, **attributes: object) -> Dataset:
    dataset = Dataset()
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.Rows, dataset.Columns = values.shape
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = "MONOCHROME2"
    dataset.BitsAllocated = dataset.BitsStored = 16
    dataset.HighBit = 15
    dataset.PixelRepresentation = 1
    dataset.PixelData = values.astype("<i2").tobytes()
    for keyword, value in attributes.items():
        setattr(dataset, keyword, value)
    return dataset


def _decoded(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def test_window_and_rescale_map_values_to_gray_levels():
    values = np.array([[0, 1000], [2000, 3000]])
    dataset = _gray(values, RescaleSlope=1, RescaleIntercept=-1000)  # -1000 .. 2000 HU
    png = render(dataset, 0, RenderOptions("image/png", window=(0.5, 1001)))  # -500 .. 500
    pixels = _decoded(png)
    assert pixels[0, 0] == 0 and pixels[1, 0] == 255  # below and above the window
    assert pixels[0, 1] == 128  # 0 HU, the middle of the window
    inverted = render(
        _gray(values, PhotometricInterpretation="MONOCHROME1"), 0, RenderOptions("image/png")
    )
    assert _decoded(inverted)[0, 0] == 255  # the lowest value is white in MONOCHROME1


def test_the_instances_window_applies_when_none_is_asked():
    dataset = _gray(np.array([[0, 100], [200, 300]]), WindowCenter=150.5, WindowWidth=101)
    pixels = _decoded(render(dataset, 0, RenderOptions("image/png")))
    assert pixels[0, 1] == 0 and pixels[1, 0] == 255


def test_options_from_the_query_and_accept():
    options = parse_options(
        {"window": "40,400,linear", "viewport": "64,32", "quality": "50"}, ["image/png"]
    )
    assert options == RenderOptions("image/png", (40.0, 400.0), (64, 32), 50)
    assert parse_options({}, [], thumbnail=True).viewport == (128, 128)
    for query in ({"window": "x"}, {"viewport": "0,5"}, {"quality": "101"}):
        with pytest.raises(BadRequest):
            parse_options(query, ["image/jpeg"])
    with pytest.raises(NotAcceptable):
        parse_options({}, ["image/gif"])


async def test_rendered_frames_and_thumbnails_over_http(client: TestClient):
    for name in ("CT_small.dcm", "examples_ybr_color.dcm", "SC_rgb_rle_2frame.dcm"):
        await upload(client, corpus_path(name).read_bytes())
    ct = corpus_dataset("CT_small.dcm")
    base = (
        f"/dicom-web/studies/{ct.StudyInstanceUID}/series/{ct.SeriesInstanceUID}"
        f"/instances/{ct.SOPInstanceUID}"
    )
    response = await client.get(f"{base}/rendered", headers={"Accept": "image/jpeg"})
    assert response.status == 200 and response.content_type == "image/jpeg"
    image = Image.open(io.BytesIO(await response.read()))
    assert image.size == (ct.Columns, ct.Rows) and image.mode == "L"
    thumbnail = await client.get(f"/dicom-web/studies/{ct.StudyInstanceUID}/thumbnail")
    assert max(Image.open(io.BytesIO(await thumbnail.read())).size) <= 128
    jpeg = corpus_dataset("examples_ybr_color.dcm")
    frame = await client.get(
        f"/dicom-web/studies/{jpeg.StudyInstanceUID}/series/{jpeg.SeriesInstanceUID}"
        f"/instances/{jpeg.SOPInstanceUID}/frames/30/rendered",
        headers={"Accept": "image/png"},
    )
    assert frame.status == 200, await frame.text()
    assert Image.open(io.BytesIO(await frame.read())).mode == "RGB"
    beyond = await client.get(
        f"/dicom-web/studies/{jpeg.StudyInstanceUID}/series/{jpeg.SeriesInstanceUID}"
        f"/instances/{jpeg.SOPInstanceUID}/frames/31/rendered"
    )
    assert beyond.status == 404
