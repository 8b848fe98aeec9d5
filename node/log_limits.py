"""A logging filter that stops one message from flooding the log.

Under attack the same line can come tens of thousands of times a second (asyncio's
"socket.accept() out of system resource", a failed login, a refused connection); writing
them all costs the disk and the CPU the node needs to recover. Per message template, the
first ``burst`` records of each ``window_s`` pass; the rest are counted, and the next one
that passes says how many were dropped.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable

_KEYS = 1000


class RepeatFilter(logging.Filter):
    def __init__(
        self, burst: int = 10, window_s: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.burst, self.window_s, self.clock = burst, window_s, clock
        # key -> [window start, passed in window, dropped since the last one passed]
        self._seen: OrderedDict[tuple[str, int, str], list[float | int]] = OrderedDict()

    def filter(self, record: logging.LogRecord) -> bool:
        # The template, not the formatted text: a flood varies in its arguments (addresses).
        key = (record.name, record.levelno, str(record.msg)[:200])
        now = self.clock()
        entry = self._seen.get(key)
        if entry is None or now - entry[0] >= self.window_s:
            dropped = int(entry[2]) if entry is not None else 0
            self._seen[key] = entry = [now, 0, 0]
            self._seen.move_to_end(key)
            while len(self._seen) > _KEYS:
                self._seen.popitem(last=False)
            if dropped:
                record.msg = f"{record.msg} [{dropped} similar messages dropped]"
        if entry[1] >= self.burst:
            entry[2] = int(entry[2]) + 1
            return False
        entry[1] = int(entry[1]) + 1
        return True


def limit_repeats(logger: logging.Logger | None = None) -> RepeatFilter:
    """Add a :class:`RepeatFilter` to the handlers of ``logger`` (the root by default):
    filters on handlers see the records of every logger that propagates to them."""
    repeat_filter = RepeatFilter()
    for handler in (logger or logging.getLogger()).handlers:
        handler.addFilter(repeat_filter)
    return repeat_filter
