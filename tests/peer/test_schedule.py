"""Schedules and windows of peers (pure), and their configuration errors."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from pacsnode.node.config import load_config
from pacsnode.node.errors import ConfigError
from pacsnode.peer.schedule import in_window, parse_window, trigger_for

T = datetime.time


def test_windows_including_past_midnight() -> None:
    night = parse_window("20:00-06:00")
    assert in_window(T(23, 0), night) and in_window(T(5, 59), night)
    assert not in_window(T(6, 0), night) and not in_window(T(12, 0), night)
    office = parse_window("8:30-17:00")
    assert in_window(T(9, 0), office) and not in_window(T(17, 0), office)
    for bad in ("8-17", "25:00-01:00", "night"):
        with pytest.raises(ValueError):
            parse_window(bad)


def test_triggers() -> None:
    assert isinstance(trigger_for(600, None), IntervalTrigger)
    assert isinstance(trigger_for(0, "*/10 * * * *"), CronTrigger)
    assert trigger_for(0, None) is None
    with pytest.raises(ValueError):
        trigger_for(0, "every ten minutes")


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ('schedule = "whenever"', "peer 'b'"),
        ('window = "noon"', "window"),
        ('url = "http://insecure:8443"', "https://"),
    ],
)
def test_bad_peer_settings_are_config_errors(tmp_path: Path, entry: str, message: str) -> None:
    path = tmp_path / "node.toml"
    path.write_text(f'[[peers]]\nname = "b"\nfingerprint = "ab"\n{entry}\n')
    with pytest.raises(ConfigError, match=message):
        load_config(path)
