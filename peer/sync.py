"""One replication pass with one peer: push what it lacks, pull what we lack.

Both directions follow a change feed with a durable cursor, compare
inventories (SOP Instance UID -> digest) per study and transfer only the
missing instances, so a pass is incremental, idempotent and never sends back
what came from the other side. A cursor moves only past studies that were
transferred, so an interrupted pass resumes where it stopped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

from pacsnode.peer.annotation_doc import annotations_problem
from pacsnode.peer.cursors import Direction, cursor_name
from pacsnode.peer.errors import PeerError, PeerRefused, Unsupported
from pacsnode.peer.interface import NodeForPeers
from pacsnode.peer.replica import ReplicaClient

log = logging.getLogger(__name__)
BATCH = 200
T = TypeVar("T")

Progress = Callable[[str, int], None]
#: one page of a feed: (items, cursor after the page, whether the feed is exhausted)
Page = tuple[list[T], int, bool]


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


def feed_pages(fetch: Callable[[int], Page[T]], cursor: int) -> Iterator[Page[T]]:
    """The pages of a feed from ``cursor`` to its end, each fetched after the last one."""
    while True:
        page = fetch(cursor)
        yield page
        _, cursor, done = page
        if done:
            return


def follow_feed(
    node: NodeForPeers,
    cursor_name: str,
    fetch: Callable[[int], Page[T]],
    handle: Callable[[T], int | None],
) -> None:
    """Walk a change feed from the saved cursor to its end.

    ``handle`` processes one item and returns the sequence number it completed
    (saved at once, so a pass cut short resumes after it), or ``None``.
    """
    for items, last, _ in feed_pages(fetch, node.load_cursor(cursor_name)):
        for item in items:
            completed = handle(item)
            if completed is not None:
                node.save_cursor(cursor_name, completed)
        node.save_cursor(cursor_name, last)


def queued_studies(fetch: Callable[[int], Page[tuple[int, str]]], cursor: int) -> set[str]:
    """The studies a push starting at ``cursor`` would consider, each once.

    Reads the same pages the push would follow and moves no cursor, so it
    costs one walk of the feed after the cursor, never of the whole archive.
    """
    found: set[str] = set()
    for items, _, _ in feed_pages(fetch, cursor):
        found.update(study_uid for _, study_uid in items)
    return found


def study_feed(
    source: NodeForPeers | ReplicaClient, query: dict[str, str] | None
) -> Callable[[int], Page[tuple[int, str]]]:
    """Pages of (sequence, Study Instance UID) from our feed (to push) or the peer's (to pull)."""

    def fetch(cursor: int) -> Page[tuple[int, str]]:
        batch = source.study_changes(cursor, BATCH, query)
        return [(c.seq, c.study_uid) for c in batch.changes], batch.last, batch.done

    return fetch


def deletion_feed(source: NodeForPeers | ReplicaClient) -> Callable[[int], Page[list[str]]]:
    """Pages of our deletions (to send) or the peer's (to mirror), each page's resource
    ids as one item: they are sent or mirrored together."""

    def fetch(cursor: int) -> Page[list[str]]:
        batch = source.deletions(cursor, BATCH)
        ids = [d.resource_id for d in batch.deletions]
        return ([ids] if ids else []), batch.last, batch.done

    return fetch


def push(
    node: NodeForPeers,
    client: ReplicaClient,
    peer: str,
    result: SyncResult,
    progress: Progress | None = None,
    query: dict[str, str] | None = None,
) -> None:
    """Send the peer what it lacks of each study in our feed after the push cursor."""

    def handle(change: tuple[int, str]) -> int:
        seq, study_uid = change
        send_study(node, client, study_uid, None, result)
        document = node.annotations(study_uid)
        if document.get("Resources"):
            result.annotations += client.send_annotations(study_uid, document)
        if progress:
            progress("push", result.pushed_instances)
        return seq

    name = cursor_name(peer, Direction.PUSH)
    follow_feed(node, name, study_feed(node, query), handle)


def send_study(
    node: NodeForPeers,
    client: ReplicaClient,
    study_uid: str,
    only: set[str] | None,
    result: SyncResult,
) -> None:
    """Send the instances of a study (or of ``only``) that the peer lacks."""
    result.studies_checked += 1
    mine = node.inventory(study_uid)
    if only is not None:
        mine = {uid: digest for uid, digest in mine.items() if uid in only}
    # Asking only about our own instances is all a push needs, and all a peer that
    # lets us push but not pull answers.
    missing = plan_missing(mine, client.inventory(study_uid, mine.keys()))
    if missing:
        summary = client.push_instances(node, study_uid, missing)
        result.pushed_instances += len(summary.added)
        result.conflicts.extend(summary.conflicts)


def pull(
    node: NodeForPeers,
    client: ReplicaClient,
    peer: str,
    result: SyncResult,
    progress: Progress | None = None,
    query: dict[str, str] | None = None,
) -> None:
    """Fetch what we lack of each study in the peer's feed after the pull cursor."""

    def handle(change: tuple[int, str]) -> int:
        seq, study_uid = change
        result.studies_checked += 1
        missing = plan_missing(client.inventory(study_uid), node.inventory(study_uid))
        if missing:
            summary = client.pull_instances(node, study_uid, missing, peer)
            result.pulled_instances += len(summary.added)
            result.conflicts.extend(summary.conflicts)
        document = client.annotations(study_uid)
        problem = annotations_problem(document)
        if problem:
            raise PeerError(f"annotations of {study_uid}: {problem}", transient=False)
        if document.get("Resources"):
            # Only of that study and its patient: a peer cannot annotate others through it.
            result.annotations += node.apply_annotations(document, study_uid)
        if progress:
            progress("pull", result.pulled_instances)
        return seq

    name = cursor_name(peer, Direction.PULL)
    follow_feed(node, name, study_feed(client, query), handle)


def push_deletions(
    node: NodeForPeers, client: ReplicaClient, peer: str, result: SyncResult
) -> None:
    def handle(ids: list[str]) -> None:
        result.deletions += client.send_deletions(ids)

    name = cursor_name(peer, Direction.PUSH_DELETIONS)
    try:
        follow_feed(node, name, deletion_feed(node), handle)
    except (PeerRefused, Unsupported) as exc:
        if exc.transient:
            raise
        # The peer does not mirror ours (403), or cannot: the cursor stays, to resume
        # once it agrees. The rest of the pass goes on.
        log.warning("peer %s does not mirror our deletions: %s", peer, exc)


def pull_deletions(
    node: NodeForPeers, client: ReplicaClient, peer: str, result: SyncResult
) -> None:
    def handle(ids: list[str]) -> None:
        result.deletions += node.mirror_deletions(ids, peer)

    name = cursor_name(peer, Direction.PULL_DELETIONS)
    try:
        follow_feed(node, name, deletion_feed(client), handle)
    except Unsupported as exc:
        log.warning("peer %s has no deletions to mirror: %s", peer, exc)


def sync_once(
    node: NodeForPeers,
    client: ReplicaClient,
    peer: str,
    *,
    do_push: bool,
    do_pull: bool,
    progress: Progress | None = None,
    query: dict[str, str] | None = None,
    mirror_deletions: bool = False,
) -> SyncResult:
    """One pass with ``peer`` (named ``peer`` in our cursors and origins), whatever its kind.

    ``query`` (``/tools/find`` keywords, e.g. ``{"Modality": "CT"}``) limits both
    directions to the studies that match it. Raises the client's ``PeerError``;
    what was done before it is kept, and the next pass resumes from the cursors.
    """
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
