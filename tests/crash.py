"""Running a crash worker in a child process and killing it with SIGKILL."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_and_kill(worker: str, data_dir: Path, log: Path, round_number: int, delay: float) -> None:
    """Start ``python -m worker``, wait for its "ready" line in ``log``, kill it ``delay`` later."""
    child = subprocess.Popen(
        [sys.executable, "-m", worker, str(data_dir), str(log), str(round_number)],
        cwd=REPO,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while b"ready" not in log.read_bytes():
        assert child.poll() is None, child.stderr.read().decode() if child.stderr else ""
        assert time.monotonic() < deadline, "worker never became ready"
        time.sleep(0.01)
    time.sleep(delay)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL, child.stderr.read().decode() if child.stderr else ""
