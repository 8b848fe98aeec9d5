"""The change feed: what a change entry looks like, and reading it with a cursor.

Entries are Orthanc-shaped (Seq, ChangeType, ResourceType, ID, Path, Date);
unlike Orthanc, deletions are logged too, with the UIDs of what was deleted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pacsnode.node.ids import Level
from pacsnode.node.index.environment import Txn

MAX_LIMIT = 10_000
_LAST_SHOWN = "last_shown_change"


class ChangeType(StrEnum):
    NEW_PATIENT = "NewPatient"
    NEW_STUDY = "NewStudy"
    NEW_SERIES = "NewSeries"
    NEW_INSTANCE = "NewInstance"
    STABLE_STUDY = "StableStudy"
    STABLE_SERIES = "StableSeries"
    DELETED = "Deleted"
    UPDATED_METADATA = "UpdatedMetadata"
    UPDATED_ATTACHMENT = "UpdatedAttachment"
    NEW_PROTECTION = "NewProtection"
    COMPLETED_SERIES = "CompletedSeries"


NEW_CHANGE_OF_LEVEL = {
    Level.PATIENT: ChangeType.NEW_PATIENT,
    Level.STUDY: ChangeType.NEW_STUDY,
    Level.SERIES: ChangeType.NEW_SERIES,
    Level.INSTANCE: ChangeType.NEW_INSTANCE,
}


def append(
    txn: Txn, change_type: ChangeType, level: Level, resource_id: str, date: str, **extra: Any
) -> int:
    """Append a change in the current transaction; return its sequence number."""
    seq = txn.append_change(
        {
            "ChangeType": change_type.value,
            "ResourceType": level.value,
            "ID": resource_id,
            "Path": f"/{level.plural}/{resource_id}",
            "Date": date,
            **extra,
        }
    )
    if change_type is not ChangeType.DELETED:  # Orthanc's view ends at the last of these
        txn.set_global(_LAST_SHOWN, str(seq))
    return seq


@dataclass(frozen=True)
class ChangePage:
    """One page of a numbered feed (the change feed, or the exports log)."""

    changes: list[dict[str, Any]]
    done: bool
    last: int

    def as_json(self, key: str = "Changes") -> dict[str, Any]:
        return {key: self.changes, "Done": self.done, "Last": self.last}


Shown = Callable[[dict[str, Any]], bool]


_SCAN_CHUNK = 1000
#: hidden entries one request may pass over before answering a partial page (Done false)
_MAX_SCANNED = 100_000


def page_after(
    txn: Txn, since: int, limit: int, feed: str = "changes", shown: Shown | None = None
) -> ChangePage:
    """Entries after ``since`` (a cursor: the ``Last`` of the previous page).

    With ``shown``, only the entries it accepts count: the page fills with ``limit`` of
    them, passing over the others, so ``Done`` means no accepted entry is left.
    """
    limit = max(1, min(limit, MAX_LIMIT))
    if shown is None:
        entries = txn.feed_after(feed, since, limit + 1)
        done = len(entries) <= limit
        entries = entries[:limit]
        return ChangePage(entries, done, entries[-1]["Seq"] if entries else max(since, 0))
    found: list[dict[str, Any]] = []
    cursor, scanned = max(since, 0), 0
    while scanned < _MAX_SCANNED:
        chunk = txn.feed_after(feed, cursor, _SCAN_CHUNK)
        for entry in chunk:
            if len(found) == limit:
                return ChangePage(found, False, cursor)
            cursor, scanned = entry["Seq"], scanned + 1
            if shown(entry):
                found.append(entry)
        if len(chunk) < _SCAN_CHUNK:  # the end: Last is the feed's, as Orthanc answers
            return ChangePage(found, True, _last_number(txn, feed))
    return ChangePage(found, False, cursor)


def last_page(txn: Txn, feed: str = "changes", shown: Shown | None = None) -> ChangePage:
    """Only the newest entry (``shown`` accepts) as Orthanc's ``?last``; when there is none,
    ``Last`` is 0 for a plain feed and the feed's last number for a filtered view."""
    for entry in txn.feed_newest_first(feed):
        if shown is None or shown(entry):
            return ChangePage([entry], True, entry["Seq"])
    return ChangePage([], True, _last_number(txn, feed) if shown is not None else 0)


def _last_number(txn: Txn, feed: str) -> int:
    """The ``Last`` of an exhausted filtered view: Orthanc logs no deletions, so its
    numbering ends at the last change that is not one."""
    return txn.counter(_LAST_SHOWN) if feed == "changes" else txn.feed_last_seq(feed)


def of_existing_resource(txn: Txn) -> Shown:
    """Orthanc's view of the change feed: a resource's changes go with it, and deletions
    are not changes. (The node keeps both, for peers that mirror deletions.)"""

    def shown(entry: dict[str, Any]) -> bool:
        if entry["ChangeType"] == ChangeType.DELETED or txn.resource(entry["ID"]) is None:
            return False
        return entry["Seq"] > txn.removed_at(entry["ID"])  # not about an earlier incarnation

    return shown


def append_export(
    txn: Txn, level: Level, resource_id: str, remote: str, uids: dict[str, str], date: str
) -> int:
    """Log a resource sent to a modality or a peer, as Orthanc's ``/exports`` shows it."""
    return txn.append_to_feed(
        "exports",
        {
            "ResourceType": level.value,
            "ID": resource_id,
            "Path": f"/{level.plural}/{resource_id}",
            "RemoteModality": remote,
            "Date": date,
            **uids,
        },
    )
