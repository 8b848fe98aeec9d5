"""The SHA-256 that checks a study ZIP end to end, on both sides of a transfer."""

from __future__ import annotations

import hashlib
from typing import IO

_CHUNK = 1 << 20


def size_and_sha256(handle: IO[bytes]) -> tuple[int, str]:
    """(size, hex SHA-256) of an open file's whole content, read from its start."""
    handle.seek(0)
    hasher = hashlib.sha256()
    size = 0
    while chunk := handle.read(_CHUNK):
        hasher.update(chunk)
        size += len(chunk)
    return size, hasher.hexdigest()
