"""A bandwidth cap for one transfer."""

from __future__ import annotations

import time


class Throttle:
    """Keeps a transfer under ``kbps`` kilobits per second (0: unlimited)."""

    def __init__(self, kbps: int) -> None:
        self._bytes_per_s = kbps * 1000 / 8
        self._start = time.monotonic()
        self._sent = 0

    @property
    def limited(self) -> bool:
        return bool(self._bytes_per_s)

    def chunk_size(self, largest: int) -> int:
        if not self._bytes_per_s:
            return largest
        return max(4096, min(largest, int(self._bytes_per_s / 4)))  # about 4 chunks a second

    def spent(self, count: int) -> None:
        """Count ``count`` bytes moved, sleeping as long as the transfer is ahead of the rate."""
        if not self._bytes_per_s:
            return
        self._sent += count
        ahead = self._sent / self._bytes_per_s - (time.monotonic() - self._start)
        if ahead > 0:
            time.sleep(ahead)
