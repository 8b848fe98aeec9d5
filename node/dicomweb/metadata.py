"""Views of the stored study metadata: pure functions.

The study's ``metadata`` entry is sent as stored; its ``BulkDataURI`` values are relative
to the study's URL (``series/{SE}/instances/{I}/bulkdata/{key}``), which resolves the same
against ``/studies/{S}/metadata``. Series and instance metadata are cut from it and sent
from other URLs, so their references are made absolute first.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pacsnode.storage.archive import SERIES_UID_KEY, first_value


def of_series(study: Iterable[dict[str, Any]], series_uid: str) -> list[dict[str, Any]]:
    return [item for item in study if first_value(item, SERIES_UID_KEY) == series_uid]


def absolute_bulk_uris(metadata: dict[str, Any], study_url: str) -> dict[str, Any]:
    """One instance's metadata whose relative ``BulkDataURI`` values are resolved against
    ``study_url`` (``https://host/dicom-web/studies/{S}``). The stored object is not
    changed; only the elements that change are copied (a deep copy of every instance cost
    half of a series' answer)."""
    return _resolved(metadata, study_url.rstrip("/") + "/")


def _resolved(dataset: dict[str, Any], base: str) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, element in dataset.items():
        uri = element.get("BulkDataURI")
        if isinstance(uri, str) and "://" not in uri and not uri.startswith("/"):
            element = {**element, "BulkDataURI": base + uri}
        elif element.get("vr") == "SQ" and element.get("Value"):
            items = [_resolved(i, base) if isinstance(i, dict) else i for i in element["Value"]]
            element = {**element, "Value": items}
        result[key] = element
    return result
