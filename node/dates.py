"""Dates as the REST API and the change feed show them."""

from __future__ import annotations

import time
from datetime import UTC, datetime

#: the last second formatted, and its text (each stored instance asks several times)
_last_formatted: tuple[int, str] = (-1, "")


def now_string() -> str:
    """Orthanc's date format, in UTC: 20261124T173000."""
    global _last_formatted
    second = int(time.time())
    if second != _last_formatted[0]:
        text = datetime.fromtimestamp(second, UTC).strftime("%Y%m%dT%H%M%S")
        _last_formatted = (second, text)
    return _last_formatted[1]
