"""C-FIND sequence matching (PS3.4 C.2.2.2.6): pure functions.

A sequence key in an identifier holds one item, whose attributes are the item keys.
A stored instance matches when one item of its sequence matches every item key (a
nested sequence key, in turn, by one of that item's nested items); the answer carries
that sequence with the matching items only, each holding only the item keys asked.
A sequence key without an item, or with an empty one, asks nothing: the sequence is
returned whole.

The item keys also become ``Sequence.Keyword`` constraints (:func:`constraints`), which
find the candidates through the index plugins; those match each key in any item, so
:meth:`ItemKeys.matching_items` has the last word on the stored instance.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydicom.dataelem import DataElement

from pacsnode.node.index_plugins.planning import element_matches
from pacsnode.node.query import (
    SEQUENCE_SEPARATOR,
    Constraint,
    Kind,
    identifier_text,
    parse_constraint,
)


@dataclass(frozen=True)
class ItemKey:
    """One attribute of the request's item: matched (unless universal) and returned."""

    json_key: str  # the tag as DICOM JSON names it: 8 upper-case hex digits
    vr: str
    constraint: Constraint | None = None  # None: a key only returned
    nested: ItemKeys | None = None  # a sequence key inside the item

    def matches(self, item: Mapping[str, Any]) -> bool:
        element = item.get(self.json_key)
        if self.nested is not None:
            return self.nested.universal or bool(self.nested.matching_items(element))
        return self.constraint is None or element_matches(self.constraint, element)

    def returned(self, item: Mapping[str, Any]) -> dict[str, Any]:
        """The item's element for the answer (a nested sequence cut to its keys too; one
        the item lacks, empty, as a key the data set lacks is answered)."""
        element = item.get(self.json_key)
        if element is None:
            return {"vr": self.vr}
        if self.nested is None:
            return dict(element)
        return {"vr": "SQ", "Value": self.nested.answered(element)}


@dataclass(frozen=True)
class ItemKeys:
    keys: tuple[ItemKey, ...]

    @property
    def universal(self) -> bool:
        """Whether every item matches (the keys are only to be returned)."""
        return all(
            k.constraint is None and (k.nested is None or k.nested.universal) for k in self.keys
        )

    def matching_items(self, element: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
        """The items of a stored sequence element (DICOM JSON) that match every key."""
        items = (element or {}).get("Value") or []
        return [i for i in items if isinstance(i, Mapping) and all(k.matches(i) for k in self.keys)]

    def answered(self, element: Mapping[str, Any] | None) -> list[dict[str, Any]]:
        """The matching items, each cut to the keys asked (DICOM JSON)."""
        answered = []
        for item in self.matching_items(element):
            answered.append({key.json_key: key.returned(item) for key in self.keys})
        return answered


def parse_item_keys(path: str, sequence: DataElement) -> ItemKeys | None:
    """The item keys of a sequence key; None when it asks nothing but the sequence whole
    (no item, an empty item, or more than one item, which PS3.4 does not allow)."""
    items = sequence.value
    if not items or len(items) != 1 or len(items[0]) == 0:
        return None
    keys = []
    for element in items[0]:
        keyword = element.keyword
        if not keyword:
            continue  # a private key: nothing names it across instances
        nested_path = f"{path}{SEQUENCE_SEPARATOR}{keyword}"
        json_key = f"{int(element.tag):08X}"
        if element.VR == "SQ":
            keys.append(ItemKey(json_key, "SQ", nested=parse_item_keys(nested_path, element)))
            continue
        value = identifier_text(element.value).strip()
        constraint = parse_constraint(nested_path, value) if value else None
        keys.append(ItemKey(json_key, element.VR, constraint=constraint))
    return ItemKeys(tuple(keys)) if keys else None


def constraints(item_keys: ItemKeys | None) -> Iterable[Constraint]:
    """The keys that ask something, as ``Sequence.Keyword`` constraints (any item)."""
    if item_keys is None:
        return
    for key in item_keys.keys:
        if key.nested is not None:
            yield from constraints(key.nested)
        elif key.constraint is not None and key.constraint.kind is not Kind.UNIVERSAL:
            yield key.constraint
