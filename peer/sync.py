"""One replication pass with one peer: push what it lacks, pull what we lack.

Both directions follow a change feed with a durable cursor, compare
inventories (SOP Instance UID -> digest) per study and transfer only the
missing instances, so a pass is incremental, idempotent and never sends back
what came from the other side. A cursor moves only past studies that were
transferred, so an interrupted pass resumes where it stopped.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from peer.client import PeerClient, PeerError
from peer.interface import NodeForPeers

log = logging.getLogger(__name__)
_BATCH = 200

Progress = Callable[[str, int], None]


@dataclass
class SyncResult:
    pushed_instances: int = 0
    pulled_instances: int = 0
    studies_checked: int = 0
    #: user metadata, attachments and protections added on either side
    annotations: int = 0
    #: resources deleted on either side by mirroring
    deletions: int = 0
    conflicts: list[str] = field(default_factory=list)


def plan_missing(mine: dict[str, str], theirs: dict[str, str]) -> set[str]:
    """The instances ``theirs`` lacks (same UID with other content is a conflict, not sent)."""
    return set(mine) - set(theirs)


def push(
    node: NodeForPeers,
    client: PeerClient,
    peer: str,
    result: SyncResult,
    progress: Progress | None = None,
    query: dict[str, str] | None = None,
) -> None:
    cursor_name = f"{peer}:push"
    cursor = node.load_cursor(cursor_name)
    while True:
        batch = node.study_changes(cursor, _BATCH, query)
        for change in batch.changes:
            missing = plan_missing(
                node.inventory(change.study_uid), client.inventory(change.study_uid)
            )
            result.studies_checked += 1
            if missing:
                with tempfile.TemporaryFile() as archive:
                    node.write_study(change.study_uid, missing, archive)
                    answer = client.upload(change.study_uid, archive)
                result.pushed_instances += len(answer.get("Added", []))
                result.conflicts.extend(answer.get("Conflicts", []))
            document = node.annotations(change.study_uid)
            if document.get("Resources"):
                result.annotations += client.send_annotations(change.study_uid, document)
            node.save_cursor(cursor_name, change.seq)
            if progress:
                progress("push", result.pushed_instances)
        cursor = batch.last
        node.save_cursor(cursor_name, cursor)
        if batch.done:
            return


def pull(
    node: NodeForPeers,
    client: PeerClient,
    peer: str,
    result: SyncResult,
    progress: Progress | None = None,
    query: dict[str, str] | None = None,
) -> None:
    cursor_name = f"{peer}:pull"
    cursor = node.load_cursor(cursor_name)
    while True:
        page = client.changes(cursor, _BATCH, query)
        for change in page["Changes"]:
            study_uid = str(change["StudyInstanceUID"])
            missing = plan_missing(client.inventory(study_uid), node.inventory(study_uid))
            result.studies_checked += 1
            if missing:
                path = client.download(study_uid, missing)
                try:
                    summary = node.merge_study(path, peer)
                finally:
                    Path(path).unlink(missing_ok=True)
                result.pulled_instances += len(summary.added)
                result.conflicts.extend(summary.conflicts)
            document = client.annotations(study_uid)
            if document.get("Resources"):
                result.annotations += node.apply_annotations(document)
            node.save_cursor(cursor_name, int(change["Seq"]))
            if progress:
                progress("pull", result.pulled_instances)
        cursor = int(page["Last"])
        node.save_cursor(cursor_name, cursor)
        if page["Done"]:
            return


def push_deletions(node: NodeForPeers, client: PeerClient, peer: str, result: SyncResult) -> None:
    cursor_name = f"{peer}:push-deletions"
    cursor = node.load_cursor(cursor_name)
    while True:
        batch = node.deletions(cursor, _BATCH)
        if batch.deletions:
            try:
                sent = client.send_deletions([d.resource_id for d in batch.deletions])
            except PeerError as exc:
                if exc.transient:
                    raise
                log.warning("peer %s does not mirror our deletions: %s", peer, exc)
                return
            result.deletions += sent
        node.save_cursor(cursor_name, batch.last)
        cursor = batch.last
        if batch.done:
            return


def pull_deletions(node: NodeForPeers, client: PeerClient, peer: str, result: SyncResult) -> None:
    cursor_name = f"{peer}:pull-deletions"
    cursor = node.load_cursor(cursor_name)
    while True:
        page = client.deletions(cursor, _BATCH)
        ids = [str(d["ID"]) for d in page["Deletions"]]
        if ids:
            result.deletions += node.mirror_deletions(ids, peer)
        node.save_cursor(cursor_name, int(page["Last"]))
        cursor = int(page["Last"])
        if page["Done"]:
            return


def sync_once(
    node: NodeForPeers,
    client: PeerClient,
    peer: str,
    *,
    do_push: bool,
    do_pull: bool,
    progress: Progress | None = None,
    query: dict[str, str] | None = None,
    mirror_deletions: bool = False,
) -> SyncResult:
    """``query`` (``/tools/find`` keywords, e.g. ``{"Modality": "CT"}``) limits both
    directions to the studies that match it."""
    result = SyncResult()
    if do_push:
        if mirror_deletions:
            push_deletions(node, client, peer, result)
        push(node, client, peer, result, progress, query)
    if do_pull:
        if mirror_deletions:
            pull_deletions(node, client, peer, result)
        pull(node, client, peer, result, progress, query)
    log.info(
        "sync with %s: pushed %d, pulled %d instances",
        peer,
        result.pushed_instances,
        result.pulled_instances,
    )
    return result
