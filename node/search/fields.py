"""How an attribute is named in the search index, and how values are normalized.

Both the documents (:mod:`.documents`) and the queries (:mod:`.query_language`)
name fields here, so the two sides cannot disagree.

A field key is the path from the top-level data set to the attribute, one
component per level, joined with ``.``:

- a standard attribute is its tag in 8 upper-case hex digits: ``00080060``;
- an attribute inside a sequence item follows its sequence: ``00081140.00081155``
  (any item: the item's index is not part of the key);
- a private attribute is its group, its private creator in brackets and the low byte
  of its element: ``0019[GEMS_ACQU_01]10``, whatever block the creator reserved in
  that data set. In the creator, ``%`` and ``]`` are written ``%25`` and ``%5D`` so
  a key reads back unambiguously. A private attribute whose creator is missing is
  keyed with an empty creator, ``0019[]10``.

Values are compared case-insensitively, so text is folded with :func:`fold`.
Numbers, dates and times also get a sort number (:func:`sort_number`) for ranges.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PATH_SEPARATOR = "."

#: VRs whose values are numbers in DICOM JSON
NUMBER_VRS = frozenset({"DS", "IS", "FL", "FD", "SL", "SS", "UL", "US", "SV", "UV"})
#: VRs that order as dates and times: their sort number keeps that order
TEMPORAL_VRS = frozenset({"DA", "TM", "DT"})


@dataclass(frozen=True)
class StandardTag:
    """A public attribute, or any attribute named by its full tag."""

    tag: int

    @property
    def key(self) -> str:
        return f"{self.tag:08X}"


@dataclass(frozen=True)
class PrivateTag:
    """A private attribute: its group, its creator and the low byte of its element."""

    creator: str
    group: int
    element: int  # 0x00-0xFF, the block byte left out

    @property
    def key(self) -> str:
        return f"{self.group:04X}[{escape_creator(self.creator)}]{self.element:02X}"


PathPart = StandardTag | PrivateTag


def escape_creator(creator: str) -> str:
    # % first, so that the escapes of ] are not escaped again
    return creator.strip().replace("%", "%25").replace("]", "%5D")


def path_key(parts: tuple[PathPart, ...]) -> str:
    return PATH_SEPARATOR.join(part.key for part in parts)


def fold(text: str) -> str:
    """Text as indexed and as queried: case-insensitive, padding removed."""
    return text.strip().casefold()


def canonical_number(text: str) -> str | None:
    """One spelling per number (``2.50`` and ``2.5`` both ``2.5``), or None if not one."""
    try:
        value = float(text)
    except ValueError:
        return None
    if value != value or value in (float("inf"), float("-inf")):
        return None
    return format_number(value)


def format_number(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


_ISO_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")


def _temporal_number(digits: str, width: int, fraction: str) -> float | None:
    """Digits padded on the right to ``width`` (``2020`` is ``20200000`` as a DA)."""
    if not digits or len(digits) > width:
        return None
    whole = int(digits.ljust(width, "0"))
    return whole + float(f"0.{fraction}") if fraction else float(whole)


def sort_number(vr: str | None, text: str) -> float | None:
    """A number ordered as the value is: DA ``YYYYMMDD``, TM ``HHMMSS.ffffff``, DT
    ``YYYYMMDDHHMMSS.ffffff`` (offset ignored; microseconds may round), or the number
    itself for numeric VRs and for attributes of unknown VR. None if it has none."""
    text = text.strip()
    iso = _ISO_DATE.match(text)
    if iso:
        text = "".join(iso.groups())
    if vr in TEMPORAL_VRS:
        return _temporal_sort_number(vr, text)
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value == value and abs(value) != float("inf") else None


def _temporal_sort_number(vr: str, text: str) -> float | None:
    if vr == "DT":
        text = re.split(r"[+-]", text, maxsplit=1)[0]  # the UTC offset
    whole, _, fraction = text.partition(".")
    whole = whole.replace(":", "")  # ACR-NEMA times 10:15:00
    if not whole.isdigit() or (fraction and not fraction.isdigit()):
        return None
    width = {"DA": 8, "TM": 6, "DT": 14}[vr]
    return _temporal_number(whole, width, fraction[:6] if vr != "DA" else "")
