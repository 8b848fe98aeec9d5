"""Element-by-element comparison of two datasets, by the round-trip rules of the design note.

Equal means: the same tags; the same VR, or UN where the source VR was unknown;
the same values, DS/IS compared as numbers, binary values compared up to
trailing padding. Not compared: group lengths (gggg,0000), which DICOM JSON
drops; (0008,3002), which the archive uses for the transfer syntax; the
offset tables and Pixel Data container (frames are compared byte for byte
separately).
"""

from __future__ import annotations

from typing import Any

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

_IGNORED = {0x00083002, 0x7FE00001, 0x7FE00002, 0x7FE00010}


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, list | MultiValue):
        return list(value)
    return [] if value is None or value == "" else [value]


def _numbers(value: Any) -> list[float]:
    return [float(item) for item in _as_list(value) if item not in ("", None)]


def differences(source: Dataset, copy: Dataset, path: str = "") -> list[str]:
    found: list[str] = []
    for tag in sorted(set(source.keys()) | set(copy.keys())):
        if tag in _IGNORED or tag.element == 0:
            continue
        where = f"{path}{tag}"
        if tag not in source or tag not in copy:
            found.append(f"{where} only in {'copy' if tag not in source else 'source'}")
            continue
        left, right = source[tag], copy[tag]
        if left.VR != right.VR and right.VR != "UN":
            found.append(f"{where} VR {left.VR} became {right.VR}")
        if left.VR == "SQ":
            if len(left.value) != len(right.value):
                found.append(f"{where} has {len(left.value)} items, copy {len(right.value)}")
                continue
            for index, (a, b) in enumerate(zip(left.value, right.value, strict=True)):
                found.extend(differences(a, b, f"{where}[{index}]."))
        elif left.VR in ("DS", "IS"):
            if _numbers(left.value) != _numbers(right.value):
                found.append(f"{where} {left.value!r} became {right.value!r}")
        elif isinstance(left.value, bytes) and isinstance(right.value, bytes):
            if left.value.rstrip(b"\0 ") != right.value.rstrip(b"\0 "):
                found.append(f"{where} binary value differs")
        elif left.value != right.value:
            found.append(f"{where} {str(left.value)[:60]!r} became {str(right.value)[:60]!r}")
    return found
