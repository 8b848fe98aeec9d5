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
#: before Orthanc numbering existed: the feed seq of the last change that is not a deletion
_LAST_SHOWN = "last_shown_change"
#: the last number Orthanc's view gave, and the feed seq below which it numbers as the feed
_LAST_ORTHANC = "last_orthanc_change"
_ORTHANC_BASE = "orthanc_numbering_base"


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
    """Append a change in the current transaction; return its sequence number.

    A change that is not a deletion also gets Orthanc's number (``OrthancSeq``): Orthanc
    logs no deletions, so its numbers run on without them, and ``/changes`` shows those."""
    if change_type is not ChangeType.DELETED:
        extra = {**extra, "OrthancSeq": _number_for_orthanc(txn, txn.last_change() + 1)}
    return txn.append_change(
        {
            "ChangeType": change_type.value,
            "ResourceType": level.value,
            "ID": resource_id,
            "Path": f"/{level.plural}/{resource_id}",
            "Date": date,
            **extra,
        }
    )


def _number_for_orthanc(txn: Txn, seq: int) -> int:
    if txn.get_global(_ORTHANC_BASE) is None:
        # Changes logged before Orthanc numbering keep their feed seq as their number.
        txn.set_global(_ORTHANC_BASE, str(seq - 1))
        txn.set_global(_LAST_ORTHANC, str(max(seq - 1, txn.counter(_LAST_SHOWN))))
    number = txn.counter(_LAST_ORTHANC) + 1
    txn.set_global(_LAST_ORTHANC, str(number))
    txn.map_orthanc_number(number, seq)
    return number


def last_orthanc_number(txn: Txn) -> int:
    return txn.counter(_LAST_ORTHANC) or txn.counter(_LAST_SHOWN)


def _feed_position(txn: Txn, since: int) -> int:
    """The feed cursor at which entries numbered above Orthanc's ``since`` begin."""
    base = txn.get_global(_ORTHANC_BASE)
    if base is None or since < int(base):
        return max(since, 0)  # numbered as the feed numbers them
    seq = txn.seq_of_orthanc_number_after(since)
    return txn.last_change() if seq is None else seq - 1


def as_orthanc_shows(entry: dict[str, Any]) -> dict[str, Any]:
    shown = {key: value for key, value in entry.items() if key != "OrthancSeq"}
    shown["Seq"] = entry.get("OrthancSeq", entry["Seq"])
    return shown


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

    With ``shown`` (Orthanc's view of the change feed), only the entries it accepts count,
    numbered as Orthanc numbers them: the page fills with ``limit`` of them, passing over
    the others, so ``Done`` means no accepted entry is left.
    """
    limit = max(1, min(limit, MAX_LIMIT))
    if shown is None:
        entries = txn.feed_after(feed, since, limit + 1)
        done = len(entries) <= limit
        entries = entries[:limit]
        return ChangePage(entries, done, entries[-1]["Seq"] if entries else max(since, 0))
    found: list[dict[str, Any]] = []
    cursor, number, scanned = _feed_position(txn, since), max(since, 0), 0
    while scanned < _MAX_SCANNED:
        chunk = txn.feed_after(feed, cursor, _SCAN_CHUNK)
        for entry in chunk:
            if len(found) == limit:
                return ChangePage(found, False, number)
            cursor, scanned = entry["Seq"], scanned + 1
            number = max(number, entry.get("OrthancSeq", 0))
            if shown(entry):
                found.append(as_orthanc_shows(entry))
        if len(chunk) < _SCAN_CHUNK:  # the end: Last is the last number given, as Orthanc's
            return ChangePage(found, True, last_orthanc_number(txn))
    return ChangePage(found, False, number)


def last_page(txn: Txn, feed: str = "changes", shown: Shown | None = None) -> ChangePage:
    """Only the newest entry (``shown`` accepts) as Orthanc's ``?last``; when there is none,
    ``Last`` is 0 for a plain feed and the last number given for Orthanc's view."""
    for entry in txn.feed_newest_first(feed):
        if shown is None:
            return ChangePage([entry], True, entry["Seq"])
        if shown(entry):
            visible = as_orthanc_shows(entry)
            return ChangePage([visible], True, visible["Seq"])
    return ChangePage([], True, last_orthanc_number(txn) if shown is not None else 0)


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
