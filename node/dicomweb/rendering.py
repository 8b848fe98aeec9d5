"""Rendered images and thumbnails (PS3.18 8.3.5, 9.5): one frame as JPEG or PNG.

Pixels are decoded with pydicom (numpy, plus Pillow or pylibjpeg for compressed frames)
and encoded with Pillow. They are the ``render`` extra, imported on the first rendered
request only, so a node that never renders pays nothing for them in idle memory.
Grayscale goes through the modality LUT, then the window asked for (``window=C,W``) or
the instance's own, else its value range; MONOCHROME1 is inverted; palette colour is
applied; colour images are sent as RGB.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydicom.dataset import Dataset

from pacsnode.node.dicomweb.errors import NotAcceptable
from pacsnode.node.errors import BadRequest, DomainError

if TYPE_CHECKING:
    import numpy as np

RENDERED_TYPES = ("image/jpeg", "image/png")
THUMBNAIL_SIZE = 128
_MAX_VIEWPORT = 4096


class RenderingUnavailable(DomainError):
    """The optional decoders and encoders are not installed, or cannot read this frame."""

    code = "rendering-unavailable"
    http_status = 406


@dataclass(frozen=True)
class RenderOptions:
    media_type: str = "image/jpeg"
    window: tuple[float, float] | None = None  # (center, width)
    viewport: tuple[int, int] | None = None  # (width, height) to fit in
    quality: int = 90


def parse_options(query: Any, accept: list[str], thumbnail: bool = False) -> RenderOptions:
    """Options from ``window``, ``viewport``, ``quality`` and the Accept header."""
    media_type = next((t for t in accept if t in RENDERED_TYPES), None)
    if media_type is None:
        if accept and not any(t in ("*/*", "image/*") for t in accept):
            raise NotAcceptable(f"rendered images are sent as {' or '.join(RENDERED_TYPES)}")
        media_type = "image/jpeg"
    window = None
    if "window" in query:
        fields = query["window"].split(",")
        try:
            center, width = float(fields[0]), float(fields[1])
        except (ValueError, IndexError):
            raise BadRequest("window is center,width[,function]") from None
        if width <= 0:
            raise BadRequest("the window width must be positive")
        window = (center, width)
    viewport = (THUMBNAIL_SIZE, THUMBNAIL_SIZE) if thumbnail else None
    if "viewport" in query:
        viewport = _viewport(query["viewport"])
    quality = 90
    if "quality" in query:
        try:
            quality = int(query["quality"])
        except ValueError:
            raise BadRequest("quality is a number from 1 to 100") from None
        if not 1 <= quality <= 100:
            raise BadRequest("quality is a number from 1 to 100")
    return RenderOptions(media_type, window, viewport, quality)


def _viewport(text: str) -> tuple[int, int]:
    fields = text.split(",")
    try:
        width, height = int(fields[0]), int(fields[1] if len(fields) > 1 else fields[0])
    except ValueError:
        raise BadRequest("viewport is width,height in pixels") from None
    if not (0 < width <= _MAX_VIEWPORT and 0 < height <= _MAX_VIEWPORT):
        raise BadRequest(f"viewport sizes go from 1 to {_MAX_VIEWPORT}")
    return width, height


def _first(value: Any) -> float:
    try:
        return float(value[0])
    except TypeError:
        return float(value)


def _grayscale_to_8bit(
    pixels: np.ndarray, dataset: Dataset, window: tuple[float, float] | None
) -> np.ndarray:
    import numpy as np
    from pydicom.pixels import apply_modality_lut

    values = apply_modality_lut(pixels, dataset).astype(np.float64)
    if window is None and "WindowCenter" in dataset and "WindowWidth" in dataset:
        window = (_first(dataset.WindowCenter), _first(dataset.WindowWidth))
    if window is None or window[1] <= 0:
        low, high = float(values.min()), float(values.max())
    else:  # PS3.3 C.11.2.1.2.1, the linear function
        center, width = window
        low, high = center - 0.5 - (width - 1) / 2, center - 0.5 + (width - 1) / 2
    scale = 255.0 / (high - low) if high > low else 0.0
    scaled = np.rint(np.clip((values - low) * scale, 0, 255)).astype(np.uint8)
    if dataset.get("PhotometricInterpretation") == "MONOCHROME1":
        scaled = 255 - scaled
    return scaled


def _color_to_8bit(pixels: np.ndarray, dataset: Dataset) -> np.ndarray:
    import numpy as np

    bits = int(dataset.get("BitsStored", dataset.get("BitsAllocated", 8)))
    if bits > 8:
        pixels = pixels >> (bits - 8)
    return pixels.astype(np.uint8)


def render(dataset: Dataset, frame_index: int, options: RenderOptions) -> bytes:
    """Frame ``frame_index`` (from 0) of an instance, encoded as ``options`` ask."""
    try:
        from PIL import Image
        from pydicom.pixels import apply_color_lut, pixel_array
    except ImportError:
        raise RenderingUnavailable(
            "rendering needs numpy and Pillow: pip install 'pacsnode[render]'"
        ) from None
    if "PixelData" not in dataset:
        raise BadRequest("this instance has no image to render")
    try:
        pixels = pixel_array(dataset, index=frame_index)
    except (RuntimeError, NotImplementedError, ValueError) as exc:
        raise RenderingUnavailable(f"cannot decode this frame here: {exc}") from exc
    photometric = str(dataset.get("PhotometricInterpretation", "MONOCHROME2"))
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(pixels, dataset)
        image = Image.fromarray((rgb >> 8 if rgb.dtype.itemsize > 1 else rgb).astype("uint8"))
    elif pixels.ndim == 3:  # colour, already converted to RGB by pydicom
        image = Image.fromarray(_color_to_8bit(pixels, dataset), mode="RGB")
    else:
        image = Image.fromarray(_grayscale_to_8bit(pixels, dataset, options.window), mode="L")
    if options.viewport is not None:
        image.thumbnail(options.viewport)
    output = io.BytesIO()
    if options.media_type == "image/png":
        image.save(output, format="PNG")
    else:
        image.save(output, format="JPEG", quality=options.quality)
    return output.getvalue()
