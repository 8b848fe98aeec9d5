"""A browser's chunked upload spools its pieces in the directory it is given (the data
directory, once REST passes it), not in the system's temporary one (issue 13, item 10)."""

from __future__ import annotations

import os
from pathlib import Path

from pacsnode.node.uploads import ChunkedUploads

MiB = 1 << 20


def test_chunked_pieces_are_spooled_in_the_given_directory(tmp_path: Path) -> None:
    uploads = ChunkedUploads(spool_dir=tmp_path)
    total = 12 * MiB
    assert uploads.add("big.dcm", total, b"a" * (9 * MiB)) is None  # past the in-memory part
    whole = uploads.add("big.dcm", total, b"b" * (3 * MiB))
    assert whole is not None
    with whole:
        where = os.readlink(f"/proc/self/fd/{whole.fileno()}")
        assert where.startswith(str(tmp_path)), where
        assert whole.read() == b"a" * (9 * MiB) + b"b" * (3 * MiB)
