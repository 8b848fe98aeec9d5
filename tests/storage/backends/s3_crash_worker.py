"""The store's crash worker (``tests/storage/crash_worker.py``) with its sealed ZIPs in an
S3 bucket: the ``s3`` backend's settings come as JSON in ``PACSNODE_S3_SETTINGS``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pacsnode.storage.backends.s3 import s3_backend
from pacsnode.storage.store import StudyStore
from tests.storage import crash_worker


def store_on_s3(data_dir: Path, **options: Any) -> StudyStore:
    settings = json.loads(os.environ["PACSNODE_S3_SETTINGS"])
    return StudyStore(data_dir, backend=s3_backend(settings, data_dir), **options)


if __name__ == "__main__":
    crash_worker.StudyStore = store_on_s3  # type: ignore[misc,assignment]
    crash_worker.main()
