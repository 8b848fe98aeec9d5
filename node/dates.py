"""Dates as the REST API and the change feed show them."""

from __future__ import annotations

from datetime import UTC, datetime


def now_string() -> str:
    """Orthanc's date format, in UTC: 20261124T173000."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
