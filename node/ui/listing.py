"""The studies list's search form, sort and paging, as plain functions (no I/O).

The form's fields become a ``/tools/find`` query for the index; sorting uses the index's
lookup order, so a page costs the rows it shows, not a read of every study.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

#: column name in the URL -> the index keyword its order comes from
SORT_KEYWORDS = {
    "date": "StudyDate",
    "name": "PatientName",
    "id": "PatientID",
    "accession": "AccessionNumber",
}
DEFAULT_SORT = "date"
PAGE_SIZES = (25, 50, 100, 200)
DEFAULT_PAGE_SIZE = 50
#: the search form's fields, in the order the page shows them
FIELDS = ("name", "patient_id", "accession", "date_from", "date_to", "modality", "description")
_DATE = re.compile(r"^(\d{4})-?(\d{2})-?(\d{2})$")
_WILDCARD = re.compile(r"[*?]")


class FormError(ValueError):
    """A field of the search form that cannot be a query; the page says which."""


@dataclass(frozen=True)
class Search:
    """A studies search as the URL carries it."""

    fields: dict[str, str]
    sort: str = DEFAULT_SORT
    descending: bool = True
    page: int = 1
    size: int = DEFAULT_PAGE_SIZE

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.size


def parse_search(params: Mapping[str, str]) -> Search:
    """The search a query string asks for; bad sort or paging values fall back to the
    defaults (a shared link with a stale parameter still shows studies)."""
    fields = {name: params.get(name, "").strip() for name in FIELDS}
    sort = params.get("sort", DEFAULT_SORT)
    if sort not in SORT_KEYWORDS:
        sort = DEFAULT_SORT
    size = _int(params.get("size"), DEFAULT_PAGE_SIZE)
    return Search(
        fields={name: value for name, value in fields.items() if value},
        sort=sort,
        descending=params.get("dir", "desc" if sort == "date" else "asc") != "asc",
        page=max(1, _int(params.get("page"), 1)),
        size=size if size in PAGE_SIZES else DEFAULT_PAGE_SIZE,
    )


def _int(text: str | None, default: int) -> int:
    try:
        return int(text) if text else default
    except ValueError:
        return default


def _dicom_date(text: str, field: str) -> str:
    match = _DATE.match(text)
    if match is None:
        raise FormError(f"{field}: write the date as YYYY-MM-DD")
    return "".join(match.groups())


def _contains(text: str) -> str:
    """Free text matches anywhere, unless the user wrote wildcards themselves."""
    return text if _WILDCARD.search(text) else f"*{text}*"


def find_query(fields: Mapping[str, str]) -> dict[str, str]:
    """The ``/tools/find`` query for the form's fields (empty: every study).

    Names match anywhere in the value; ids and accession numbers exactly, or as the
    wildcards typed. The description is not indexed and the index matches it only with its
    case, so :func:`description_matches` filters on it. Raises :class:`FormError` for a
    bad date.
    """
    query: dict[str, str] = {}
    if fields.get("name"):
        query["PatientName"] = _contains(fields["name"])
    if fields.get("patient_id"):
        query["PatientID"] = fields["patient_id"]
    if fields.get("accession"):
        query["AccessionNumber"] = fields["accession"]
    if fields.get("modality"):
        query["ModalitiesInStudy"] = fields["modality"].upper()
    low = _dicom_date(fields["date_from"], "from") if fields.get("date_from") else ""
    high = _dicom_date(fields["date_to"], "to") if fields.get("date_to") else ""
    if low and high and low > high:
        raise FormError("the 'from' date is after the 'to' date")
    if low or high:
        query["StudyDate"] = low if low == high else f"{low}-{high}"
    return query


def description_matches(asked: str, description: str) -> bool:
    """Whether a study's description matches the form's text: anywhere in it, whatever
    the case, or as the wildcards typed (``*``, ``?``)."""
    pattern = re.escape(_contains(asked).casefold()).replace(r"\*", ".*").replace(r"\?", ".")
    return re.fullmatch(pattern, description.casefold(), re.DOTALL) is not None


def page_of(ordered: list[str], matching: set[str] | None, search: Search) -> tuple[list[str], int]:
    """(the ids on the asked page, how many match in all), from every id in sort order
    and the matching ids (``None``: all match)."""
    walk: Iterable[str] = reversed(ordered) if search.descending else ordered
    if matching is not None:
        walk = (i for i in walk if i in matching)
        chosen = list(walk)
        return chosen[search.offset : search.offset + search.size], len(chosen)
    listed = list(walk)
    return listed[search.offset : search.offset + search.size], len(listed)


def page_count(total: int, size: int) -> int:
    return max(1, -(-total // size))


# --- how values read on a page ---------------------------------------------------------


def person_name(value: str) -> str:
    """``DOE^JOHN^^DR`` as ``DOE, JOHN DR``; the alphabetic group only."""
    alphabetic = value.split("=")[0]
    family, _, rest = alphabetic.partition("^")
    given = " ".join(part for part in rest.split("^") if part)
    return f"{family}, {given}" if given else family


def dicom_date(value: str) -> str:
    """``20240131`` as ``2024-01-31``; anything else as it is."""
    return f"{value[:4]}-{value[4:6]}-{value[6:8]}" if re.fullmatch(r"\d{8}", value) else value


def dicom_datetime(value: str | None) -> str:
    """``20240131T101500`` (the node's own timestamps) as ``2024-01-31 10:15:00``."""
    if not value:
        return ""
    match = re.fullmatch(r"(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})", value)
    if match is None:
        return value
    y, mo, d, h, mi, s = match.groups()
    return f"{y}-{mo}-{d} {h}:{mi}:{s}"


def byte_size(count: int | None) -> str:
    if count is None:
        return ""
    size = float(count)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"
