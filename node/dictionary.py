"""The configured private attributes, added to pydicom's private dictionary.

A file in Implicit VR Little Endian carries no VRs: without a dictionary entry a
private attribute reads as UN. Orthanc's ``Dictionary`` setting fixes that for
named private creators; ``[[private_tags]]`` does the same here, once per process,
before anything is parsed.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydicom.datadict import add_private_dict_entries

from pacsnode.node.settings import PrivateTag


def register_private_tags(tags: Iterable[PrivateTag]) -> None:
    by_creator: dict[str, dict[int, tuple[str, str, str, str]]] = {}
    for tag in tags:
        by_creator.setdefault(tag.creator, {})[tag.tag] = (tag.vr, "1", tag.name, "")
    for creator, entries in by_creator.items():
        add_private_dict_entries(creator, entries)
