"""Files of transfers in progress (prepared exports, partial uploads), by random id.

Ids become file names, so they are checked; files older than a day are
removed as new ones are made, so abandoned transfers do not pile up.
"""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path

from aiohttp import web

_ID = re.compile(r"[0-9a-f]{32}")
_MAX_AGE_S = 24 * 3600


class Spool:
    def __init__(self, root: Path) -> None:
        self.root = root

    def new(self, kind: str) -> tuple[str, Path]:
        directory = self.root / kind
        directory.mkdir(parents=True, exist_ok=True)
        self._sweep(directory)
        transfer_id = uuid.uuid4().hex
        return transfer_id, directory / f"{transfer_id}.zip"

    def existing(self, kind: str, transfer_id: str) -> Path:
        path = self.root / kind / f"{transfer_id}.zip"
        if not _ID.fullmatch(transfer_id) or not path.exists():
            raise web.HTTPNotFound(reason=f"no {kind[:-1]} {transfer_id[:40]}")
        return path

    @staticmethod
    def drop(path: Path) -> None:
        path.unlink(missing_ok=True)
        path.with_suffix(".json").unlink(missing_ok=True)

    @staticmethod
    def _sweep(directory: Path) -> None:
        limit = time.time() - _MAX_AGE_S
        for path in directory.iterdir():
            try:
                if path.stat().st_mtime < limit:
                    path.unlink()
            except FileNotFoundError:
                continue
