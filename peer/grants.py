"""What each pinned peer may do on our peering listener."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PeerGrant:
    """A configured peer's pinned certificate and permissions.

    ``may_push``: it may send us studies, annotations (and deletions);
    ``may_pull``: it may read our feeds and fetch studies from us;
    ``mirror_deletions``: we apply the user deletions it sends (both sides must agree);
    ``query``: the ``/tools/find`` keywords of its ``filter``: it sees and touches only
    the studies that match (the others answer as if absent); ``None``: every study.
    """

    fingerprint: str
    may_push: bool
    may_pull: bool
    mirror_deletions: bool = False
    query: dict[str, str] | None = None

    def permits(self, *, push: bool = False, pull: bool = False) -> bool:
        """Whether a request needing ``push`` and/or ``pull`` is allowed; one needing
        neither (an inventory, hello) is allowed to a peer with either permission."""
        if push and not self.may_push:
            return False
        if pull and not self.may_pull:
            return False
        return push or pull or self.may_push or self.may_pull


def feed_queries(
    granted: dict[str, str] | None, asked: dict[str, str] | None
) -> list[dict[str, str]]:
    """The queries a study must all match to be in a feed the peer asks with ``asked``.

    One merged query when the two do not disagree on a keyword (one lookup per study);
    otherwise both, since a keyword's two patterns (``CT`` and ``C*``) cannot be merged
    into one. Empty: every study.
    """
    if not granted or not asked:
        return [query for query in (granted, asked) if query]
    if all(granted[key] == value for key, value in asked.items() if key in granted):
        return [{**asked, **granted}]
    return [granted, asked]
