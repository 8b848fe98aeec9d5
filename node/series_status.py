"""Whether a series has all its instances, as Orthanc tells it: a pure decision."""

from __future__ import annotations


def series_status(expected: str | int | None, count: int) -> str:
    """``Unknown`` when the series does not say how many instances it has (Images in
    Acquisition), else ``Missing``, ``Complete`` or ``Inconsistent`` (more than said)."""
    try:
        wanted = int(expected) if expected not in (None, "") else 0
    except (TypeError, ValueError):
        wanted = 0
    if wanted <= 0:
        return "Unknown"
    if count < wanted:
        return "Missing"
    return "Complete" if count == wanted else "Inconsistent"
