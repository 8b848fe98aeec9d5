"""The one place that turns a configured peer into the replica client of its kind."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from pacsnode.peer.client import PeerClient
from pacsnode.peer.identity import Identity
from pacsnode.peer.orthanc import OrthancClient
from pacsnode.peer.replica import ReplicaClient
from pacsnode.peer.tls import client_context


class PeerAddress(Protocol):
    """How to reach a peer: what :func:`open_replica` reads of a peer's settings."""

    @property
    def kind(self) -> str:
        """``"pacsnode"`` (mutual TLS, pinned) or ``"orthanc"`` (its REST API)."""

    @property
    def url(self) -> str | None:
        """Where it listens; ``None`` for a passive peer, which dials us."""

    @property
    def fingerprint(self) -> str:
        """A pacsnode peer's pinned certificate fingerprint."""

    @property
    def bandwidth_kbps(self) -> int:
        """A pacsnode transfer's cap (0: unlimited)."""

    @property
    def username(self) -> str | None:
        """An Orthanc peer's HTTP Basic credentials (none when ``None``)."""

    @property
    def password(self) -> str | None: ...

    @property
    def ca_file(self) -> str | None:
        """An https Orthanc peer's CA file (the system's CAs when ``None``)."""


def open_replica(
    peer: PeerAddress, identity: Identity, shared_ca: Path | None = None
) -> ReplicaClient:
    """A client for ``peer``; the caller closes it. ``identity`` (and ``shared_ca``)
    are what this node presents to a pacsnode peer. Raises ``ValueError`` for a
    passive peer, an unknown kind, or a URL of the wrong scheme."""
    if peer.url is None:
        raise ValueError("a passive peer (no url) connects to us; we cannot dial it")
    if peer.kind == "orthanc":
        return OrthancClient(peer.url, peer.username, peer.password, peer.ca_file)
    if peer.kind == "pacsnode":
        context = client_context(identity, shared_ca)
        return PeerClient(peer.url, peer.fingerprint, context, peer.bandwidth_kbps)
    raise ValueError(f"unknown kind of peer {peer.kind!r}")
