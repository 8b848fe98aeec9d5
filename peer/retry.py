"""Retrying a replication step that failed for a reason that may pass (network, 5xx)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from pacsnode.peer.errors import PeerError

log = logging.getLogger(__name__)
T = TypeVar("T")
RETRY_DELAYS_S = (1.0, 4.0, 16.0)


def with_retries(
    attempt: Callable[[], T],
    on_retry: Callable[[str], None],
    delays: Sequence[float] = RETRY_DELAYS_S,
) -> T:
    """``attempt()``, tried again after each of ``delays`` while it fails transiently.

    A non-transient :class:`PeerError` (and any other exception) is raised at
    once; the last attempt's error is raised as it is. ``on_retry`` hears each
    failure that is retried. Attempts of a sync resume from the durable
    cursors, so nothing is sent twice.
    """
    for delay in delays:
        try:
            return attempt()
        except PeerError as exc:
            if not exc.transient:
                raise
            log.warning("peer exchange failed (%s); retrying in %.0f s", exc, delay)
            on_retry(str(exc))
            time.sleep(delay)
    return attempt()
