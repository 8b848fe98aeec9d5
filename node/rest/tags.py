"""DICOM JSON metadata shown the way Orthanc's ``/tags`` and ``/simplified-tags`` show it."""

from __future__ import annotations

from typing import Any

from pydicom.datadict import keyword_for_tag


def _text(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("Alphabetic", ""))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _name(key: str) -> str:
    return keyword_for_tag(int(key, 16)) or "Unknown Tag & Data"


def _value(element: dict[str, Any], simplify: bool) -> Any:
    if element.get("vr") == "SQ":
        items = element.get("Value", [])
        convert = simplified_tags if simplify else orthanc_tags
        return [convert(item) for item in items]
    if "BulkDataURI" in element or "InlineBinary" in element:
        return None
    values = element.get("Value")
    if not values:
        return None if not simplify else ""
    return "\\".join(_text(value) for value in values)


def orthanc_tags(metadata: dict[str, Any]) -> dict[str, Any]:
    shown: dict[str, Any] = {}
    for key, element in sorted(metadata.items()):
        if key == "00083002":
            continue
        value = _value(element, simplify=False)
        if element.get("vr") == "SQ":
            kind = "Sequence"
        elif "BulkDataURI" in element or "InlineBinary" in element:
            kind = "TooLong"
        else:
            kind = "String" if value is not None else "Null"
        shown[f"{key[:4]},{key[4:]}".lower()] = {"Name": _name(key), "Type": kind, "Value": value}
    return shown


def simplified_tags(metadata: dict[str, Any]) -> dict[str, Any]:
    return {
        _name(key): _value(element, simplify=True)
        for key, element in sorted(metadata.items())
        if key != "00083002" and "BulkDataURI" not in element and "InlineBinary" not in element
    }
