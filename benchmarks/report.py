"""Rows of figures and the Markdown table the benchmarks print."""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Row:
    group: str
    metric: str
    value: float | str
    unit: str


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)

    def add(self, group: str, metric: str, value: float | str, unit: str = "") -> None:
        self.rows.append(Row(group, metric, value, unit))

    def markdown(self, group_title: str = "set") -> str:
        lines = [f"| {group_title} | measure | value | unit |", "| --- | --- | ---: | --- |"]
        lines += [
            f"| {r.group} | {r.metric} | {format_value(r.value)} | {r.unit} |" for r in self.rows
        ]
        return "\n".join(lines)


def format_value(value: float | str) -> str:
    if isinstance(value, str):
        return value
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}" if abs(value) >= 1 else f"{value:.3f}"


def code_and_machine() -> dict[str, Any]:
    """Which code was measured, and where: taken before a run, as servers load it at start."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
        return done.stdout.strip()

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "commit": git("rev-parse", "--short", "HEAD"),
        "modified": git("status", "--porcelain", "--untracked-files=no").splitlines(),
    }
