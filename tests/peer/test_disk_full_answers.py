"""What a peer is told when our data disk is full while it sends to us."""

from __future__ import annotations

import errno

from pacsnode.peer.server import public_error
from pacsnode.storage.errors import StorageFull


def test_a_full_disk_is_a_507_to_retry_not_an_internal_error() -> None:
    # Merging a peer's ZIP into a full disk raised StorageFull (a 507 domain error); it
    # was answered 500 internal-error, with a traceback in our log, for a condition the
    # node expects (tests/node/test_disk_full.py meets it for real).
    full = (507, "insufficient-storage", "not enough free disk space")
    assert public_error(StorageFull("disk full while writing study.zip")) == full
    assert public_error(OSError(errno.ENOSPC, "No space left on device", "/data/x")) == full
    assert public_error(OSError(errno.EIO, "Input/output error"))[0] == 500
