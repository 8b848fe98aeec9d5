"""Files of transfers in progress (prepared exports, partial uploads), by random id.

Each transfer is a ZIP and a JSON sidecar naming the peer that made it (only that
peer may use it) and, for an upload, its declared size and the ranges received.
Ids become file names, so they are checked. A transfer idle longer than
``TransferLimits.idle_s`` is abandoned: :meth:`Spool.sweep` removes it, on a timer the
listener runs, so a peer that never commits or never fetches leaves nothing behind.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)
_ID = re.compile(r"[0-9a-f]{32}")
KINDS = ("exports", "uploads")


@dataclass(frozen=True)
class TransferLimits:
    """What one peer may hold in our spool (``[peering]`` settings).

    ``max_upload_bytes``: the largest upload a peer may declare (one study's missing
    instances as one ZIP); ``idle_s``: a transfer untouched that long is removed;
    ``per_peer``: uploads in progress, and prepared exports, each peer may hold at once.
    """

    max_upload_bytes: int = 16 << 30
    idle_s: float = 1800.0
    per_peer: int = 4

    @property
    def sweep_every_s(self) -> float:
        # Often enough that nothing outlives its idle time by much, never busy-looping.
        return max(1.0, min(60.0, self.idle_s / 4))


class Spool:
    def __init__(self, root: Path) -> None:
        self.root = root
        #: transfers being written or merged right now: never swept from under a request
        self._busy: set[str] = set()

    def new(self, kind: str, owner: str, state: dict[str, Any]) -> tuple[str, Path]:
        directory = self.root / kind
        directory.mkdir(parents=True, exist_ok=True)
        transfer_id = uuid.uuid4().hex
        path = directory / f"{transfer_id}.zip"
        path.touch()
        self.save_state(path, {**state, "Peer": owner})
        return transfer_id, path

    def existing(self, kind: str, transfer_id: str, owner: str) -> Path:
        """The transfer's file, only for the peer that made it: to any other peer it
        answers exactly as an unknown id does (no hint that it exists)."""
        path = self.root / kind / f"{transfer_id}.zip"
        if not _ID.fullmatch(transfer_id) or not path.exists():
            raise web.HTTPNotFound(reason=f"no such {kind[:-1]}")
        try:
            state = self.state(path)
        except (OSError, ValueError):
            state = {}
        if state.get("Peer") != owner:
            raise web.HTTPNotFound(reason=f"no such {kind[:-1]}")
        return path

    @staticmethod
    def state(path: Path) -> dict[str, Any]:
        return dict(json.loads(path.with_suffix(".json").read_text()))

    @staticmethod
    def save_state(path: Path, state: dict[str, Any]) -> None:
        # Not fsynced: the spool is scratch space; a lost state only means sending again.
        path.with_suffix(".json").write_text(json.dumps(state))

    @staticmethod
    def touch(path: Path) -> None:
        """Mark a transfer as in use (a range fetched), so the sweep leaves it."""
        try:
            os.utime(path.with_suffix(".json"))
        except FileNotFoundError:
            pass

    @staticmethod
    def drop(path: Path) -> None:
        path.unlink(missing_ok=True)
        path.with_suffix(".json").unlink(missing_ok=True)

    @contextmanager
    def busy(self, path: Path) -> Iterator[None]:
        self._busy.add(path.stem)
        try:
            yield
        finally:
            self._busy.discard(path.stem)

    def _transfers(self, kind: str) -> Iterator[tuple[Path, dict[str, Any]]]:
        directory = self.root / kind
        if not directory.is_dir():
            return
        for path in directory.glob("*.zip"):
            try:
                yield path, self.state(path)
            except (OSError, ValueError):
                yield path, {}

    def count(self, kind: str, owner: str) -> int:
        return sum(1 for _, state in self._transfers(kind) if state.get("Peer") == owner)

    def reserved_bytes(self) -> int:
        """What the spool holds or has promised: each upload's declared size (a sparse
        file grows to it), each export's size."""
        total = 0
        for kind in KINDS:
            for path, state in self._transfers(kind):
                try:
                    total += max(int(state.get("Size", 0)), path.stat().st_size)
                except (OSError, ValueError, TypeError):
                    continue
        return total

    def sweep(self, idle_s: float, now: float | None = None) -> int:
        """Remove transfers untouched for ``idle_s`` (and stray files); how many."""
        limit = (time.time() if now is None else now) - idle_s
        removed = 0
        for kind in KINDS:
            directory = self.root / kind
            if not directory.is_dir():
                continue
            stems = {path.stem for path in directory.iterdir()}
            for stem in stems - self._busy:
                if _last_touched(directory, stem) < limit:
                    self.drop(directory / f"{stem}.zip")
                    removed += 1
        if removed:
            log.info("peer spool: removed %d abandoned transfer(s)", removed)
        return removed


def _last_touched(directory: Path, stem: str) -> float:
    times = []
    for suffix in (".zip", ".json"):
        try:
            times.append((directory / f"{stem}{suffix}").stat().st_mtime)
        except FileNotFoundError:
            continue
    return max(times, default=0.0)


@dataclass(frozen=True)
class Refusal:
    status: int
    code: str
    message: str


def upload_refusal(
    size: int,
    limits: TransferLimits,
    held_by_peer: int,
    reserved: int,
    room: int | None,
    disk_free: int,
) -> Refusal | None:
    """Why a peer's new upload of ``size`` bytes is refused, or ``None`` to accept it.

    ``held_by_peer``: its uploads in progress; ``reserved``: what the spool holds or
    has promised already; ``room``: what the node may still take in under its storage
    limit (``None``: no limit); ``disk_free``: free bytes on the spool's disk.
    """
    if size > limits.max_upload_bytes:
        mib = limits.max_upload_bytes >> 20
        return Refusal(413, "upload-too-large", f"an upload may declare at most {mib} MiB")
    if held_by_peer >= limits.per_peer:
        return Refusal(
            429, "too-many-uploads", f"at most {limits.per_peer} uploads in progress per peer"
        )
    if room is not None and reserved + size > room:
        return Refusal(507, "insufficient-storage", "the upload would exceed the storage limit")
    if size > disk_free:
        return Refusal(507, "insufficient-storage", "not enough free disk space")
    return None
