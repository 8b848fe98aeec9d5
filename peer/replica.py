"""What one replication pass needs from the other side, study by study.

A :class:`ReplicaClient` is the far end of a sync: another pacsnode over
mutual TLS (:class:`pacsnode.peer.client.PeerClient`) or an Orthanc server
over its REST API (:class:`pacsnode.peer.orthanc.OrthancClient`).
:func:`pacsnode.peer.sync.sync_once` drives either one the same way; it never
asks which kind it has.

Every method may raise :class:`~pacsnode.peer.errors.PeerError`:

- transient (:class:`~pacsnode.peer.errors.PeerUnreachable`, a 5xx
  :class:`~pacsnode.peer.errors.PeerRefused`, a transfer whose checksum does
  not match): back off and call again;
- not transient (:class:`~pacsnode.peer.errors.UntrustedPeer`, a 4xx
  ``PeerRefused``, :class:`~pacsnode.peer.errors.Unsupported`): calling again
  fails the same way.

Implementations must be idempotent: calling a method again with the same
arguments, after success or after any failure, leaves both sides as one
successful call would (what is already there is answered as already stored,
never stored twice). That is what lets a pass be cut anywhere and resumed.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Protocol

from pacsnode.peer.interface import ChangeBatch, DeletionBatch, MergeSummary, NodeForPeers


class ReplicaClient(Protocol):
    @property
    def bytes_sent(self) -> int:
        """Study data sent to the peer so far by this client (for progress and rate)."""

    @property
    def bytes_received(self) -> int:
        """Study data received from the peer so far by this client."""

    def study_changes(
        self, since: int, limit: int, query: dict[str, str] | None = None
    ) -> ChangeBatch:
        """The studies that changed on the peer after its cursor ``since``.

        At most ``limit`` source changes are read per call; ``last`` is the
        cursor to ask from next and ``done`` says the feed is exhausted, so
        paging always ends. A study may be listed again in a later page. Each
        listed change's ``seq`` is a cursor a pass may save once that study is
        done: its own sequence number, or an earlier one (never past a study
        not yet listed).
        With ``query`` (``/tools/find`` keywords, e.g. ``{"Modality": "CT"}``)
        only studies that match are listed, but ``last`` still moves past the
        others. Raises ``PeerError``: transient for the network or a 5xx;
        not transient when the peer refuses us (4xx, ``UntrustedPeer``).
        """

    def inventory(self, study_uid: str, named: Collection[str] | None = None) -> dict[str, str]:
        """The peer's instances of a study: SOP Instance UID -> content digest.

        Empty when the peer does not hold the study (never an error). The
        digest is ``""`` when the peer has none (Orthanc): such instances are
        compared by UID only. With ``named`` (what a push asks), only those of
        the named instances the peer holds: a peer that lets us push but not
        pull answers nothing more. Raises ``PeerError`` as :meth:`study_changes`.
        """

    def push_instances(
        self, node: NodeForPeers, study_uid: str, sop_uids: set[str]
    ) -> MergeSummary:
        """Send these instances of a local study (read from ``node``) to the peer.

        Answers what the peer added, already had, and held with different
        content (conflicts, not overwritten). UIDs the node does not hold are
        ignored; an empty set sends nothing. Raises ``PeerError``: transient
        when the transfer was cut (it resumes on a later call) or the peer
        failed (5xx); not transient when the peer refuses the data or us (4xx,
        ``UntrustedPeer``).
        """

    def pull_instances(
        self, node: NodeForPeers, study_uid: str, sop_uids: set[str], peer_name: str
    ) -> MergeSummary:
        """Fetch these instances of a study from the peer into ``node``.

        They are stored with ``peer_name`` as their origin. Answers what the
        node added, already had, and held with different content. UIDs the
        peer does not hold (e.g. deleted meanwhile, with their study or not)
        are skipped; an empty set fetches nothing. Raises ``PeerError`` as
        :meth:`push_instances`; a received ZIP the node refuses as damaged
        raises the node's own error.
        """

    def annotations(self, study_uid: str) -> dict[str, Any]:
        """The peer's user metadata, attachments and protection of the study's
        resources (``{"Resources": ...}``); ``{}`` when there are none or the
        peer keeps none we can use (Orthanc). Raises ``PeerError`` as
        :meth:`study_changes`."""

    def send_annotations(self, study_uid: str, document: dict[str, Any]) -> int:
        """Add those annotations the peer lacks, never overwriting its own;
        answers how many were added (0 from a peer that keeps none, Orthanc).
        Raises ``PeerError`` as :meth:`study_changes`."""

    def deletions(self, since: int, limit: int) -> DeletionBatch:
        """User deletions on the peer after its cursor ``since``, paged as
        :meth:`study_changes`. Raises ``Unsupported`` (not transient) when the
        peer does not mirror deletions at all (Orthanc), else ``PeerError`` as
        :meth:`study_changes`."""

    def send_deletions(self, resource_ids: list[str]) -> int:
        """Ask the peer to delete these resources (ids are the same on every
        node); answers how many it deleted (those it no longer has are not
        counted). Raises ``Unsupported`` as :meth:`deletions`, and a
        non-transient 403 ``PeerRefused`` when the peer does not mirror our
        deletions."""

    def close(self) -> None:
        """Release connections; the client may not be used afterwards. Never raises."""
