"""The names of the durable cursors a node keeps per peer, one per feed it follows.

The names are stored in the node's index, so they never change: a data
directory from an earlier version resumes where it stopped.
"""

from __future__ import annotations

from enum import Enum


class Direction(Enum):
    """Which feed a cursor follows, and which way its items travel."""

    #: our study feed; what the peer lacks goes to it
    PUSH = "push"
    #: the peer's study feed; what we lack comes here
    PULL = "pull"
    #: our user deletions, mirrored on the peer
    PUSH_DELETIONS = "push-deletions"
    #: the peer's user deletions, mirrored here
    PULL_DELETIONS = "pull-deletions"


def cursor_name(peer: str, direction: Direction) -> str:
    """``"siteb:pull"``: the name under which the cursor of ``direction`` with ``peer`` is kept."""
    return f"{peer}:{direction.value}"
