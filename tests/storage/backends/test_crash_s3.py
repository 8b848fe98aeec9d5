"""Crash safety on the ``s3`` backend: SIGKILL a child that stores, seals (uploads) and
deletes, many times; recover on the same bucket prefix; every acknowledged instance is
there, every study's ZIP in the bucket reads whole, nothing is left in the spool."""

from __future__ import annotations

import json
import random
import zipfile
from pathlib import Path

import pytest

from pacsnode.storage.backends.s3 import s3_backend
from pacsnode.storage.store import StudyStore
from tests.crash import run_and_kill
from tests.s3_server import BUCKET, SeaweedFS, unique_prefix
from tests.storage.test_crash import acknowledged, check_everything_is_there

ROUNDS = 12


@pytest.mark.e2e
def test_sigkill_during_store_and_upload_loses_no_acknowledged_instance(
    seaweedfs: SeaweedFS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = seaweedfs.settings(BUCKET, unique_prefix(), part_mb=5)
    monkeypatch.setenv("PACSNODE_S3_SETTINGS", json.dumps(settings))
    data_dir, log = tmp_path / "data", tmp_path / "acks.log"
    rng = random.Random(2026)
    for round_number in range(ROUNDS):
        log.write_text("")
        run_and_kill(
            "tests.storage.backends.s3_crash_worker",
            data_dir,
            log,
            round_number,
            rng.uniform(0.0, 0.8),
        )
        with (tmp_path / "history.log").open("a") as history:
            history.write(log.read_text())
        backend = s3_backend(settings, data_dir)
        with StudyStore(data_dir, backend=backend) as store:
            check_everything_is_there(store, acknowledged(tmp_path / "history.log"))
            for study_uid in backend.study_uids():
                with backend.get(study_uid) as blob, zipfile.ZipFile(blob) as archive:
                    assert archive.testzip() is None
        assert not list((data_dir / "s3-spool").iterdir())
        assert not [p for p in data_dir.rglob("*.tmp")], "recovery left temp files"
