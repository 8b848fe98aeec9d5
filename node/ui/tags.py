"""An instance's DICOM JSON (PS3.18 F.2) as a tree a person can read: tag, keyword, VR,
value, and sequences as nested items. Pure functions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydicom.datadict import keyword_for_tag

#: values longer than this are cut on the page (the REST API has them whole)
_SHOWN_CHARACTERS = 300


@dataclass
class TagNode:
    tag: str  # "(0010,0010)"
    keyword: str
    vr: str
    value: str
    items: list[list[TagNode]] = field(default_factory=list)


def _keyword(tag: str) -> str:
    try:
        keyword = keyword_for_tag(int(tag, 16))
    except ValueError:
        return ""
    if keyword:
        return keyword
    return "(private)" if int(tag[:4], 16) % 2 else ""


def _value(element: dict[str, Any]) -> str:
    if "BulkDataURI" in element:
        return "(binary data, not shown)"
    if "InlineBinary" in element:
        return f"(binary data, {len(element['InlineBinary']) * 3 // 4} bytes)"
    values = element.get("Value", [])
    shown = []
    for value in values:
        if isinstance(value, dict):  # a person name's groups
            shown.append("=".join(value.get(g, "") for g in ("Alphabetic", "Ideographic",
                                                             "Phonetic")).rstrip("="))  # fmt: skip
        else:
            shown.append(str(value))
    text = "\\".join(shown)
    if len(text) > _SHOWN_CHARACTERS:
        return text[:_SHOWN_CHARACTERS] + f"… ({len(text)} characters)"
    return text


def tree(dataset: dict[str, Any]) -> list[TagNode]:
    """The elements of a DICOM JSON object in tag order, sequences nested."""
    nodes = []
    for tag in sorted(dataset):
        element = dataset[tag]
        vr = element.get("vr", "")
        node = TagNode(f"({tag[:4]},{tag[4:]})", _keyword(tag), vr, "")
        if vr == "SQ":
            node.items = [tree(item) for item in element.get("Value", [])]
            node.value = f"{len(node.items)} item" + ("" if len(node.items) == 1 else "s")
        else:
            node.value = _value(element)
        nodes.append(node)
    return nodes
