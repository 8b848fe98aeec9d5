"""When a peer is synced: an interval or a cron expression, optionally only inside a window."""

from __future__ import annotations

import datetime
import re

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

_WINDOW = re.compile(r"(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})")


def parse_window(text: str) -> tuple[datetime.time, datetime.time]:
    """``"20:00-06:00"`` -> (start, end); a window may wrap past midnight."""
    match = _WINDOW.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"window {text!r} must look like 20:00-06:00")
    hours1, minutes1, hours2, minutes2 = (int(part) for part in match.groups())
    if hours1 > 23 or hours2 > 23 or minutes1 > 59 or minutes2 > 59:
        raise ValueError(f"window {text!r} has an impossible time")
    return datetime.time(hours1, minutes1), datetime.time(hours2, minutes2)


def in_window(moment: datetime.time, window: tuple[datetime.time, datetime.time]) -> bool:
    start, end = window
    if start <= end:
        return start <= moment < end
    return moment >= start or moment < end


def trigger_for(interval_s: int, schedule: str | None) -> BaseTrigger | None:
    """The apscheduler trigger of a peer, or ``None`` when it is synced only on demand."""
    if schedule:
        return CronTrigger.from_crontab(schedule)
    if interval_s > 0:
        return IntervalTrigger(seconds=interval_s)
    return None
