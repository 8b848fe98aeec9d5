"""The bandwidth limit of a peer transfer."""

from __future__ import annotations

import time

from pacsnode.peer.throttle import Throttle


def test_unlimited_never_waits() -> None:
    throttle = Throttle(0)
    start = time.monotonic()
    throttle.spent(10**9)
    assert time.monotonic() - start < 0.05
    assert throttle.chunk_size(1 << 20) == 1 << 20


def test_limited_keeps_the_rate() -> None:
    throttle = Throttle(800)  # 100,000 bytes per second
    assert throttle.chunk_size(1 << 20) == 25_000
    start = time.monotonic()
    for _ in range(4):
        throttle.spent(25_000)
    assert 0.9 <= time.monotonic() - start < 1.5
