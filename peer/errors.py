"""The errors of talking to a peer, each saying whether to back off and retry.

``transient`` errors (the network, a peer's 5xx, a transfer that does not
check out) may succeed on a later attempt; a pass retries them after a delay
and resumes from its durable cursors. The others (a refusal, a certificate we
did not pin, something the peer cannot do) fail the same way every time, so
retrying only delays the report.
"""

from __future__ import annotations


class PeerError(Exception):
    """The peer answered with an error, or the exchange failed; ``transient`` says retry."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


class PeerUnreachable(PeerError):
    """No connection, or it broke mid-exchange: always transient."""

    def __init__(self, message: str) -> None:
        super().__init__(message, transient=True)


class PeerRefused(PeerError):
    """The peer answered with an HTTP error ``status``; transient for 5xx (507: its
    storage is full for now) and 429 (it holds as many of our transfers as it allows)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message, transient=status >= 500 or status == 429)
        self.status = status


class UntrustedPeer(PeerError):
    """The other side's certificate is missing or not one we have pinned (never transient).

    ``fingerprint`` is the one it presented, when it presented one.
    """

    def __init__(self, message: str, fingerprint: str | None = None) -> None:
        super().__init__(message, transient=False)
        self.fingerprint = fingerprint


class Unsupported(PeerError):
    """The kind of peer cannot do this at all (e.g. mirror deletions with Orthanc)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, transient=False)
