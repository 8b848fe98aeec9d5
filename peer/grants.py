"""What each pinned peer may do on our peering listener."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PeerGrant:
    """A configured peer's pinned certificate and permissions.

    ``may_push``: it may send us studies, annotations (and deletions);
    ``may_pull``: it may read our feeds and fetch studies from us;
    ``mirror_deletions``: we apply the user deletions it sends (both sides must agree).
    """

    fingerprint: str
    may_push: bool
    may_pull: bool
    mirror_deletions: bool = False

    def permits(self, *, push: bool = False, pull: bool = False) -> bool:
        """Whether a request needing ``push`` and/or ``pull`` is allowed; one needing
        neither (an inventory, hello) is allowed to a peer with either permission."""
        if push and not self.may_push:
            return False
        if pull and not self.may_pull:
            return False
        return push or pull or self.may_push or self.may_pull
